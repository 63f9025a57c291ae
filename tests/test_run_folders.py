"""#21: run folders with an owner (a lock for the whole run), resumes refused across chapter versions, run folders never
nested, and everything a user typed checked before a kernel starts. Kernels are faked (papermill.execute_notebook)
except where a real process must hold a lock."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from astro_nb import runs
from astro_nb.cli import main
from astro_nb.core import LOCK_NAME, RunLock, load_json, lock_state, read_lock, save_json
from conftest import FIXTURES
from test_runs_faults import FakePapermill, write_chapter


@pytest.fixture
def fake(monkeypatch):
    import papermill
    f = FakePapermill()
    monkeypatch.setattr(papermill, "execute_notebook", f)
    return f


@pytest.fixture
def nbs(tmp_path):
    "A copy of the fixture chapters that a test may edit."
    shutil.copytree(FIXTURES / "nbs", tmp_path / "nbs")
    return tmp_path / "nbs"


def _run(nbs, out, *args):
    return main(["run", "tiny", "--nbs", str(nbs), "--out", str(out), "--no-progress", *args])


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the lock ------------------------------------------------------------------------------------------------

def test_the_run_holds_its_folder_for_its_whole_length(nbs, tmp_path, monkeypatch):
    import papermill
    seen = []
    class Watching(FakePapermill):
        def __call__(self, *a, **k):
            seen.append((lock_state(out), read_lock(out)))
            return super().__call__(*a, **k)
    monkeypatch.setattr(papermill, "execute_notebook", Watching())
    out = tmp_path / "r"
    assert _run(nbs, out) == 0
    (state, owner), = seen
    assert state == "held" and owner["pid"] == os.getpid() and owner["host"]
    assert not (out / LOCK_NAME).exists() and lock_state(out) == "free"      # released at the end


def test_a_second_run_or_fresh_is_refused_while_the_owner_lives(nbs, tmp_path, fake, capsys):
    out = tmp_path / "r"
    assert _run(nbs, out) == 0
    before = _files(out)
    capsys.readouterr()
    with RunLock(out):                                   # another run is using the folder
        for extra in ((), ("--fresh",)):
            assert _run(nbs, out, *extra) == 1
            err = capsys.readouterr().err
            assert f"is in use by PID {os.getpid()}" in err and "mix two runs" in err, err
        with pytest.raises(runs.ChapterError, match="in use by PID"):   # the API refuses as the command does
            runs.run_chapter("tiny", nbs / "10_tiny.ipynb", {}, out, progress_bar=False)
    assert len(fake.calls) == 1 and not list(tmp_path.glob("r.old-*"))
    assert {k: v for k, v in _files(out).items() if k != LOCK_NAME} == before    # nothing touched


def _holder(folder: Path) -> subprocess.Popen:
    "Another process that takes the folder's lock and keeps it until killed."
    code = ("import sys, time\nfrom astro_nb.core import RunLock\nRunLock(sys.argv[1]).acquire()\n"
            "print('locked', flush=True)\ntime.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_killed_owner_leaves_a_stale_lock_read_as_interrupted_and_taken_over(nbs, tmp_path, fake, capsys):
    out = tmp_path / "r"
    assert _run(nbs, out) == 0
    save_json({**load_json(out / "status.json"), "state": "running", "finished": None}, out / "status.json")
    proc = _holder(out)
    try:
        assert lock_state(out) == "held" and runs.run_status(out)["state"] == "running"
        assert _run(nbs, out) == 1 and f"in use by PID {proc.pid}" in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGKILL); proc.wait()
    assert (out / LOCK_NAME).exists() and lock_state(out) == "stale"          # the file stays, nobody holds it
    st = runs.run_status(out)
    assert st["state"] == "interrupted" and f"PID {proc.pid}" in st["error"]
    assert runs.unfinished_runs(tmp_path) == [out] and runs.latest_runs(tmp_path) == []
    md = runs.report([out], out=tmp_path / "rep")
    assert "interrupted" in md and "ended without finishing" in md
    assert _run(nbs, out) == 0 and runs.run_status(out)["state"] == "completed"   # the next run takes it over
    assert not (out / LOCK_NAME).exists()


def test_a_lock_naming_a_dead_pid_is_stale(tmp_path):
    d = tmp_path / "r"; d.mkdir()
    save_json({"state": "running", "started": "2026-12-01T00:00:00+00:00"}, d / "status.json")
    assert runs.run_status(d)["state"] == "running"                      # no lock at all: nothing to say otherwise
    (d / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 11, "host": "h"}))
    st = runs.run_status(d)
    assert st["state"] == "interrupted" and "PID 4194315 on h" in st["error"]


# ---- versions and nesting ------------------------------------------------------------------------------------

def test_resuming_after_the_chapter_changed_is_refused_unless_fresh(nbs, tmp_path, fake, capsys):
    out = tmp_path / "r"
    assert _run(nbs, out, "-p", "n_points", "20") == 0
    chapter = nbs / "10_tiny.ipynb"
    nb = json.loads(chapter.read_text())
    nb["cells"][-1]["source"] = "".join(nb["cells"][-1]["source"]) + "\nctx.log('new_metric', 1)"
    chapter.write_text(json.dumps(nb))
    capsys.readouterr()
    assert _run(nbs, out, "-p", "n_points", "20") == 1
    err = capsys.readouterr().err
    assert "run by another version of 10_tiny.ipynb" in err and "--fresh" in err
    assert len(fake.calls) == 1
    assert _run(nbs, out, "-p", "n_points", "20", "--fresh") == 0
    assert load_json(out / "status.json")["source"]["chapter_sha256"] == runs.chapter_hash(chapter)


def test_out_inside_a_run_folder_is_refused(nbs, tmp_path, fake, capsys):
    out = tmp_path / "r"
    assert _run(nbs, out) == 0
    before = _files(out)
    capsys.readouterr()
    assert _run(nbs, out / "inner") == 1
    assert f"lies inside the run folder {out}" in capsys.readouterr().err
    assert main(["run", "all", "--nbs", str(nbs), "--out", str(out), "--no-progress"]) == 1   # run all at a run folder
    assert f"lies inside the run folder {out}" in capsys.readouterr().err
    assert _files(out) == before and len(fake.calls) == 1                   # its report is not overwritten


# ---- everything typed, before a kernel starts ----------------------------------------------------------------

def test_empty_out_and_out_dir_parameter_are_refused(nbs, tmp_path, fake, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run(nbs, "") == 1 and "--out is empty" in capsys.readouterr().err
    assert main(["run", "tiny", "--nbs", str(nbs), "-p", "out_dir", "elsewhere"]) == 1
    assert "give --out FOLDER instead of setting out_dir" in capsys.readouterr().err
    (tmp_path / "p.yaml").write_text("out_dir: elsewhere\n")
    assert main(["run", "tiny", "--nbs", str(nbs), "-f", "p.yaml"]) == 1 and "give --out" in capsys.readouterr().err
    assert main(["docs", "--out", ""]) == 1 and "--out is empty" in capsys.readouterr().err
    assert not fake.calls and not (tmp_path / "_runs").exists() and not (tmp_path / "elsewhere").exists()


@pytest.fixture
def paths_nbs(tmp_path):
    write_chapter(tmp_path / "pnbs", "10_paths.ipynb",
                  "out_dir = None  # run folder\n"
                  "catalog_file: str = \"\"  # halo catalogues; empty means mock catalogues\n"
                  "fits_dir: str = \"\"  # folder of cutouts\n"
                  "label: str = \"x\"  # free text\n"
                  "seed: int = 0")
    return tmp_path / "pnbs"


@pytest.mark.parametrize("param,value,msg", [
    ("catalog_file", "missing.h5", "names nothing: no such file or folder"),
    ("fits_dir", "cat.h5", "is a file; the chapter wants a folder"),
])
def test_path_parameters_name_inputs_that_exist(paths_nbs, tmp_path, fake, capsys, monkeypatch, param, value, msg):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.h5").write_bytes(b"\x89HDF")
    rc = main(["run", "paths", "--nbs", str(paths_nbs), "-p", param, value, "--out", "r", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and f"parameter {param!r}" in err and msg in err and str(tmp_path / value) in err
    assert not fake.calls and not (tmp_path / "r").exists()
    assert main(["run", "paths", "--nbs", str(paths_nbs), "-p", "catalog_file", "cat.h5", "-p", "fits_dir", ".",
                 "-p", "label", "no/such/thing", "--out", "r", "--no-progress"]) == 0      # label is not a path


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_path_parameter_is_refused(paths_nbs, tmp_path, fake, capsys):
    f = tmp_path / "secret.h5"; f.write_bytes(b"x"); f.chmod(0)
    assert main(["run", "paths", "--nbs", str(paths_nbs), "-p", "catalog_file", str(f), "--out", str(tmp_path / "r")]) == 1
    assert "cannot be read" in capsys.readouterr().err and not fake.calls


def test_a_profile_entry_for_an_unknown_study_is_refused(nbs, tmp_path, fake, capsys):
    prof = tmp_path / "mine.yaml"
    prof.write_text("tiny:\n  n_points: 30\ntinny:\n  n_points: 3\n")
    assert main(["run", "tiny", "--nbs", str(nbs), "--profile", str(prof), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "no chapter named 'tinny'" in err and "chapters: tiny" in err and not fake.calls
    prof.write_text("tiny:\n  n_points: 30\n")
    assert main(["run", "tiny", "--nbs", str(nbs), "--profile", str(prof), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert fake.calls[0]["parameters"]["n_points"] == 30


def test_resuming_after_the_study_package_changed_is_refused(nbs, tmp_path, fake, capsys):
    "A changed simulator or model notebook (nbs/NN_study_part.ipynb) would leave old banks and checkpoints in the folder."
    part = nbs / "11_tiny_sim.ipynb"
    part.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": []}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    out = tmp_path / "r"
    assert _run(nbs, out, "-p", "n_points", "20") == 0
    part.write_text(part.read_text().replace("x = 1", "x = 2"))
    capsys.readouterr()
    assert _run(nbs, out, "-p", "n_points", "20") == 1
    assert "another version of the tiny package" in capsys.readouterr().err
    assert _run(nbs, out, "-p", "n_points", "20", "--fresh") == 0
