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


def test_claims_logged_checked_and_drawn(tmp_path):
    from astro_nb.claims import claim_row
    ch = chapter.start_chapter("demo", params=dict(seed=0, device="cpu"), out_dir=tmp_path)
    row = claim_row("accuracy about 0.73", 0.74, 0.70, 0.78, accept=[0.68, 0.78], paper=0.73, rule="r",
                    unit="test systems", n=90)
    df = ch.claims([row])
    assert list(df.columns) == ["claim", "measured", "interval", "accept", "paper", "verdict"]
    logged = json.loads((tmp_path / "metrics.json").read_text())["claims"]
    assert logged == [row] and logged[0]["verdict"] == "reproduced"
    assert (tmp_path / "figures" / "claims.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="exactly the keys"):
        ch.claims([{"claim": "x"}])
    with pytest.raises(ValueError, match="give 'reproduced'"):
        ch.claims([{**row, "verdict": "not reproduced"}])
    assert json.loads((tmp_path / "metrics.json").read_text())["claims"] == [row]     # a refused table loses nothing


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
