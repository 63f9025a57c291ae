"""Faults and bad input for `astro-nb run | list | report | docs`: parameter ranges, run folders that must not mix two
runs, statuses, atomic notebooks (kill -9, full disk), broken chapters, one-line errors.

Most tests stand papermill in with `FakePapermill`, which saves the notebook through papermill's own I/O as the
engine does after each cell, so no kernel starts; `test_kill_9_leaves_a_valid_notebook` runs a real one."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from astro_nb import runs
from astro_nb.core import RunContext, load_json, save_json
from astro_nb import docs
from astro_nb.cli import main
from astro_nb.runs import ChapterError, Param, plan_runs
from conftest import FIXTURES

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def write_chapter(folder: Path, name: str, params_src: str, *cells: str) -> Path:
    "A chapter notebook `name` in `folder` with a parameters cell and code cells."
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(metadata=KERNEL)
    c = nbformat.v4.new_code_cell(params_src)
    c.metadata["tags"] = ["parameters"]
    nb.cells = [c] + [nbformat.v4.new_code_cell(s) for s in cells or ("print('ok')",)]
    nbformat.write(nb, folder / name)
    return folder / name


class FakePapermill:
    "papermill.execute_notebook without a kernel: saves through papermill's I/O, logs a metric, may fail."
    def __init__(self, fail=None, saves=3):
        self.calls, self.fail, self.saves = [], fail, saves

    def __call__(self, input_path, output_path, parameters=None, cwd=None, **kw):
        from papermill.iorw import write_ipynb
        self.calls.append({"study": Path(output_path).stem, "parameters": dict(parameters), "cwd": cwd, **kw})
        nb = nbformat.read(input_path, as_version=4)
        study = Path(output_path).stem
        ctx = RunContext(parameters.get("out_dir"), name=study, params={k: v for k, v in parameters.items() if k != "out_dir"})
        for i in range(self.saves):
            nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text=f"save {i}\n")]
            write_ipynb(nb, output_path)
            ctx.log("saves", i + 1)
        fail = self.fail(study) if callable(self.fail) else self.fail
        if fail is not None:
            raise fail


@pytest.fixture
def fake(monkeypatch):
    import papermill
    f = FakePapermill()
    monkeypatch.setattr(papermill, "execute_notebook", f)
    return f


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ---- parameter ranges, choices, memory, finiteness --------------------------------------------------------------

@pytest.mark.parametrize("param,value,msg", [
    (Param("n_train", "int", 3000, "training spectra [1, inf]"), 0, "'n_train' must be in [1, inf], got 0"),
    (Param("n_train", "int", 3000, "training spectra [1, inf]"), -5, "in [1, inf]"),
    (Param("p_deep", "float", 0.3, "fraction [0, 1]"), 1.5, "in [0, 1]"),
    (Param("logm", "float", 9.5, "log mass [-inf, 11.5]"), 12.0, "in [-inf, 11.5]"),
    (Param("estimator", "str", "mdn", "the paper's estimator {mdn|maf|nsf}"), "mfa", "one of mdn|maf|nsf"),
    (Param("device", "str", "auto", "auto|cpu|cuda"), "mps", "auto, cpu, cuda or cuda:N"),
    (Param("seed", "int", 0), -1, "in [0, inf]"),
    (Param("dask_workers", "int", 0), -1, "in [0, inf]"),
    (Param("threads", "int", 1), -2, "in [0, inf]"),
    (Param("n_objects", "int", 10), 0, "in [1, inf]"),
    (Param("max_epochs", "int", 3), 0, "in [1, inf]"),
    (Param("image_size", "int", 48), 0, "in [1, inf]"),
    (Param("mcmc_steps", "int", 10), 0, "in [1, inf]"),
    (Param("rf_trees", "int", 10), 0, "in [1, inf]"),
    (Param("mcmc_burn", "int", 10), 0, "in [1, inf]"),
    (Param("mcmc_walkers", "int", 32), 0, "in [1, inf]"),
    (Param("snr", "float", 20.0), float("inf"), "a finite number"),
    (Param("snr", "float", 20.0), float("nan"), "a finite number"),
    (Param("lr", "float", 1e-3, "rate [0, inf]"), float("-inf"), "a finite number"),
])
def test_param_check_refuses(param, value, msg):
    with pytest.raises(ChapterError, match="^study: parameter") as e:
        param.check(value, "study")
    assert msg in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("param,value", [
    (Param("n_train", "int", 3000, "[1, inf]"), 10**20),
    (Param("estimator", "str", "mdn", "{mdn|maf|nsf}"), "nsf"),
    (Param("k", "int", 2, "{1|2|4}"), 4),
    (Param("device", "str", "auto"), "cuda:3"),
    (Param("seed", "int", 0), 0),
    (Param("n_morph", "int", 12, "0 means all [0, inf]"), 0),    # a declared range overrides the name's rule
    (Param("svm_max_train", "int", 0), 0),                        # no rule for this name
    (Param("label", "str", "a", "free text [with brackets]"), "x"),
    (Param("out_dir", "any", None), None),
])
def test_param_check_accepts(param, value):
    assert param.check(value) == value


def test_memory_estimate_refuses_what_does_not_fit(monkeypatch):
    p = Param("n_train", "int", 3000, "training spectra [1, inf] ~2.3 kB each")
    monkeypatch.setattr(runs, "available_memory", lambda: 8 * 10**9)
    assert p.check(1_000_000) == 1_000_000
    with pytest.raises(ChapterError, match=r"'n_train' = 99999999999999999999 needs about 2.3e\+14 GB \(2.3 kB each\)") as e:
        p.check(99999999999999999999)
    assert "8 GB of memory available" in str(e.value)
    monkeypatch.setattr(runs, "available_memory", lambda: None)    # unknown: no estimate, no refusal
    assert p.check(10**12) == 10**12


def test_available_memory_is_a_plausible_number():
    m = runs.available_memory()
    assert m is None or 10**7 < m < 10**14


@pytest.fixture
def ranged_nbs(tmp_path):
    write_chapter(tmp_path / "nbs", "10_ranged.ipynb",
                  "out_dir = None  # run folder\n"
                  "n_rows: int = 10  # rows simulated [1, inf] ~1 GB each\n"
                  "snr: float = 20.0  # signal to noise\n"
                  "estimator: str = \"mdn\"  # the estimator {mdn|maf|nsf}\n"
                  "dask_workers: int = 0  # 0: in-process\n"
                  "device: str = \"auto\"  # auto|cpu|cuda\n"
                  "data_table: str = \"\"  # a real table instead of the simulation\n"
                  "weights: str = \"\"  # path of starting weights\n"
                  "seed: int = 0")
    return tmp_path / "nbs"


@pytest.mark.parametrize("args,msg", [
    (["-p", "n_rows", "0"], "'n_rows' must be in [1, inf], got 0"),
    (["-p", "n_rows", "-5"], "in [1, inf]"),
    (["-p", "snr", ".inf"], "'snr' must be a finite number"),
    (["-p", "snr", ".nan"], "a finite number"),
    (["-p", "estimator", "mfa"], "'estimator' must be one of mdn|maf|nsf, got 'mfa'"),
    (["-p", "device", "mps"], "'device' must be auto, cpu, cuda or cuda:N"),
    (["--device", "mps"], "--device must be auto, cpu, cuda or cuda:N"),
    (["-p", "dask_workers", "-1"], "'dask_workers' must be in [0, inf]"),
    (["-p", "seed", "-1"], "'seed' must be in [0, inf]"),
    (["-p", "n_rows", "99999999999999999999"], "needs about"),
])
def test_out_of_range_refused_before_a_kernel(ranged_nbs, tmp_path, fake, capsys, monkeypatch, args, msg):
    monkeypatch.setattr(runs, "available_memory", lambda: 64 * 10**9)
    assert main(["run", "ranged", "--nbs", str(ranged_nbs), "--out", str(tmp_path / "r"), *args]) == 1
    assert msg in _err_line(capsys)
    assert not fake.calls and not (tmp_path / "r").exists()


def test_default_too_big_for_memory_is_refused(ranged_nbs, monkeypatch):
    monkeypatch.setattr(runs, "available_memory", lambda: 4 * 10**9)     # the default n_rows=10 needs ~10 GB
    with pytest.raises(ChapterError, match="the chapter's default: set it with -p"):
        plan_runs("ranged", None, nbs=ranged_nbs)
    (_, _, params), = plan_runs("ranged", None, cli_params={"n_rows": "3"}, nbs=ranged_nbs)
    assert params["n_rows"] == 3


def test_device_cuda_n_accepted(ranged_nbs, monkeypatch):
    monkeypatch.setattr(runs, "available_memory", lambda: None)
    (_, _, params), = plan_runs("ranged", None, device="cuda:1", nbs=ranged_nbs)
    assert params["device"] == "cuda:1"


# ---- relative paths ------------------------------------------------------------------------------------------

def test_relative_paths_resolved_from_the_working_folder(ranged_nbs, tmp_path, fake, monkeypatch):
    monkeypatch.setattr(runs, "available_memory", lambda: None)
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "objects.csv").write_text("a,b\n1,2\n")
    (work / "data" / "w.pt").write_bytes(b"weights")                   # path parameters name inputs that exist (#21)
    (work / "p.yaml").write_text("weights: data/w.pt\n")
    monkeypatch.chdir(work)
    assert main(["run", "ranged", "--nbs", str(ranged_nbs), "-p", "data_table", "data/objects.csv", "-f", "p.yaml",
                 "-p", "estimator", "maf", "--out", "runs/r", "--no-progress"]) == 0
    injected = fake.calls[0]["parameters"]
    assert injected["data_table"] == str(work / "data" / "objects.csv") and Path(injected["data_table"]).exists()
    assert injected["weights"] == str(work / "data" / "w.pt")        # the help says path
    assert injected["estimator"] == "maf"                             # not a path parameter
    assert fake.calls[0]["cwd"] == "runs/r" or Path(fake.calls[0]["cwd"]).resolve() == (work / "runs" / "r").resolve()
    assert load_json(work / "runs" / "r" / "params.json")["parameters"]["data_table"] == str(work / "data" / "objects.csv")
    (_, _, p), = plan_runs("ranged", None, cli_params={"data_table": "s3://bucket/t.parquet"}, nbs=ranged_nbs)
    assert p["data_table"] == "s3://bucket/t.parquet"                 # URLs are left alone


# ---- reruns into one folder ----------------------------------------------------------------------------------

def test_same_parameters_resume_other_parameters_refused(fixture_nbs, tmp_path, fake, capsys):
    out = tmp_path / "r"
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "-p", "n_points", "20", "--out", str(out), "--no-progress"]) == 0
    (out / "checkpoints" / "net.pt").write_bytes(b"weights of run 1")
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "-p", "n_points", "20", "--out", str(out), "--no-progress"]) == 0
    assert (out / "checkpoints" / "net.pt").read_bytes() == b"weights of run 1"       # resumed: reused
    assert len(fake.calls) == 2
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rc = main(["run", "tiny", "--nbs", str(fixture_nbs), "-p", "n_points", "40", "-p", "noise", "0.2",
               "--out", str(out), "--no-progress"])
    err = _err_line(capsys)
    assert rc == 1 and "n_points: 20 -> 40" in err and "noise: 0.1 -> 0.2" in err and "--fresh" in err
    assert len(fake.calls) == 2                                                        # no kernel started
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before       # nothing touched


def test_fresh_moves_the_old_run_aside(fixture_nbs, tmp_path, fake):
    out = tmp_path / "r"
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "-p", "n_points", "20", "--out", str(out), "--no-progress"]) == 0
    (out / "checkpoints" / "net.pt").write_bytes(b"old")
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "-p", "n_points", "40", "--out", str(out), "--fresh",
                 "--no-progress"]) == 0
    assert load_json(out / "params.json")["parameters"]["n_points"] == 40
    assert not (out / "checkpoints" / "net.pt").exists()
    old, = tmp_path.glob("r.old-*")
    assert (old / "checkpoints" / "net.pt").read_bytes() == b"old"
    assert load_json(old / "params.json")["parameters"]["n_points"] == 20


@pytest.mark.parametrize("setup,msg", [
    (lambda p: p.write_text("a file"), "is a file, not a folder"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("mine")), "not a run folder"),
    (lambda p: (p.mkdir(), (p / "params.json").write_text("{trunc")), "not valid JSON"),
    (lambda p: save_json({"study": "other", "parameters": {}}, p / "params.json"), "holds a run of 'other'"),
])
def test_bad_out_folders_refused_in_one_line(fixture_nbs, tmp_path, fake, capsys, setup, msg):
    out = tmp_path / "out"
    setup(out)
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", str(out), "--no-progress"]) == 1
    assert msg in _err_line(capsys) and not fake.calls


def test_out_under_a_file_or_unwritable(fixture_nbs, tmp_path, fake, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", str(tmp_path / "f" / "sub")]) == 1
    assert "is a file" in _err_line(capsys)
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", "/proc/astro_nb_run"]) == 1   # unwritable even for root
    assert "cannot write in /proc" in _err_line(capsys)
    assert not fake.calls


# ---- statuses, reports ---------------------------------------------------------------------------------------

def test_statuses_failed_and_interrupted(fixture_nbs, tmp_path, monkeypatch, capsys):
    import papermill
    from papermill.exceptions import PapermillExecutionError
    monkeypatch.setattr(papermill, "execute_notebook",
                        FakePapermill(PapermillExecutionError(3, 4, "x", "ValueError", "bad value", [])))
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", str(tmp_path / "f"), "--no-progress"]) == 1
    st = runs.run_status(tmp_path / "f")
    assert st["state"] == "failed" and st["error"] == "cell 4: ValueError: bad value" and st["finished"]
    assert "cell 4 failed: ValueError: bad value" in capsys.readouterr().err
    monkeypatch.setattr(papermill, "execute_notebook", FakePapermill(KeyboardInterrupt()))
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", str(tmp_path / "i"), "--no-progress"]) == 130
    assert runs.run_status(tmp_path / "i")["state"] == "interrupted"
    assert "interrupted" in capsys.readouterr().err
    assert runs.run_status(tmp_path / "none")["state"] == "unknown"


def _fake_run(root, name, study, state, metrics, started):
    d = root / name
    d.mkdir(parents=True)
    save_json({"study": study, "parameters": {}}, d / "params.json")
    save_json(metrics, d / "metrics.json")
    save_json({"state": state, "started": started, "finished": None, "error": "boom" if state == "failed" else None},
              d / "status.json")
    return d


def test_report_takes_latest_completed_and_lists_failed(tmp_path, capsys):
    root = tmp_path / "_runs"
    _fake_run(root, "sed-1", "sed", "completed", {"c2st": 0.55}, "2025-01-01T10:00:00+00:00")
    _fake_run(root, "sed-2", "sed", "completed", {"c2st": 0.52}, "2025-01-02T10:00:00+00:00")
    _fake_run(root, "sed-3", "sed", "failed", {"c2st": 0.99}, "2025-01-03T10:00:00+00:00")
    _fake_run(root, "sed-4", "sed", "running", {"c2st": 0.98}, "2025-01-04T10:00:00+00:00")   # killed: never finished
    _fake_run(root, "agn-1", "agn", "interrupted", {"acc": 0.1}, "2025-01-05T10:00:00+00:00")
    bad = _fake_run(root, "agn-2", "agn", "completed", {"acc": 0.9}, "2025-01-01T10:00:00+00:00")
    (bad / "metrics.json").write_text('{"acc": 0.')                                          # truncated
    c = _fake_run(root, "clusters-1", "clusters", "completed", {"x": 1}, "2025-01-01T10:00:00+00:00")
    (c / "params.json").write_text("not json")
    assert runs.latest_runs(root) == [root / "agn-2", root / "sed-2"]
    md = runs.report(root=root, out=tmp_path / "rep")
    assert "| sed | sed-2 | c2st | 0.52 |" in md and "0.55" not in md and "0.99" not in md and "0.98" not in md
    assert "| sed | sed-3 | failed |" in md and "| sed | sed-4 | running |" in md and "| agn | agn-1 | interrupted |" in md
    assert "agn-2: " in md and "metrics.json is not valid JSON" in md           # named and skipped
    assert "clusters-1: " in md and "params.json is not valid JSON" in md
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Runs that did not complete" in page and "Skipped" in page


def test_report_with_only_corrupt_folders_is_one_line(tmp_path, capsys):
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.json").write_text("{")
    assert main(["report", str(d), "--out", str(tmp_path)]) == 1
    assert "nothing to report" in _err_line(capsys)


# ---- run all -------------------------------------------------------------------------------------------------

def test_run_all_goes_on_past_a_failure(fixture_nbs, tmp_path, monkeypatch, capsys):
    import papermill
    from papermill.exceptions import PapermillExecutionError
    nbs = tmp_path / "nbs"
    shutil.copytree(fixture_nbs, nbs)
    write_chapter(nbs, "20_bad.ipynb", "out_dir = None\nseed: int = 0", "raise ValueError('bad')")
    write_chapter(nbs, "30_later.ipynb", "out_dir = None\nseed: int = 0")
    (nbs / "25_corrupt.ipynb").write_text('{"cells": [{"cell_type": "code", "sour')
    fail = {"bad": PapermillExecutionError(1, 2, "x", "ValueError", "bad", [])}
    monkeypatch.setattr(papermill, "execute_notebook", FakePapermill(fail.get))
    rc = main(["run", "all", "--nbs", str(nbs), "--out", str(tmp_path / "all"), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "2 of 4 studies failed: " in err and "bad" in err.splitlines()[-1] and "corrupt" in err.splitlines()[-1]
    assert "25_corrupt.ipynb is not a readable notebook" in err
    assert runs.run_status(tmp_path / "all" / "tiny")["state"] == "completed"
    assert runs.run_status(tmp_path / "all" / "later")["state"] == "completed"         # ran after the failure
    assert runs.run_status(tmp_path / "all" / "bad")["state"] == "failed"
    md = (tmp_path / "all" / "report.md").read_text()
    assert "| tiny | tiny | saves | 3 |" in md and "| later | later | saves |" in md and "| bad | bad | failed |" in md


# ---- broken chapters, bad files ------------------------------------------------------------------------------

def test_corrupt_chapter_breaks_only_itself(fixture_nbs, tmp_path, fake, capsys):
    nbs = tmp_path / "nbs"
    shutil.copytree(fixture_nbs, nbs)
    (nbs / "20_broken.ipynb").write_text('{"cells": [')
    (nbs / "30_latin.ipynb").write_bytes(b"\xff\xfe not utf-8")
    write_chapter(nbs, "40_syntax.ipynb", "n_points: int = = 3")
    assert main(["list", "--nbs", str(nbs)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("tiny  (10_tiny.ipynb)")
    assert any(l.startswith("broken  BROKEN: 20_broken.ipynb is not a readable notebook") for l in lines)
    assert any(l.startswith("latin  BROKEN:") for l in lines)
    assert any(l.startswith("syntax  BROKEN: 40_syntax.ipynb: the parameters cell is not valid python") for l in lines)
    assert main(["run", "tiny", "--nbs", str(nbs), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", "broken", "--nbs", str(nbs)]) == 1
    assert "20_broken.ipynb is not a readable notebook" in _err_line(capsys)


@pytest.mark.parametrize("make,msg", [
    (lambda p: p.mkdir(), "is a folder, not a YAML file"),
    (lambda p: p.write_bytes(b"n_points: 3\n\xff\xfe"), "is not UTF-8 text"),
    (lambda p: p.write_text("n_points: [1,\n  2"), "is not valid YAML"),
])
def test_bad_params_file_is_one_line(fixture_nbs, tmp_path, capsys, make, msg):
    make(tmp_path / "p.yaml")
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "-f", str(tmp_path / "p.yaml")]) == 1
    assert msg in _err_line(capsys)


def test_checkout_mismatch_is_reported(fixture_nbs, tmp_path, fake, capsys):
    tree = tmp_path / "clone"
    (tree / "astro_nb").mkdir(parents=True)
    (tree / "settings.ini").write_text("[DEFAULT]\n")
    shutil.copytree(fixture_nbs, tree / "nbs")
    assert "astro_nb is imported from" in runs.checkout_mismatch(tree / "nbs")
    assert runs.checkout_mismatch(fixture_nbs) is None                     # not a source tree
    assert runs.checkout_mismatch(Path(runs.__file__).resolve().parents[1] / "nbs") is None
    assert main(["run", "tiny", "--nbs", str(tree / "nbs"), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert f"the chapters come from {tree}" in capsys.readouterr().err


# ---- the executed notebook: atomic under a full disk and kill -9 ---------------------------------------------

def test_full_disk_keeps_the_previous_notebook(fixture_nbs, tmp_path, fake, monkeypatch, capsys):
    "A disk that fills up while papermill saves the executed notebook: the last complete save stays, whole."
    import contextlib
    out = tmp_path / "r"
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", str(out), "--no-progress"]) == 0
    good = (out / "tiny.ipynb").read_bytes()
    real, saves, fail_from = runs.atomic_write, [], [2]

    @contextlib.contextmanager
    def full_disk(path, mode="w", **kw):             # the notebook writer, failing half-way from save `fail_from`
        saves.append(path)
        with real(path, mode, **kw) as f:
            if len(saves) >= fail_from[0]:
                f.write(good.decode()[:100])
                raise OSError(errno.ENOSPC, "No space left on device")
            yield f

    monkeypatch.setattr(runs, "atomic_write", full_disk)
    capsys.readouterr()
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "tiny: run failed: OSError: [Errno 28] No space left on device" in err and "Traceback" not in err
    nb = nbformat.read(out / "tiny.ipynb", as_version=4)              # the last good save (the first), whole
    assert nb.cells[-1].outputs[0]["text"] == "save 0\n" and (out / "tiny.ipynb").read_bytes() != good
    assert not list(out.glob(".*.tmp"))
    st = runs.run_status(out)
    assert st["state"] == "failed" and "No space left" in st["error"]
    before, saves[:], fail_from[0] = (out / "tiny.ipynb").read_bytes(), [], 1     # full from the first save
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--out", str(out), "--no-progress"]) == 1
    assert (out / "tiny.ipynb").read_bytes() == before


_BIG_CHAPTER_CELLS = ["import time\nprint('x' * 200_000)\ntime.sleep(0.02)"] * 40


def test_kill_9_leaves_a_valid_notebook(tmp_path):
    """astro-nb run killed with SIGKILL while papermill saves a multi-MB notebook after each cell: the notebook on
    disk is whole. (Saved in place, as papermill does by default, it is caught truncated to 0 bytes every time.)"""
    exe = shutil.which("astro-nb") or pytest.fail("the astro-nb console script is not installed")
    write_chapter(tmp_path / "nbs", "10_big.ipynb", "out_dir = None\nseed: int = 0", *_BIG_CHAPTER_CELLS)
    out = tmp_path / "r"
    proc = subprocess.Popen([exe, "run", "big", "--nbs", str(tmp_path / "nbs"), "--out", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    target, deadline, seen = out / "big.ipynb", time.time() + 60, 0
    try:   # kill the moment the notebook shrinks (a save rewriting it in place) or once it is a few MB
        while time.time() < deadline and proc.poll() is None:
            size = target.stat().st_size if target.exists() else 0
            if size < seen or size > 2_000_000:
                break
            seen = max(seen, size)
            time.sleep(0.001)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                        # astro-nb and its kernel
        proc.wait()
    assert target.exists() and target.stat().st_size > 2_000_000, "the run did not get far enough to test"
    nb = nbformat.read(target, as_version=4)                       # valid JSON, a valid notebook
    assert len(nb.cells) == 42
    assert load_json(out / "status.json")["state"] == "running"    # killed: never marked completed ...
    st = runs.run_status(out)                                      # ... and its lock, held by no one, says so (#21)
    assert st["state"] == "interrupted" and f"PID {proc.pid} " in st["error"] and "ended without finishing" in st["error"]
    assert runs.latest_runs(tmp_path) == [] and runs.unfinished_runs(tmp_path) == [out]


def test_docs_skip_a_broken_notebook(tmp_path, caplog):
    from conftest import ROOT
    root = tmp_path / "proj"
    (root / "nbs").mkdir(parents=True)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    (root / "index.ipynb").write_text((ROOT / "index.ipynb").read_text())
    write_chapter(root / "nbs", "10_good.ipynb", "seed: int = 0")
    (root / "nbs" / "20_bad.ipynb").write_text('{"cells": [{"cell_type": "markdown", "source": "trunc')
    written = docs.build_docs(None, out=tmp_path / "docs", root=root)
    assert tmp_path / "docs" / "chapters" / "good.html" in written
    assert not list((tmp_path / "docs").rglob("*bad*.html"))
    assert "skipped" in caplog.text and "20_bad.ipynb" in caplog.text
