import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from astro_nb.banks import Bank, build_bank, compute_chunk, toy_simulator
from astro_nb.core import load_json


def _same(a: Bank, b: Bank):
    x, y = a.arrays(), b.arrays()
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k])


def test_bank_content_independent_of_workers(tmp_path):
    serial = build_bank(toy_simulator, n=230, chunk_size=40, path=tmp_path / "s", seed=3, show_progress=False)
    one = build_bank(toy_simulator, n=230, chunk_size=40, path=tmp_path / "w1", seed=3, client="local", workers=1,
                     show_progress=False)
    two = build_bank(toy_simulator, n=230, chunk_size=40, path=tmp_path / "w2", seed=3, client="local", workers=2,
                     show_progress=False)
    _same(serial, one)
    _same(one, two)
    assert len(two) == 230 and two.n_chunks == 6
    assert two.arrays()["x"].shape == (230, 8)


def test_bank_depends_on_seed_and_params(tmp_path):
    a = build_bank(toy_simulator, n=50, chunk_size=25, path=tmp_path / "a", seed=1, show_progress=False)
    b = build_bank(toy_simulator, n=50, chunk_size=25, path=tmp_path / "b", seed=2, show_progress=False)
    assert not np.array_equal(a.arrays()["x"], b.arrays()["x"])


_KILL_SCRIPT = """
import sys
from astro_nb.banks import build_bank, toy_simulator
build_bank(toy_simulator, n=300, chunk_size=20, path=sys.argv[1], seed=5, params={"delay": 0.15}, show_progress=False)
"""


def test_kill_then_resume_gives_identical_bank(tmp_path):
    path = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(path)])
    manifest = path / "manifest.json"
    deadline = time.time() + 60
    while time.time() < deadline:           # wait until a few chunks are recorded, then kill -9
        if manifest.exists():
            try:
                if len(load_json(manifest)["chunks"]) >= 4:
                    break
            except ValueError:
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(load_json(manifest)["chunks"])
    assert 4 <= done_before < 15, done_before          # it really was interrupted mid-way
    with pytest.raises(ValueError, match="params"):   # a resume must ask for the same bank
        build_bank(toy_simulator, n=300, chunk_size=20, path=path, seed=5, params={"delay": 0.0}, show_progress=False)
    resumed = build_bank(toy_simulator, n=300, chunk_size=20, path=path, seed=5, params={"delay": 0.15},
                         client="local", workers=2, show_progress=False)
    whole = build_bank(toy_simulator, n=300, chunk_size=20, path=tmp_path / "whole", seed=5, params={"delay": 0.15},
                       client="local", workers=2, show_progress=False)
    _same(resumed, whole)
    assert sorted(p.name for p in path.glob("chunk-*.npz")) == [f"chunk-{i:06d}.npz" for i in range(15)]
    assert not list(path.glob(".*.tmp"))                # no temporary file left by the kill survives as a chunk


def test_corrupt_chunk_is_detected_and_rebuilt(tmp_path):
    bank = build_bank(toy_simulator, n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False)
    good = bank.arrays()["x"].copy()
    p = tmp_path / "b" / "chunk-000002.npz"
    p.write_bytes(b"\x00" * p.stat().st_size)          # same size, wrong bytes: only the checksum can tell
    rebuilt = build_bank(toy_simulator, n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False)
    np.testing.assert_array_equal(rebuilt.arrays()["x"], good)


def test_mismatched_manifest_refused(tmp_path):
    build_bank(toy_simulator, n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False)
    for kwargs, field in (({"seed": 1}, "seed"), ({"n": 120}, "'n'"), ({"chunk_size": 20}, "chunk_size")):
        args = dict(n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False) | kwargs
        with pytest.raises(ValueError, match=field):
            build_bank(toy_simulator, **args)
    with pytest.raises(ValueError, match="simulator"):
        build_bank(compute_chunk, n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False)


def test_bad_requests_and_simulators(tmp_path):
    with pytest.raises(ValueError, match="importable"):
        build_bank(lambda n, rng: {"x": np.zeros(n)}, n=10, chunk_size=5, path=tmp_path / "l")
    with pytest.raises(TypeError, match="integer"):
        build_bank(toy_simulator, n=10.5, chunk_size=5, path=tmp_path / "f")
    with pytest.raises(ValueError, match=">= 1"):
        build_bank(toy_simulator, n=0, chunk_size=5, path=tmp_path / "z")
    with pytest.raises(TypeError, match="unexpected keyword"):
        build_bank(toy_simulator, n=10, chunk_size=5, path=tmp_path / "k", params={"nope": 1}, show_progress=False)


