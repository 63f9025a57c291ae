"""Study 4 (clusters): the estimators and the likelihood (astro_nb.clusters.model): features, banks, training
with checkpoints, the Gaussian likelihood, and sampling that never stalls on a leaky observation."""
import warnings

import numpy as np
import pytest
import torch

from astro_nb import inference as inf
from astro_nb.clusters import data, model, sim

torch.set_num_threads(1)   # the chapters' policy; more threads only contend on a shared 2-core machine


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    cov = np.diag(np.concatenate([np.full(8, 25.0), np.full(8, 1e-4)]))
    path = tmp_path_factory.mktemp("clusters") / "bank"
    return model.simulation_bank(sim.simulate_analytic, 400, path, covariance=cov, seed=1), cov, path


@pytest.fixture(scope="module")
def npe(bank, tmp_path_factory):
    (theta, x), _, _ = bank
    ck = tmp_path_factory.mktemp("ck") / "mdn.ckpt"
    return model.train_estimator(theta, x, sim.PRIOR, "mdn", max_epochs=3, seed=0, checkpoint=ck), ck


def test_features():
    x = sim.analytic_summaries([0.3, 0.8])
    f = model.features(x)
    np.testing.assert_allclose(f[:8], np.log10(x[:8]), rtol=1e-6)
    np.testing.assert_allclose(f[8:], x[8:], rtol=1e-6)
    assert model.features(np.zeros((2, 16)))[0, 0] == np.float32(np.log10(0.5))
    assert model.features(np.stack([x, x])).shape == (2, 16)


def test_simulation_bank_built_then_reused(bank):
    (theta, x), cov, path = bank
    assert theta.shape == (400, 2) and x.shape == (400, 16)
    theta2, x2 = model.simulation_bank(sim.simulate_analytic, 400, path, covariance=cov, seed=1)
    np.testing.assert_array_equal(x, x2)


def test_train_estimator_resumes_from_checkpoint(bank, npe):
    (theta, x), _, _ = bank
    post, ck = npe
    assert ck.exists() and post.config["estimator"] == "mdn" and len(post.history) == 3
    again = model.train_estimator(theta, x, sim.PRIOR, "mdn", max_epochs=3, seed=0, checkpoint=ck)
    assert again.history.equals(post.history)
    assert "stopped at max_epochs = 3" in inf.training_summary(post) and inf.stopped_at_cap(post)


def test_train_estimator_hides_the_max_epochs_warning(bank, recwarn):
    (theta, x), _, _ = bank
    model.train_estimator(theta[:200], x[:200], sim.PRIOR, "maf", max_epochs=1)
    assert not [w for w in recwarn if "Maximum number of epochs" in str(w.message)]


def test_gaussian_likelihood():
    cov = np.diag(np.concatenate([np.full(8, 25.0), np.full(8, 1e-4)]))
    like = model.GaussianLikelihood(cov)
    x0 = sim.analytic_summaries([0.3, 0.8])
    th = np.array([[0.3, 0.8], [0.31, 0.8], [0.4, 0.7]])
    ll = like(th, x0)
    assert ll.shape == (3,) and abs(ll[0]) < 1e-9 and ll[0] > ll[1] > ll[2]
    d = sim.analytic_summaries(th[1]) - x0
    np.testing.assert_allclose(ll[1], -0.5 * d @ np.linalg.solve(cov, d))


def test_sample_in_prior_normal_and_edge(npe):
    post, _ = npe
    x = model.features(sim.analytic_summaries(np.array([[0.3, 0.8], [0.101, 0.601]])))
    res = inf.sample_in_prior(post, x, 100, seed=0)
    assert res.counts() == {"rejection": 2} and res.samples.shape == (2, 100, 2)
    assert np.isfinite(sim.PRIOR.log_prob(res.samples.reshape(-1, 2))).all()
    assert "All 2 observations sampled by rejection" in res.summary() and (res.acceptance > 0).all()
    np.testing.assert_array_equal(inf.sample_in_prior(post, x, 100, seed=0).samples, res.samples)     # seeded


@pytest.fixture(scope="module")
def leaky():
    "An NPE of the linear Gaussian problem and an observation whose posterior lies far outside the prior box."
    lg = inf.LinearGaussian(sigma=0.05)                      # narrow posteriors
    prior = inf.make_prior([("a", -3, 3), ("b", -3, 3)])
    theta = prior.sample(2000, seed=0)
    x = lg.simulate(theta, np.random.default_rng(0))
    post = model.train_estimator(theta, x, prior, "mdn", max_epochs=30, seed=0)
    x_out = lg.A @ np.array([3.5, 3.5])                      # the truth outside the box: all the mass leaks out
    return lg, post, np.stack([x[0], x_out]).astype(np.float32)


def test_a_leaky_observation_never_stops_sampling(leaky):
    lg, post, x = leaky
    with warnings.catch_warnings(), pytest.raises(inf.LeakyPosteriorError):
        warnings.simplefilter("ignore")                       # sbi's note on the samples outside the prior
        post.sample_batched(x[1:], 100)                       # what the chapter hit before
    res = inf.sample_in_prior(post, x, 100, seed=0, max_draws=100, log_likelihood=lg.log_likelihood,
                                likelihood_args=[(xo,) for xo in x], n_proposal=5000)
    assert res.acceptance[1] < 1e-3 and res.acceptance[0] >= 0.02     # leaky: sbi's rejection would stall or refuse
    assert res.n_importance == 1 and res.counts() == {"importance sampling": 1, "rejection": 1}
    assert res.method[0] == "rejection" and res.method[1] == "importance sampling"
    assert np.isfinite(post.prior.log_prob(res.samples.reshape(-1, 2))).all()
    failed = inf.sample_in_prior(post, x, 100, seed=0, max_draws=100)
    assert failed.method[1] == "failed" and np.isnan(failed.samples[1]).all() and np.isfinite(failed.samples[0]).all()
    assert "failed" in failed.summary()


def test_out_of_range_is_counted_not_warned(npe, recwarn):
    post, _ = npe
    x = model.features(sim.analytic_summaries(np.array([[0.3, 0.8]]))) + 5.0
    res = inf.sample_in_prior(post, x, 20, seed=0)
    assert res.out_of_range.all() and "far outside" in res.summary()
    assert not [w for w in recwarn if "far outside" in str(w.message)]


def test_mock_catalogs_fill_fiducial():
    cosmo, lm, owner, z = data.mock_catalogs(np.random.default_rng(0), [[0.3, 0.8]], lo=14.0, mass_unit="log10 Msun/h")
    assert cosmo["h"][0] == sim.FIDUCIAL["h"] and lm.min() >= 14.0 and set(np.unique(z)) == set(sim.REDSHIFTS)
