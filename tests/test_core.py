import json

import numpy as np
import pytest
import torch

from astro_nb.core import RunContext, atomic_write, flatten, get_device, load_json, save_json, seed_everything


def test_device_auto_and_bad():
    assert get_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a device"):
        get_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no GPU"):
            get_device("cuda")


def test_seed_everything_repeats_numpy_and_torch():
    a = seed_everything(11).normal(size=4), np.random.rand(2), torch.rand(3)
    b = seed_everything(11).normal(size=4), np.random.rand(2), torch.rand(3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="non-negative"):
        seed_everything(-3)
    with pytest.raises(ValueError):
        seed_everything(1.5)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "metrics.json"
    save_json({"a": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write('{"a": 2, "trunc')
            raise RuntimeError("killed")
    assert load_json(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_save_json_converts_numpy_torch_and_nan(tmp_path):
    save_json({"x": np.float32(1.5), "t": torch.tensor([1, 2]), "nan": float("nan"), "b": np.bool_(True)}, tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5, "t": [1, 2], "nan": None, "b": True}


def test_load_json_names_bad_file(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        load_json(tmp_path / "bad.json")


def test_run_context_logs_and_resumes(tmp_path):
    ctx = RunContext(tmp_path / "run", name="demo", params={"n": 2})
    ctx.log("accuracy", {"svm": 0.9}, paper={"svm": 0.976}, source="paper")
    ctx.log("n", 5)
    again = RunContext(tmp_path / "run", name="demo")
    assert again.metrics == {"accuracy": {"svm": 0.9}, "n": 5}
    assert again.papers["accuracy.svm"]["value"] == 0.976
    assert load_json(tmp_path / "run" / "params.json") == {"study": "demo", "parameters": {"n": 2}}
    with pytest.raises(ValueError, match="metric name"):
        ctx.log(None, 1)


def test_flatten():
    assert flatten({"a": {"b": {"c": 1}}, "d": 2}) == {"a.b.c": 1, "d": 2}


def test_atomic_write_full_disk_keeps_old_file(tmp_path):
    "A write that hits a full disk (ENOSPC half-way) leaves the previous file whole and no temporary file."
    import errno
    target = tmp_path / "metrics.json"
    save_json({"a": 1}, target)
    with pytest.raises(OSError, match="No space"):
        with atomic_write(target) as f:
            f.write('{"a": 2, "b": "' + "x" * 10000)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert load_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_write_follows_umask(tmp_path, umask):
    import os
    import stat
    old = os.umask(umask)
    try:
        save_json({"a": 1}, tmp_path / "m.json")
        with atomic_write(tmp_path / "f.png", "wb") as f:
            f.write(b"png")
    finally:
        os.umask(old)
    for name in ("m.json", "f.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_param_differences_normalises_values():
    from astro_nb.core import param_differences
    assert param_differences({"n": 3, "lr": 0.1, "v": [1, 2], "out_dir": "/a/b"},
                             {"n": np.int64(3), "lr": 0.1, "v": (1, 2), "out_dir": "b", "extra": 1}) == {}
    assert param_differences({"n": 3, "flag": 1}, {"n": 4.0, "flag": True}) == {"n": (3, 4.0), "flag": (1, True)}
    assert param_differences({"x": 2}, {"x": 2.0}) == {}


def test_run_context_refuses_other_parameters(tmp_path):
    "A folder holds one parameter set: RunContext refuses other values for the same names, before writing anything."
    run = tmp_path / "run"
    ctx = RunContext(run, name="demo", params={"n": 2, "lr": 0.1})
    ctx.log("acc", 0.5)
    before = (run / "params.json").read_text()
    with pytest.raises(ValueError, match=r"n: 2 -> 3.*lr: 0.1 -> 0.2"):
        RunContext(run, name="demo", params={"n": 3, "lr": 0.2})
    assert (run / "params.json").read_text() == before
    with pytest.raises(ValueError, match="n: 2 -> 5"):
        ctx.save_params({"n": 5})
    again = RunContext(run, name="demo", params={"n": np.int64(2), "lr": 0.1, "seed": 0})   # same values resume
    assert again.metrics == {"acc": 0.5}
    assert load_json(run / "params.json")["parameters"] == {"n": 2, "lr": 0.1, "seed": 0}


def test_run_context_accepts_what_astro_nb_run_wrote(tmp_path):
    "astro-nb run writes every parameter (out_dir absolute) first; the kernel's RunContext then writes the same values."
    run = tmp_path / "run"
    save_json({"study": "demo", "chapter": "nbs/10_demo.ipynb",
               "parameters": {"out_dir": str(run.resolve()), "n": 2, "lr": 0.1, "label": "x"}}, run / "params.json")
    RunContext(str(run), name="demo", params={"n": 2, "lr": 0.1, "out_dir": "run"})
    rec = load_json(run / "params.json")
    assert rec["study"] == "demo" and rec["chapter"] == "nbs/10_demo.ipynb" and rec["parameters"]["label"] == "x"
    with pytest.raises(ValueError, match="label: 'x' -> 'y'"):
        RunContext(run, name="demo", params={"label": "y"})


def test_interactive_folder_follows_parameters(tmp_path, monkeypatch):
    "A notebook run without out_dir resumes with the same parameters and gets its own folder with others."
    from astro_nb.core import RunContext, interactive_dir
    monkeypatch.chdir(tmp_path)
    a = RunContext(None, name="demo", params={"n": 1, "out_dir": None})
    a.log("x", 1.0)
    again = RunContext(None, name="demo", params={"n": 1})
    assert again.path == a.path and again.metrics == {"x": 1.0}
    other = RunContext(None, name="demo", params={"n": 2})
    assert other.path != a.path and other.metrics == {}
    assert interactive_dir("demo").name == "demo-interactive"


def test_progress_goes_to_the_terminal_not_the_notebook(monkeypatch, tmp_path):
    """#20: under `astro-nb run` bars go to the file it names (its own stderr), never to this process's stderr or
    file descriptor 2, which a kernel forwards into the executed notebook."""
    import io, sys
    from astro_nb import core, runs
    tty = tmp_path / "tty"
    monkeypatch.setenv("ASTRO_NB_PROGRESS", "terminal"); monkeypatch.setenv("ASTRO_NB_PROGRESS_TO", str(tty))
    captured = io.StringIO(); monkeypatch.setattr(sys, "stderr", captured)
    real = io.StringIO(); monkeypatch.setattr(sys, "__stderr__", real)
    list(core.progress(range(3), desc="bar"))
    assert captured.getvalue() == "" and real.getvalue() == "" and "bar" in tty.read_text()
    monkeypatch.setenv("ASTRO_NB_PROGRESS_TO", str(tmp_path / "no" / "such"))
    assert core.progress(range(3)).disable                       # nowhere to draw: no bar at all
    monkeypatch.setenv("ASTRO_NB_PROGRESS", "0")
    assert core.progress(range(3)).disable
    monkeypatch.delenv("ASTRO_NB_PROGRESS"); monkeypatch.delenv("ASTRO_NB_PROGRESS_TO")
    with runs._kernel_progress(True):
        assert core.os.environ["ASTRO_NB_PROGRESS"] == "terminal"
        assert core.os.environ["ASTRO_NB_PROGRESS_TO"] == f"/proc/{core.os.getpid()}/fd/2"
    with runs._kernel_progress(False): assert core.os.environ["ASTRO_NB_PROGRESS"] == "0"
    assert "ASTRO_NB_PROGRESS" not in core.os.environ and "ASTRO_NB_PROGRESS_TO" not in core.os.environ


def test_interactive_folder_follows_the_study_code(tmp_path, monkeypatch):
    "A changed simulator gives interactive runs a new folder: stale banks and checkpoints are never reused silently."
    from astro_nb import core
    pkg = tmp_path / "astro_nb"; (pkg / "demo").mkdir(parents=True)
    (pkg / "demo" / "sim.py").write_text("X = 1\n")
    monkeypatch.setattr(core, "_PACKAGE", pkg)
    p = {"seed": 0, "n": 10}
    a = core.interactive_dir("demo", p)
    assert core.interactive_dir("demo", p) == a and core.interactive_dir("demo", {**p, "out_dir": "x"}) == a
    (pkg / "demo" / "sim.py").write_text("X = 2\n")
    assert core.interactive_dir("demo", p) != a
    assert core.code_digest("nothing_here") == "" and core.code_digest("mergers", package=core.Path(core.__file__).parent)