def test_incomplete_bank_is_not_read(tmp_path):
    build_bank(toy_simulator, n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False)
    m = load_json(tmp_path / "b" / "manifest.json")
    del m["chunks"]["1"]
    from astro_nb.core import save_json
    save_json(m, tmp_path / "b" / "manifest.json")
    with pytest.raises(RuntimeError, match="incomplete"):
        Bank(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="not a bank"):
        Bank(tmp_path)


def test_torch_dataset_streams_chunks(tmp_path):
    import torch
    from torch.utils.data import DataLoader
    bank = build_bank(toy_simulator, n=90, chunk_size=20, path=tmp_path / "b", seed=0, show_progress=False)
    ds = bank.torch_dataset(["theta", "x"])
    assert len(ds) == 90
    theta, x = ds[45]
    np.testing.assert_array_equal(x.numpy(), bank.arrays()["x"][45])
    batches = [b for b in DataLoader(ds, batch_size=32)]
    assert torch.cat([b[1] for b in batches]).shape == (90, 8)
    with pytest.raises(IndexError):
        ds[90]


def test_dask_client_refuses_negative_workers(tmp_path):
    "dask_workers -1 used to start a cluster with no workers and hang; now it is refused at once, by name."
    from astro_nb import banks
    from astro_nb.banks import dask_client
    with pytest.raises(ValueError, match="dask_workers must be >= 0"):
        dask_client("local", -1)
    with pytest.raises(TypeError, match="dask_workers must be an integer"):
        dask_client(None, 2.5)
    with pytest.raises(ValueError, match="dask_workers"):
        build_bank(toy_simulator, n=10, chunk_size=5, path=tmp_path / "b", client="local", workers=-1)
    assert not (tmp_path / "b").exists()                          # refused before anything was written


def test_dask_client_returns_given_client_unowned():
    from dask.distributed import Client, LocalCluster
    from astro_nb.banks import dask_client
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as cl:
        assert dask_client(cl) == (cl, False)


def test_swapped_chunk_is_refused_by_name(tmp_path):
    "A chunk replaced by another valid chunk would serve duplicated rows: its first read checks the manifest's SHA-256."
    import shutil
    build_bank(toy_simulator, n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False)
    good = Bank(tmp_path / "b").arrays()["x"].copy()
    shutil.copy(tmp_path / "b" / "chunk-000001.npz", tmp_path / "b" / "chunk-000002.npz")
    bank = Bank(tmp_path / "b")
    np.testing.assert_array_equal(bank.chunk(1)["x"], good[25:50])
    with pytest.raises(RuntimeError, match=r"chunk-000002\.npz is not the chunk its manifest records"):
        bank.chunk(2)
    with pytest.raises(RuntimeError, match="chunk-000002.npz"):
        bank.arrays()
    with pytest.raises(RuntimeError, match="chunk-000002.npz"):
        list(bank.torch_dataset(["x"])[j] for j in range(50, 60))
    with pytest.raises(IndexError):
        bank.chunk(4)
    rebuilt = build_bank(toy_simulator, n=100, chunk_size=25, path=tmp_path / "b", seed=0, show_progress=False)
    np.testing.assert_array_equal(rebuilt.arrays()["x"], good)   # a rebuild with the same arguments repairs it


def test_chunk_checksum_checked_once_per_reader(tmp_path, monkeypatch):
    from astro_nb import banks
    build_bank(toy_simulator, n=60, chunk_size=20, path=tmp_path / "b", seed=0, show_progress=False)
    bank = Bank(tmp_path / "b")
    calls = []
    real = banks.hashlib.sha256
    monkeypatch.setattr(banks.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    for _ in range(3):
        bank.arrays()
    assert len(calls) == 3                                        # one check per chunk, not per read
    p = tmp_path / "b" / "chunk-000000.npz"
    p.write_bytes(p.read_bytes()[:-10] + b"\x00" * 10)            # corrupted after this reader checked it
    with pytest.raises(RuntimeError, match="chunk-000000.npz"):
        Bank(tmp_path / "b").chunk(0)                              # a new reader checks again
