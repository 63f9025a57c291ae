"""Tests of the shared SBI toolkit (astro_nb.inference) on a linear-Gaussian model with a known posterior.

CPU only and small: one NPE training (an MDN on 3000 simulations) shared by the module, short MCMC runs.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from astro_nb.inference import (LinearGaussian, NPEPosterior, amortization, c2st_score, corner_plot, coverage,
                                coverage_max_dev, frac_within, load_posterior, make_prior, plot_coverage, plot_sbc,
                                plot_tarp, posterior_predictive, run_emcee, run_sbc, sbc_ranks, summarize, tarp,
                                train_npe)

torch.set_num_threads(1)   # small networks train fastest on one thread, above all on a shared 2-core machine


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


@pytest.fixture(scope="module")
def npe(lg):
    theta = lg.prior.sample(3000, seed=0)
    x = lg.simulate(theta, rng=1)
    x[:7, 1] = np.nan            # seven broken simulations: dropped and counted, never trained on
    x[7:10, 0] = np.inf
    with pytest.warns(UserWarning, match="dropped 10 of 3000"):
        post = train_npe(theta, x, lg.prior, estimator="mdn", hidden_features=50, num_components=2,
                         learning_rate=1e-3, training_batch_size=100, stop_after_epochs=15, max_epochs=120,
                         show_progress=False)
    return post


@pytest.fixture(scope="module")
def held_out(lg):
    theta = lg.prior.sample(200, seed=11) * 0.7
    return theta, lg.simulate(theta, rng=12)


@pytest.fixture(scope="module")
def obs(lg):
    theta_o = np.array([0.5, -1.0])
    x_o = lg.simulate(theta_o, rng=7)[0]
    return theta_o, x_o, lg.posterior_samples(x_o, 1000, seed=0)


# ---------------------------------------------------------------- priors

def test_prior_from_rows_and_dataframe():
    p = make_prior([("Om", 0.1, 0.5, r"$\Omega_m$", ""), ("s8", 0.6, 1.0, r"$\sigma_8$", "")])
    assert p.names == ["Om", "s8"] and p.dim == 2 and p.labels[0] == r"$\Omega_m$"
    assert p.dist.sample((5,)).shape == (5, 2)
    q = make_prior(pd.DataFrame({"name": ["a"], "low": [0.0], "high": [2.0]}))
    assert q.labels == ["a"] and np.isclose(q.log_prob([1.0])[0], -np.log(2))
    assert q.log_prob([[3.0]])[0] == -np.inf
    with pytest.raises(ValueError, match="low < high"):
        make_prior([("a", 1.0, 0.0)])


# ---------------------------------------------------------------- NPE against the exact posterior

def test_npe_trains_and_counts_dropped(npe):
    assert isinstance(npe, NPEPosterior)
    assert npe.n_dropped == 10 and npe.config["n_train"] == 2990
    assert npe.x_shape == (3,) and npe.training_seconds > 0
    assert {"member", "epoch", "train_loss", "val_loss"} <= set(npe.history.columns)
    assert np.isfinite(npe.history["val_loss"]).all()
    assert npe.history["val_loss"].iloc[-1] < npe.history["val_loss"].iloc[0]   # it learned something


def test_npe_c2st_against_exact(npe, obs):
    _, x_o, exact = obs
    s = npe.sample(x_o, 1000, seed=0)
    assert s.shape == (1000, 2)
    assert c2st_score(s, exact) < 0.6


def test_c2st_detects_a_wrong_posterior(obs):
    exact = obs[2]
    assert c2st_score(exact + 0.5, exact) > 0.75


def test_mcmc_c2st_against_exact(lg, obs):
    _, x_o, exact = obs
    res = run_emcee(lg.log_likelihood, lg.prior, n_samples=1000, n_walkers=32, n_burn=300, thin=50,
                    args=(x_o,), vectorize=True, seed=1)
    assert res.samples.shape == (1000, 2) and res.converged
    assert 0.2 < res.acceptance < 0.9 and res.seconds > 0 and np.all(res.tau > 0)
    assert c2st_score(res.samples, exact) < 0.6


def test_mcmc_non_vectorized_respects_prior(lg, obs):
    x_o = obs[1]
    res = run_emcee(lambda t: float(lg.log_likelihood(t, x_o)), lg.prior, n_samples=200, n_walkers=16,
                    n_burn=100, seed=0)
    assert res.samples.shape == (200, 2)
    assert np.isfinite(lg.prior.log_prob(res.samples)).all()
    short = run_emcee(lg.log_likelihood, lg.prior, n_samples=64, n_walkers=32, n_burn=50, args=(x_o,),
                      vectorize=True)
    assert not short.converged    # 2 kept steps per walker are far fewer than 50 autocorrelation times



def test_mcmc_chain_length_decoupled_from_samples(lg, obs):
    x_o = obs[1]
    res = run_emcee(lg.log_likelihood, lg.prior, n_samples=200, n_walkers=32, n_burn=200, n_steps=2500,
                    args=(x_o,), vectorize=True, seed=2)
    assert res.samples.shape == (200, 2) and res.n_steps == 2700 and res.converged
    with pytest.raises(ValueError, match="n_steps"):
        run_emcee(lg.log_likelihood, lg.prior, n_samples=1000, n_walkers=32, n_steps=10, args=(x_o,), vectorize=True)
    with pytest.raises(ValueError, match="n_steps"):      # 35 steps thinned by 2 keep 17 per walker: 544 < 560
        run_emcee(lg.log_likelihood, lg.prior, n_samples=560, n_walkers=32, n_steps=35, thin=2, args=(x_o,), vectorize=True)


def test_leaky_posterior_stops_with_clear_error(npe, held_out):
    from astro_nb.inference import LeakyPosteriorError
    theta, x = held_out
    acc = npe.prior_acceptance(x[:4])
    assert acc.shape == (4,) and (acc > 0.5).all()
    far = x[:3] + 1e3                                      # far outside the training data: the flow leaves the prior box
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LeakyPosteriorError, match="inside the prior"):
            npe.sample_batched(far, 50, seed=0)
        with pytest.raises(LeakyPosteriorError, match="reject_outside_prior=False"):
            run_sbc(npe, theta[:3], far, n_samples=20)
        with pytest.raises(LeakyPosteriorError):
            tarp(npe, theta[:3], far, n_samples=20)
        assert npe.sample_batched(far, 5, seed=0, reject_outside_prior=False).shape == (3, 5, 2)

def test_coverage_near_nominal(npe, held_out):
    theta, x = held_out
    s = npe.sample_batched(x, 300, seed=0)
    assert s.shape == (200, 300, 2)
    cov = coverage(s, theta, names=npe.names)
    assert list(cov.columns) == ["theta0", "theta1"] and len(cov) == 40
    assert coverage_max_dev(cov) < 0.15
    fw = frac_within(s, theta)
    assert abs(fw.loc[2, "theta0"] - 0.954) < 0.08
    # an over-confident posterior fails the same check
    m = s.mean(1, keepdims=True)
    assert coverage_max_dev(coverage(m + 0.4 * (s - m), theta)) > 0.2
    assert sbc_ranks(s, theta).shape == (200, 2)


def test_summarize_batch(npe, held_out):
    theta, x = held_out
    s = npe.sample_batched(x[:5], 200, seed=0)
    tab = summarize(s, npe.names, truths=theta[:5])
    assert len(tab) == 10 and list(tab["parameter"][:2]) == ["theta0", "theta1"]
    assert (tab["p16"] < tab["median"]).all() and (tab["median"] < tab["p84"]).all()
    assert np.allclose(tab["sigma"], np.hypot(tab["median"] - tab["p16"], tab["p84"] - tab["median"]))


def test_sbc_and_tarp_wrappers(npe, held_out, lg):
    import matplotlib
    matplotlib.use("Agg")
    theta, x = held_out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sbc = run_sbc(npe, theta, x, n_samples=100)
        tr = tarp(npe, theta, x, n_samples=100)
    assert sbc["ranks"].shape == (200, 2) and sbc["ranks"].max() <= 100
    assert (sbc["c2st_dap"] < 0.65).all()
    assert abs(tr["atc"]) < 0.15 and tr["ecp"].shape == tr["alpha"].shape
    for fig in (plot_sbc(sbc["ranks"], 100, labels=lg.prior.labels), plot_tarp(tr),
                plot_coverage(coverage(npe.sample_batched(x, 100), theta)), npe.plot_training(),
                corner_plot({"a": theta, "b": theta + 0.1}, truth=theta[0], labels=lg.prior.labels)):
        assert fig.axes


def test_posterior_predictive(lg, obs):
    _, x_o, exact = obs
    xp = posterior_predictive(exact, lg.simulate, n=300)
    assert xp.shape == (300, 3)
    q = np.percentile(xp, [0.5, 99.5], axis=0)
    assert ((x_o > q[0]) & (x_o < q[1])).all()


def test_amortization_formula():
    a = amortization(10.0, 0.01, 100.0)
    assert a["speedup"] == pytest.approx(1000.0)
    assert a["break_even"] == pytest.approx((10.0 - 100.0) / 0.01)
    assert a["n_to_amortize_training"] == pytest.approx(100.0 / 9.99)
    with pytest.raises(ValueError):
        amortization(-1.0, 0.01, 1.0)


# ---------------------------------------------------------------- bad input

def test_wrong_x_shape_is_an_error(npe):
    with pytest.raises(ValueError, match=r"trained on x of shape \(3,\)"):
        npe.sample(np.zeros(5), 10)
    with pytest.raises(ValueError, match="x_obs must be"):
        npe.sample_batched(np.zeros((4, 2)), 10)


def test_nan_in_x_obs_is_an_error(npe):
    with pytest.raises(ValueError, match="NaN or inf"):
        npe.sample(np.array([0.0, np.nan, 1.0]), 10)
    with pytest.raises(ValueError, match="NaN or inf in 1 of 3"):
        npe.sample_batched(np.array([[0.0, 0, 0], [0, 0, np.inf], [1, 1, 1]]), 10)


def test_far_observation_is_warned(npe):
    with pytest.warns(UserWarning, match="far outside the range"):
        npe.check_x(np.array([50.0, 0.0, 0.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # an ordinary observation is not warned about
        npe.check_x(np.array([0.5, -0.2, 1.0]))


def test_prior_theta_dimension_mismatch(lg):
    theta = lg.prior.sample(50, seed=0)
    x = lg.simulate(theta, rng=0)
    with pytest.raises(ValueError, match="prior has 2 parameters"):
        train_npe(np.c_[theta, theta[:, :1]], x, lg.prior)
    with pytest.raises(ValueError, match="outside the prior box"):
        train_npe(theta * 10, x, lg.prior)
    with pytest.raises(ValueError, match="not one of"):
        train_npe(theta, x, lg.prior, estimator="gan")


def test_save_load_roundtrip(npe, obs, tmp_path):
    x_o = obs[1]
    path = npe.save(tmp_path / "npe.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the same versions load without a warning
        back = load_posterior(path)
    assert back.names == npe.names and back.x_shape == npe.x_shape and back.n_dropped == 10
    np.testing.assert_allclose(back.sample(x_o, 200, seed=4), npe.sample(x_o, 200, seed=4), atol=1e-5)


def test_posterior_from_another_version_warns(npe, obs, tmp_path):
    x_o = obs[1]
    npe.save(tmp_path / "npe.pt")
    payload = torch.load(tmp_path / "npe.pt", weights_only=True)
    payload["sbi_version"], payload["torch_version"] = "0.18.0", "1.13.0"
    torch.save(payload, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="saved with sbi 0.18.0 / torch 1.13.0"):
        old = load_posterior(tmp_path / "old.pt")
    assert old.sample(x_o, 10).shape == (10, 2)
    # an embedded pickle (files written before #21 carried one) is never unpickled: a crafted one runs nothing
    import pickle
    flag = tmp_path / "ran"
    class Evil:
        def __reduce__(self): return (open, (str(flag), "w"))
    payload["posterior_pickle"] = pickle.dumps(Evil())
    torch.save(payload, tmp_path / "crafted.pt")
    with pytest.warns(UserWarning, match="saved with sbi 0.18.0"):
        rebuilt = load_posterior(tmp_path / "crafted.pt")
    assert not flag.exists()
    np.testing.assert_allclose(rebuilt.sample(x_o, 200, seed=4), npe.sample(x_o, 200, seed=4), atol=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a posterior file"):
        load_posterior(tmp_path / "junk.pt")


def test_ensemble_of_two(lg, tmp_path):
    theta = lg.prior.sample(600, seed=3)
    x = lg.simulate(theta, rng=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Maximum number of epochs.*")
        ens = train_npe(theta, x, lg.prior, estimator="mdn", hidden_features=16, num_components=1, ensemble=2,
                        max_epochs=3, show_progress=False, figure_path=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert ens.history["member"].nunique() == 2 and len(ens.estimators) == 2
    with warnings.catch_warnings():      # three epochs leave mass outside the prior: sbi says so, expected here
        warnings.filterwarnings("ignore", message=".*outside the prior support.*")
        assert ens.sample_batched(x[:3], 20, seed=0).shape == (3, 20, 2)
