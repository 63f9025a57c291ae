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


def test_verdict_rule():
    assert chapter.verdict(0.74, 0.73, 0.70, 0.78) == "reproduced"
    assert chapter.verdict(0.60, 0.73, 0.55, 0.65) == "not reproduced"
    assert chapter.verdict(0.60, 0.73, 0.55, 0.65, direction_ok=True) == "direction only"
    assert chapter.verdict(0.60, 0.73, 0.55, 0.65, tolerance=0.1) == "reproduced"
    assert chapter.verdict(1.0e5, (0.9e5, 1.2e5)) == "reproduced"
    with pytest.raises(ValueError, match="published"):
        chapter.verdict(0.5, None)


def test_claims_logged(tmp_path):
    ch = chapter.start_chapter("demo", params=dict(seed=0, device="cpu"), out_dir=tmp_path)
    df = ch.claims([chapter.claim("accuracy about 0.73", 0.74, 0.73, 0.70, 0.78)])
    assert list(df.columns) == ["claim", "measured", "uncertainty", "paper", "verdict"]
    logged = json.loads((tmp_path / "metrics.json").read_text())["claims"]
    assert logged[0]["verdict"] == "reproduced" and logged[0]["uncertainty"] == "[0.7, 0.78]"
    with pytest.raises(ValueError, match="exactly the keys"):
        ch.claims([{"claim": "x"}])


def test_parameters_cell_names_without_papermill(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("device: str = 'auto'  # help\nseed = 0\nn_train: int = 5", metadata={"tags": ["parameters"]})]
    nbformat.write(nb, tmp_path / "10_demo.ipynb")
    assert chapter.parameters_cell_names(tmp_path / "10_demo.ipynb") == ["device", "seed", "n_train"]
    nb.cells = nb.cells[:1]; nbformat.write(nb, tmp_path / "11_none.ipynb")
    with pytest.raises(ValueError, match="no cell tagged"):
        chapter.parameters_cell_names(tmp_path / "11_none.ipynb")
