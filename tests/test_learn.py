"The training engine, the classification metrics and bootstrap intervals (astro_nb.learn)."
import errno

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from astro_nb import learn


def _data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    return torch.randn(n, 3, generator=g) + 2.0 * y[:, None].float(), y


def _net(seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2)]
    return nn.Sequential(*layers)




def ce(m, x, y): return F.cross_entropy(m(x), y)


def test_resume_equals_uninterrupted_with_augmentation(tmp_path):
    x, y = _data()
    aug = lambda b, g: (b[0] + 0.1 * torch.randn(b[0].shape, generator=g), b[1])
    a = _net(); learn.fit_torch(a, ce, (x, y), max_epochs=5, batch_size=16, augment=aug, device="cpu", seed=2, show_progress=False)
    ck = tmp_path / "c.pt"
    learn.fit_torch(_net(), ce, (x, y), max_epochs=2, batch_size=16, augment=aug, device="cpu", seed=2, checkpoint=ck, show_progress=False)
    torch.manual_seed(99)
    b = _net(); h = learn.fit_torch(b, ce, (x, y), max_epochs=5, batch_size=16, augment=aug, device="cpu", seed=2,
                                    checkpoint=ck, show_progress=False)
    assert h["resumed_from"] == 2 and h["epochs_run"] == 5
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_finished_checkpoint_returns_at_once_and_restores_best(tmp_path):
    x, y = _data(); xv, yv = _data(100, 1)
    ck = tmp_path / "c.pt"
    net = _net(); h1 = learn.fit_torch(net, ce, (x, y), (xv, yv), max_epochs=4, patience=10, device="cpu", checkpoint=ck, show_progress=False)
    again = _net(5); h2 = learn.fit_torch(again, ce, (x, y), (xv, yv), max_epochs=4, patience=10, device="cpu", checkpoint=ck, show_progress=False)
    assert h2["resumed_from"] == 4 and h2["val_loss"] == h1["val_loss"]
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), again.state_dict().values()))


def test_early_stopping_stops():
    x, y = _data(); xv, yv = _data(100, 1)
    h = learn.fit_torch(_net(), ce, (x, y), (xv, yv), max_epochs=200, lr=0.05, patience=2, min_delta=10.0, device="cpu", show_progress=False)
    assert h["stopped_early"] and h["epochs_run"] == 3 and h["best_epoch"] == 1


def test_mismatched_checkpoint_refused(tmp_path):
    x, y = _data(); ck = tmp_path / "c.pt"
    learn.fit_torch(_net(), ce, (x, y), max_epochs=1, device="cpu", checkpoint=ck, show_progress=False)
    with pytest.raises(learn.CheckpointMismatch, match="batch_size"):
        learn.fit_torch(_net(), ce, (x, y), max_epochs=2, batch_size=7, device="cpu", checkpoint=ck, show_progress=False)
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(learn.CheckpointMismatch, match="cannot be read"):
        learn.fit_torch(_net(), ce, (x, y), max_epochs=2, device="cpu", checkpoint=ck, show_progress=False)


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    "A full disk during a save leaves the previous checkpoint whole and resumable."
    x, y = _data(); ck = tmp_path / "c.pt"
    learn.fit_torch(_net(), ce, (x, y), max_epochs=1, device="cpu", checkpoint=ck, show_progress=False)
    before = ck.read_bytes()
    real_save = torch.save
    def full_disk(obj, f, *a, **k):
        f.write(b"partial"); raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        learn.fit_torch(_net(), ce, (x, y), max_epochs=3, device="cpu", checkpoint=ck, show_progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert ck.read_bytes() == before
    h = learn.fit_torch(_net(), ce, (x, y), max_epochs=3, device="cpu", checkpoint=ck, show_progress=False)
    assert h["resumed_from"] == 1


def test_batchnorm_single_item_batch_skipped():
    x, y = _data(17)
    h = learn.fit_torch(_net(bn=True), ce, (x, y), max_epochs=1, batch_size=8, device="cpu", show_progress=False)
    assert np.isfinite(h["train_loss"][0])


@pytest.mark.parametrize("kw, msg", [(dict(train=(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))), "empty"),
                                     (dict(train=(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))), "differ in length"),
                                     (dict(train=(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)), max_epochs=0), "max_epochs")])
def test_bad_input(kw, msg):
    kw.setdefault("max_epochs", 1)
    with pytest.raises(ValueError, match=msg):
        learn.fit_torch(_net(), ce, device="cpu", show_progress=False, **kw)


def test_classification_metrics_values_and_errors():
    m = learn.classification_metrics([0, 0, 0, 1, 2], [0, 0, 1, 1, 1], ["star", "galaxy", "qso"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["purity"]["galaxy"] == pytest.approx(1 / 3) and m["completeness"]["star"] == pytest.approx(2 / 3)
    assert np.isnan(m["purity"]["qso"]) and m["completeness"]["qso"] == 0.0
    assert m["confusion"] == [[2, 1, 0], [0, 1, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="two classes"):
        learn.classification_metrics([0, 1, 2], [0, 1, 2], ["a", "b", "c"], proba=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="empty"):
        learn.classification_metrics([], [], ["a", "b"])
    perfect = learn.classification_metrics([0, 1, 1], [0, 1, 1], ["a", "b"], proba=[0.0, 1.0, 1.0])
    assert perfect["roc_auc"] == 1.0 and perfect["brier"] == 0.0 and perfect["ece"] == 0.0


def test_history_keeps_per_epoch_seconds():
    x, y = _data()
    h = learn.fit_torch(_net(), ce, (x, y), max_epochs=2, device="cpu", show_progress=False)
    assert len(h["seconds"]) == 2 and h["train_seconds"] >= sum(h["seconds"])


def test_history_without_validation_has_no_val_loss():
    x, y = _data()
    h = learn.fit_torch(_net(), ce, (x, y), max_epochs=1, device="cpu", show_progress=False)
    assert "val_loss" not in h and h["best_epoch"] == 0


def test_resume_never_unpickles_code(tmp_path):
    "#21: a crafted checkpoint in a run folder must not run code when a training resumes from it."
    import pickle
    flag = tmp_path / "ran"
    class Evil:
        def __reduce__(self): return (open, (str(flag), "w"))
    ck = tmp_path / "ck.pt"
    with open(ck, "wb") as f: pickle.dump({"signature": Evil()}, f)
    x, y = _data()
    with pytest.raises(learn.CheckpointMismatch, match="cannot be read"):
        learn.fit_torch(_net(), ce, (x, y), max_epochs=1, device="cpu", show_progress=False, checkpoint=ck)
    assert not flag.exists()
