"The chapter harness (astro_nb.chapter)."
import json

import matplotlib
import matplotlib.pyplot as plt
import pytest

from astro_nb import chapter


def test_params_read_from_the_chapters_parameters_cell(monkeypatch, fixture_nbs):
    from astro_nb import runs
    chapters = runs.find_chapters(fixture_nbs)
    study, nb = next(iter(chapters.items()))
    monkeypatch.setattr(runs, "find_chapters", lambda nbs=None: chapters)
    names = chapter.chapter_param_names(study)
    assert names == list(runs.chapter_params(nb))
    ns = {n: p.default for n, p in runs.chapter_params(nb).items()}
    ns.update(unrelated_variable=5, out_dir=None)
    assert "unrelated_variable" not in chapter.params_from_namespace(ns, names)


def test_chapter_records_run(tmp_path):
    ch = chapter.start_chapter("demo", params=dict(seed=1, device="cpu", threads=1, dask_workers=0, n=3),
                               out_dir=tmp_path, paper="arXiv:1")
    with ch.stage("simulate"): ch.rng.normal(size=3)
    with ch.stage("simulate"): pass
    ch.log("x", 0.5, paper=0.4)
    fig, ax = plt.subplots(); ch.show(fig, "f")
    assert not plt.get_fignums()                      # show closes the figure
    table = ch.finish()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["chapter_seconds"] > 0 and set(metrics["stage_seconds"]) == {"simulate"}
    assert json.loads((tmp_path / "params.json").read_text())["parameters"]["n"] == 3
    assert list(table["metric"]) == ["x"] and (tmp_path / "figures" / "f.png").stat().st_size > 0


@pytest.mark.parametrize("params, msg", [(dict(seed=-1), "seed"), (dict(device="tpu"), "device"),
                                         (dict(threads=0), "threads"), (dict(dask_workers=-1), "dask_workers")])
def test_bad_parameters_refused(tmp_path, params, msg):
    with pytest.raises(ValueError, match=msg):
        chapter.start_chapter("demo", params=params, out_dir=tmp_path)


def test_missing_parameter_named():
    with pytest.raises(NameError, match="n_train"):
        chapter.params_from_namespace({"seed": 0}, ["seed", "n_train"])
