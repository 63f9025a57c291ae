"""Tests of NPE training that resumes exactly, refuses stale checkpoints and posterior files, and streams from a Bank.

Small and CPU only: MDNs of a few units on a few hundred simulations, a few epochs each.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch

import astro_nb.inference.npe as npe_mod
from astro_nb.banks import Bank, build_bank, toy_simulator
from astro_nb.inference import LinearGaussian, data_fingerprint, load_posterior, make_prior, train_npe

torch.set_num_threads(1)

KW = dict(estimator="mdn", hidden_features=16, num_components=1, learning_rate=1e-3, training_batch_size=50,
          stop_after_epochs=8, max_epochs=6, show_progress=False)


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


@pytest.fixture(scope="module")
def data(lg):
    theta = lg.prior.sample(600, seed=0)
    return theta, lg.simulate(theta, rng=1)


@pytest.fixture(scope="module")
def lines_bank(tmp_path_factory):
    "3000 noisy lines in 6 chunks of 500, from the toy simulator (prior U(-1, 1)^2)."
    return build_bank(toy_simulator, 3000, 500, tmp_path_factory.mktemp("banks") / "lines", seed=0,
                      show_progress=False)


LINE_PRIOR = make_prior([("slope", -1, 1), ("intercept", -1, 1)])


def quiet_train(*args, **kwargs):
    "train_npe without the 'not converged' warning that these short trainings raise on purpose."
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Maximum number of epochs.*")
        return train_npe(*args, **kwargs)


def assert_same_weights(a, b):
    assert len(a.estimators) == len(b.estimators)
    for ea, eb in zip(a.estimators, b.estimators):
        sa, sb = ea.state_dict(), eb.state_dict()
        assert list(sa) == list(sb)
        for k in sa:
            assert torch.equal(sa[k].cpu(), sb[k].cpu()), f"weights {k} differ"


class Interrupt(Exception):
    pass


def interrupt_at(member, epoch):
    def cb(m, e, tl, vl):
        if (m, e) == (member, epoch): raise Interrupt
    return cb


def count_epochs(monkeypatch) -> list:
    "Spy on the epoch function: the returned list grows by one per epoch trained."
    calls, real = [], npe_mod._run_epoch
    def spy(*a, **k):
        calls.append(1); return real(*a, **k)
    monkeypatch.setattr(npe_mod, "_run_epoch", spy)
    return calls


def forbid_training(monkeypatch):
    def boom(*a, **k): raise AssertionError("trained although the checkpoint holds a finished training")
    monkeypatch.setattr(npe_mod, "_run_epoch", boom)


# ---------------------------------------------------------------- exact resume

CHILD = """
import sys, time, torch
torch.set_num_threads(1)
from astro_nb.inference import LinearGaussian, train_npe
lg = LinearGaussian()
theta = lg.prior.sample(600, seed=0); x = lg.simulate(theta, rng=1)
kw = {kw!r}
train_npe(theta, x, lg.prior, checkpoint=sys.argv[1], callback=lambda *a: time.sleep(0.4), **kw)
"""


def test_kill9_during_training_resumes_bitwise(data, lg, tmp_path, monkeypatch):
    theta, x = data
    ck = tmp_path / "ckpt.pt"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(kw=KW)))
    env = {**os.environ, "ASTRO_NB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(ck)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, deadline = None, time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ck.exists():
                state = torch.load(ck, weights_only=True)
                if state["current"] is not None and state["current"]["epoch"] >= 2:
                    proc.send_signal(signal.SIGKILL); seen = state; break
            time.sleep(0.02)
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None: proc.kill()
    assert seen is not None, f"the child ended (rc {proc.returncode}) before 2 epochs were checkpointed:\n{out}"
    assert proc.returncode == -signal.SIGKILL
    killed = torch.load(ck, weights_only=True)
    assert not killed["finished"] and killed["current"]["epoch"] < KW["max_epochs"]
    done = killed["current"]["epoch"]
    calls = count_epochs(monkeypatch)
    resumed = quiet_train(theta, x, lg.prior, checkpoint=ck, **KW)
    assert len(calls) == KW["max_epochs"] - done            # continued, not restarted
    straight = quiet_train(theta, x, lg.prior, **KW)
    assert_same_weights(resumed, straight)
    assert resumed.history[["epoch", "train_loss", "val_loss"]].equals(straight.history[["epoch", "train_loss", "val_loss"]])
    assert len(resumed.history) == KW["max_epochs"]


def test_ensemble_resumes_in_second_member_and_finished_is_not_retrained(data, lg, tmp_path, monkeypatch):
    theta, x = data
    ck, kw = tmp_path / "ens.pt", dict(KW, ensemble=2, max_epochs=4)
    with pytest.raises(Interrupt):
        quiet_train(theta, x, lg.prior, checkpoint=ck, callback=interrupt_at(1, 2), **kw)
    state = torch.load(ck, weights_only=True)
    assert len(state["members"]) == 1 and state["current"]["member"] == 1 and state["current"]["epoch"] == 2
    calls = count_epochs(monkeypatch)
    resumed = quiet_train(theta, x, lg.prior, checkpoint=ck, **kw)
    assert len(calls) == 2                                       # member 0 kept, member 1 from its epoch 2
    monkeypatch.undo()
    straight = quiet_train(theta, x, lg.prior, **kw)
    assert_same_weights(resumed, straight)
    assert list(resumed.history["member"]) == [0] * 4 + [1] * 4
    forbid_training(monkeypatch)
    again = train_npe(theta, x, lg.prior, checkpoint=ck, **kw)
    assert_same_weights(again, straight)
    assert again.fingerprint == data_fingerprint(theta, x) and again.config["n_train"] == 600 and again.config["n_val"] == 60
    x_o = x[0]
    np.testing.assert_allclose(again.sample(x_o, 100, seed=0), straight.sample(x_o, 100, seed=0), atol=1e-6)


def test_early_stopping_keeps_best_weights(data, lg):
    theta, x = data
    post = quiet_train(theta, x, lg.prior, **dict(KW, learning_rate=5e-2, stop_after_epochs=2, max_epochs=40))
    h = post.history
    best = int(h["val_loss"].idxmin())
    assert len(h) == best + 1 + 2            # stopped two epochs after the best one
    first = npe_mod._ArraySource(theta, x, lg.prior, 0.1, 0, torch.device("cpu"))
    vl = npe_mod._val_loss(post.estimators[0], first.val_batches())
    assert vl == pytest.approx(h["val_loss"].iloc[best], rel=1e-5)   # the kept weights are the best epoch's


# ---------------------------------------------------------------- stale results

def test_one_name_per_knob_max_epochs(data, lg, tmp_path):
    "The old keyword is refused by name; a checkpoint written under the old config key still resumes."
    theta, x = data
    with pytest.raises(TypeError, match="`max_num_epochs` is now `max_epochs`"):
        train_npe(theta, x, lg.prior, **dict(KW, max_epochs=2, max_num_epochs=2))
    with pytest.raises(TypeError, match="unexpected keyword"):
        train_npe(theta, x, lg.prior, max_epoch=2)
    ck = tmp_path / "old.pt"
    post = quiet_train(theta, x, lg.prior, checkpoint=ck, **dict(KW, max_epochs=2))
    assert post.config["max_epochs"] == 2 and "max_num_epochs" not in post.config
    old = torch.load(ck, weights_only=True)
    old["config"] = {("max_num_epochs" if k == "max_epochs" else k): v for k, v in old["config"].items()}
    torch.save(old, ck)                                    # as written before the rename
    again = train_npe(theta, x, lg.prior, checkpoint=ck, **dict(KW, max_epochs=2))
    assert again.history.equals(post.history)


def test_stale_checkpoint_is_refused_naming_each_difference(data, lg, tmp_path):
    theta, x = data
    ck = tmp_path / "c.pt"
    quiet_train(theta, x, lg.prior, checkpoint=ck, **dict(KW, max_epochs=2))
    with pytest.raises(ValueError, match="max_epochs: 2 in the checkpoint, 40 asked") as e:
        train_npe(theta, x, lg.prior, checkpoint=ck, **dict(KW, max_epochs=40, seed=3))
    assert "seed: 0 in the checkpoint, 3 asked" in str(e.value) and f"Delete {ck}" in str(e.value)
    other = make_prior([("theta0", -3, 3), ("theta1", -3, 4)])
    with pytest.raises(ValueError, match=r"prior high: \[3.0, 3.0\] in the checkpoint, \[3.0, 4.0\] asked"):
        train_npe(theta, x, other, checkpoint=ck, **dict(KW, max_epochs=2))
    x2 = x.copy(); x2[5, 1] += 1e-3
    with pytest.raises(ValueError, match="data fingerprint: .* in the checkpoint, .* asked"):
        train_npe(theta, x2, lg.prior, checkpoint=ck, **dict(KW, max_epochs=2))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot be read"):
        train_npe(theta, x, lg.prior, checkpoint=tmp_path / "junk.pt", **KW)


def test_fingerprint(data, lines_bank):
    theta, x = data
    fp = data_fingerprint(theta, x)
    assert len(fp) == 64 and fp == data_fingerprint(theta.astype(np.float32), torch.as_tensor(x))
    assert fp != data_fingerprint(theta, x[::-1]) and fp != data_fingerprint(theta[:-1], x[:-1])
    fb = data_fingerprint(lines_bank)
    assert fb == data_fingerprint(lines_bank.torch_dataset(["theta", "x"])) != data_fingerprint(lines_bank, keys=("x", "theta"))
    with pytest.raises(ValueError, match="x=None"):
        data_fingerprint(lines_bank, x)


def test_load_posterior_refuses_another_training(data, lg, tmp_path):
    theta, x = data
    post = quiet_train(theta, x, lg.prior, **dict(KW, max_epochs=2))
    path = post.save(tmp_path / "p.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_posterior(path, prior=lg.prior, config={"estimator": "mdn", "max_epochs": 2},
                              fingerprint=data_fingerprint(theta, x))
    assert back.fingerprint == post.fingerprint == data_fingerprint(theta, x)
    assert torch.load(path, weights_only=True)["format"] == "astro_nb.npe/2"
    with pytest.raises(ValueError, match=r"prior low: \[-3.0, -3.0\] in the file, \[-2.0, -3.0\] asked"):
        load_posterior(path, prior=make_prior([("theta0", -2, 3), ("theta1", -3, 3)]))
    with pytest.raises(ValueError, match=r"prior names: \['theta0', 'theta1'\] in the file, \['a', 'b'\] asked"):
        load_posterior(path, prior=make_prior([("a", -3, 3), ("b", -3, 3)]))
    with pytest.raises(ValueError, match="hidden_features: 16 in the file, 50 asked"):
        load_posterior(path, config={"hidden_features": 50})
    with pytest.raises(ValueError, match="data fingerprint"):
        load_posterior(path, fingerprint=data_fingerprint(theta, x + 1))


def test_file_holds_one_prior_and_no_pickle(data, lg, tmp_path):
    "The posterior is rebuilt from the file's one recorded prior (no pickled sbi object that could disagree with it or run code)."
    theta, x = data
    path = quiet_train(theta, x, lg.prior, **dict(KW, max_epochs=2)).save(tmp_path / "p.pt")
    payload = torch.load(path, weights_only=True)
    assert "posterior_pickle" not in payload
    payload["prior"]["low"] = [-2.0, -3.0]
    torch.save(payload, tmp_path / "edited.pt")
    assert load_posterior(tmp_path / "edited.pt").prior.low.tolist() == [-2.0, -3.0]


def test_format_1_file_loads_with_a_warning(data, lg, tmp_path):
    theta, x = data
    post = quiet_train(theta, x, lg.prior, **dict(KW, max_epochs=2))
    payload = torch.load(post.save(tmp_path / "p.pt"), weights_only=True)
    payload["format"] = "astro_nb.npe/1"; del payload["fingerprint"]
    torch.save(payload, tmp_path / "v1.pt")
    with pytest.warns(UserWarning, match="records no fingerprint"):
        old = load_posterior(tmp_path / "v1.pt")
    assert old.fingerprint is None and old.sample(x[0], 10, seed=0).shape == (10, 2)
    with pytest.warns(UserWarning, match="records no fingerprint"):
        with pytest.raises(ValueError, match="data fingerprint: \\(not recorded\\) in the file"):
            load_posterior(tmp_path / "v1.pt", fingerprint=data_fingerprint(theta, x))


def test_bad_training_arguments(data, lg):
    theta, x = data
    with pytest.raises(ValueError, match="validation_fraction"):
        train_npe(theta, x, lg.prior, validation_fraction=0.0, **KW)
    with pytest.raises(ValueError, match="both need at least one"):
        train_npe(theta[:1], x[:1], lg.prior, validation_fraction=0.1, **KW)
    with pytest.raises(ValueError, match="keys only applies"):
        train_npe(theta, x, lg.prior, keys=("theta", "x"), **KW)


# ---------------------------------------------------------------- streaming from a bank

def test_bank_streams_chunks_and_matches_memory(lines_bank, monkeypatch):
    from sbi.utils.metrics import c2st
    parts = list(lines_bank.iter_chunks(["theta", "x"]))
    theta = np.concatenate([p["theta"] for p in parts]); x = np.concatenate([p["x"] for p in parts])
    loads = []
    real_chunk = Bank.chunk
    def spy_chunk(self, i, keys=None):
        loads.append((i, tuple(keys or ())))
        return real_chunk(self, i, keys)
    def no_arrays(self, keys=None): raise AssertionError("Bank.arrays was called: the bank was loaded at once")
    monkeypatch.setattr(Bank, "chunk", spy_chunk)
    monkeypatch.setattr(Bank, "arrays", no_arrays)
    kw = dict(KW, hidden_features=32, num_components=2, training_batch_size=100, stop_after_epochs=5, max_epochs=25)
    from_bank = quiet_train(lines_bank, None, LINE_PRIOR, keys=("theta", "x"), **kw)
    epochs = len(from_bank.history)
    assert len(loads) == lines_bank.n_chunks * (1 + epochs)      # one pass to prepare, then every chunk once per epoch
    assert {k for _, k in loads} == {("theta", "x")}
    assert from_bank.config["n_val"] == 500 and from_bank.config["n_train"] == 3000
    assert from_bank.fingerprint == data_fingerprint(lines_bank, keys=("theta", "x"))
    lo, hi = from_bank.x_range
    assert from_bank.x_shape == (8,) and (lo < hi).all()
    in_memory = quiet_train(theta, x, LINE_PRIOR, **kw)
    x_o = toy_simulator(1, np.random.default_rng(5))["x"][0]
    score = float(c2st(torch.as_tensor(from_bank.sample(x_o, 1000, seed=0)),
                       torch.as_tensor(in_memory.sample(x_o, 1000, seed=0))))
    assert score < 0.65


def test_bank_resume_is_bitwise_exact(lines_bank, tmp_path, monkeypatch):
    kw = dict(KW, max_epochs=4)
    ck = tmp_path / "bank.pt"
    with pytest.raises(Interrupt):
        quiet_train(lines_bank.torch_dataset(["theta", "x"]), None, LINE_PRIOR, checkpoint=ck,
                    callback=interrupt_at(0, 2), **kw)
    calls = count_epochs(monkeypatch)
    resumed = quiet_train(lines_bank.torch_dataset(["theta", "x"]), None, LINE_PRIOR, checkpoint=ck, **kw)
    assert len(calls) == 2
    straight = quiet_train(lines_bank, None, LINE_PRIOR, **kw)
    assert_same_weights(resumed, straight)
    with pytest.raises(ValueError, match="keys: \\['theta', 'x'\\] in the checkpoint, \\['x', 'theta'\\] asked"):
        train_npe(lines_bank, None, LINE_PRIOR, keys=("x", "theta"), checkpoint=ck, **kw)


def test_bank_drops_nan_rows_and_rejects_bad_input(lines_bank, tmp_path):
    import shutil
    path = tmp_path / "nan_bank"
    shutil.copytree(lines_bank.path, path)
    f = path / "chunk-000002.npz"
    with np.load(f) as z: arrays = {k: z[k].copy() for k in z.files}
    arrays["x"][:5, 3] = np.nan
    np.savez(f, **arrays)
    import hashlib, json                          # a bank built with NaN rows: its manifest records this chunk
    man = json.loads((path / "manifest.json").read_text())
    man["chunks"]["2"].update(sha256=hashlib.sha256(f.read_bytes()).hexdigest(), bytes=f.stat().st_size)
    (path / "manifest.json").write_text(json.dumps(man))
    bank = Bank(path)
    with pytest.warns(UserWarning, match="dropped 5 of 3000"):
        post = quiet_train(bank, None, LINE_PRIOR, **dict(KW, max_epochs=1))
    assert post.n_dropped == 5 and post.config["n_train"] == 2995
    with pytest.raises(ValueError, match=r"has no arrays \['y'\] \(it holds \['theta', 'x'\]\)"):
        train_npe(bank, None, LINE_PRIOR, keys=("theta", "y"), **KW)
    with pytest.raises(ValueError, match="pass x=None"):
        train_npe(bank, np.zeros((3000, 8)), LINE_PRIOR, **KW)
    narrow = make_prior([("slope", -0.5, 0.5), ("intercept", -1, 1)])
    with pytest.raises(ValueError, match="chunk 0: .*outside the prior box"):
        train_npe(bank, None, narrow, **KW)
    one = build_bank(toy_simulator, 100, 100, tmp_path / "one", show_progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        train_npe(one, None, LINE_PRIOR, **KW)


def test_log_prob_without_the_leakage_constant(data, lg, caplog):
    # normalized=False drops only sbi's leakage renormalisation: a constant per observation (>= 0 that it drops,
    # since at most all of the flow's mass lies inside the prior), computed without sbi's 10^4 draws or its warning
    post = quiet_train(*data, lg.prior, **KW)
    x_o = lg.simulate(np.array([2.9, -2.9]), rng=5)[0]          # at the prior's corner: much of the flow's mass leaks
    theta = np.array([[2.8, -2.8], [2.5, -2.9], [2.9, -2.5]])
    raw = post.log_prob(theta, x_o, normalized=False)
    with caplog.at_level("WARNING"):
        norm = post.log_prob(theta, x_o)
    diff = norm - raw
    assert np.allclose(diff, diff[0], atol=1e-5) and diff[0] >= -1e-6
    caplog.clear()
    with caplog.at_level("WARNING"):
        post.log_prob(theta, x_o, normalized=False)
    assert not caplog.records
