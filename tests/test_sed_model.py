"Study 3 (sed): the prior, the networks, sampling inside the prior, the exact likelihood, the real-data loader of the chapter."
import time

import numpy as np
import pytest

from astro_nb import inference as inf
from astro_nb.sed import data, model, sim
from astro_nb.sed.sim import PRIOR


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "Both estimators of the chapter, trained for 2 epochs on 600 spectra, with their checkpoint folder."
    bank = sim.simulate_bank(600, np.random.default_rng(0))
    ck = tmp_path_factory.mktemp("ck")
    posts = model.train_estimators(bank["theta"], bank["x"], model.npe_configs(), max_epochs=2, checkpoint_dir=ck)
    return bank, posts, ck


def test_prior_is_the_named_prior_with_units():
    assert isinstance(PRIOR, inf.NamedPrior)
    assert PRIOR.names == list(sim.PARAM_NAMES) and PRIOR.units == list(sim.PARAM_UNITS)
    np.testing.assert_array_equal(PRIOR.low, sim.PRIOR_LOW); np.testing.assert_array_equal(PRIOR.high, sim.PRIOR_HIGH)
    assert np.isfinite(PRIOR.log_prob(sim.sample_prior(50, np.random.default_rng(0)))).all()


def test_observed_flux_inverts_normalise():
    f = sim.simulate_spectra(sim.sample_prior(3, np.random.default_rng(1)))
    np.testing.assert_allclose(sim.observed_flux(sim.normalise_spectra(f)), f, rtol=1e-12)
    with pytest.raises(ValueError, match="139"): sim.observed_flux(np.ones(10))


def test_compare_with_bagpipes():
    out = sim.compare_with_bagpipes(3, np.random.default_rng(0), n_speed=20, repeats=1)
    assert out["median_rel_dev_float64"] < 1e-6 and out["median_rel_dev_float32"] < 1e-5
    assert out["speedup_float64"] == pytest.approx(out["bagpipes_seconds"] / out["seconds_float64"])
    with pytest.raises(ValueError, match=">= 1"): sim.compare_with_bagpipes(3, np.random.default_rng(0), n_speed=0)


