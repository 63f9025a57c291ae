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