def test_mock_and_load_spectra(tmp_path):
    theta = np.array([10.8, 1.5, 0.2, -0.5, 0.3])
    path = data.mock_sdss_spectrum(tmp_path / "one.fits", theta, np.random.default_rng(0), z=0.07, snr=20)
    names, x, skipped = data.load_spectra(path)                       # one file
    assert names == ["one.fits"] and x.shape == (1, 139) and skipped == {}
    clean = data.mock_sdss_spectrum(tmp_path / "clean.fits", theta, np.random.default_rng(0), z=0.07, snr=1e9)
    d, d0 = sim.observed_flux(x[0]), sim.observed_flux(data.load_spectra(clean)[1][0])
    assert np.std(d / d0 - 1) == pytest.approx(0.05, rel=0.2)          # noise 1/snr per model pixel
    assert abs(np.median(d0 / sim.simulate_spectra(theta)[0]) - 1) < 0.01
    clean.unlink()
    loglam = np.arange(np.log10(4000), np.log10(9000), 1e-4)         # does not cover the model range
    data.write_sdss_like(tmp_path / "partial.fits", loglam, np.ones(len(loglam)), np.ones(len(loglam)), 0.05)
    names, x, skipped = data.load_spectra(tmp_path)                   # a folder: the partial one skipped
    assert names == ["one.fits"] and list(skipped) == ["partial.fits"] and "no data" in skipped["partial.fits"]
    with pytest.raises(ValueError, match="none of the 1"): data.load_spectra(tmp_path / "partial.fits")
    with pytest.raises(FileNotFoundError): data.load_spectra(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \*.fits"): data.load_spectra(tmp_path / "empty")
    with pytest.raises(ValueError, match="snr"): data.mock_sdss_spectrum(tmp_path / "x.fits", theta, np.random.default_rng(0), snr=0)


def test_npe_configs():
    cfg = model.npe_configs("maf", "nsf")
    assert list(cfg) == ["maf (paper)", "nsf (second)"]
    assert cfg["maf (paper)"] == dict(estimator="maf", hidden_features=25, num_transforms=10)
    assert model.checkpoint_name(cfg["nsf (second)"]) == "npe_nsf_50x5.pt"
    with pytest.raises(ValueError, match="not one of"): model.npe_configs(estimator="foo")


def test_train_estimators_checkpoints_and_cap(trained):
    bank, posts, ck = trained                          # trained with warnings as errors: none escaped
    assert sorted(p.name for p in ck.iterdir()) == ["npe_maf_25x10.pt", "npe_nsf_50x5.pt"]
    tab = inf.training_table(posts)
    assert tab["stopped_at_cap"].tolist() == [True, True] and tab["epochs"].tolist() == [2, 2]
    assert all(inf.stopped_at_cap(p) for p in posts.values())
    assert all(p.config["max_epochs"] == 2 and "max_num_epochs" not in p.config for p in posts.values())
    t0 = time.perf_counter()
    again = model.train_estimators(bank["theta"], bank["x"], model.npe_configs(), max_epochs=2, checkpoint_dir=ck)
    assert time.perf_counter() - t0 < 15
    assert inf.training_table(again)["best_val_loss"].tolist() == tab["best_val_loss"].tolist()


@pytest.mark.parametrize("key", ["max_epochs", "max_num_epochs"])   # a configuration written before the rename still reads
def test_stopped_at_cap_false_when_patience_ran_out(key):
    import pandas as pd
    class P: pass
    p = P(); p.config = {key: 10, "stop_after_epochs": 3}
    p.history = pd.DataFrame({"val_loss": [5, 4, 3, 3.5, 3.6, 3.7]})         # stopped by patience
    assert not inf.stopped_at_cap(p)
    p.history = pd.DataFrame({"val_loss": np.linspace(5, 1, 10)})            # still falling at the cap
    assert inf.stopped_at_cap(p)


class _LeakyFlow(inf.NPEPosterior):
    "A stand-in flow whose draws put 90% of their mass outside the prior (log_mass up to 58)."
    def __init__(self):
        super().__init__(None, PRIOR, (139,), (np.full(139, -10.0), np.full(139, 10.0)), None)

    def sample_batched(self, x, n, seed=None, reject_outside_prior=True, min_acceptance=1e-3):
        assert reject_outside_prior is False
        rng = np.random.default_rng(seed)
        s = PRIOR.sample(len(x) * n, seed=rng.integers(2**32)).reshape(len(x), n, PRIOR.dim)
        s[..., 0] = rng.uniform(8, 58, size=(len(x), n))
        return s


def test_sample_npe_never_keeps_leaked_samples():
    "The issue-14 fix: at 10% prior acceptance (under the old 20% threshold) the samples are the flow inside the prior."
    d = model.sample_npe(_LeakyFlow(), np.zeros((3, 139)), 2000, seed=0)
    assert d.samples.shape == (3, 2000, 5) and list(d.method) == ["rejection"] * 3
    assert np.isfinite(PRIOR.log_prob(d.samples.reshape(-1, 5))).all()
    np.testing.assert_allclose(d.acceptance, 0.1, atol=0.02)
    # inside the box the flow's shape is kept: log_mass uniform on [8, 13]
    assert abs(d.samples[..., 0].mean() - 10.5) < 0.1 and d.samples[..., 0].max() <= 13
    with pytest.raises(ValueError, match="max_draws"): model.sample_npe(_LeakyFlow(), np.zeros((1, 139)), 10, max_draws=5)


def test_sample_npe_real_flow_and_importance_fallback(trained):
    bank, posts, _ = trained
    p, x = posts["maf (paper)"], bank["x"][:3]
    d = model.sample_npe(p, x, 300, seed=1)
    assert d.samples.shape == (3, 300, 5) and np.isfinite(PRIOR.log_prob(d.samples.reshape(-1, 5))).all()
    np.testing.assert_array_equal(model.sample_npe(p, x, 300, seed=1).samples, d.samples)
    # a draw budget of n: a spectrum with any leaked draw is importance-sampled on the exact likelihood
    f = model.sample_npe(p, x, 50, seed=1, max_draws=50, n_proposal=500)
    assert list(f.method) == ["rejection" if a == 1 else "importance sampling" for a in f.acceptance]
    assert isinstance(f, inf.InPriorSamples) and f.n_importance == sum(f.acceptance < 1) and f.seconds > 0
    assert np.isfinite(PRIOR.log_prob(f.samples.reshape(-1, 5))).all()


def test_log_likelihood_and_emcee():
    th = sim.sample_prior(1, np.random.default_rng(2))
    f = sim.simulate_spectra(th)
    d = sim.add_noise(f, np.random.default_rng(3), 20.0)[0]
    ll = model.log_likelihood(np.concatenate([th, th + [0.2, 0, 0, 0, 0]]), d, 20.0)
    assert ll.shape == (2,) and ll[0] > ll[1] + 100
    chi2 = -2 * (ll[0] + np.log(f[0] / 20).sum())
    assert abs(chi2 - 138) < 4 * np.sqrt(2 * 138)
    mc = model.emcee_posterior(sim.normalise_spectra(d)[0], n_samples=100, n_burn=100, n_steps=100, seed=0)
    assert mc.samples.shape == (100, 5) and abs(np.median(mc.samples[:, 0]) - th[0, 0]) < 0.3
