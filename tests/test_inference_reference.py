"""Tests of the reference posteriors (astro_nb.inference.reference) on a 5-D linear-Gaussian problem.

The posterior (and the evidence) of `LinearGaussian` is known exactly, so each method's samples are
compared with exact samples by C2ST. CPU only, one torch thread: one small MAF (the importance-sampling
proposal) is trained once for the module; nautilus runs once with few live points and one network.
"""
import warnings

import numpy as np
import pytest
import torch

from astro_nb.inference import (GridResult, InPriorSamples, ISResult, LinearGaussian, MCMCResult, ReferenceResult, References,
                                c2st_score, check_log_likelihood, fit_generalized_pareto, grid_posterior, importance_sample, pareto_k,
                                reference_posteriors, run_emcee, run_nautilus, sample_in_prior, train_npe)
from astro_nb.inference.npe import NPEPosterior
from astro_nb.inference.reference import _flow_log_prob

torch.set_num_threads(1)

N = 2000   # samples per posterior compared by C2ST


def log_evidence(lg, x):
    "Exact log evidence of the linear-Gaussian problem whose posterior lies well inside the prior box."
    A, s2 = lg.A, lg.sigma**2
    r = x - A @ np.linalg.lstsq(A, x, rcond=None)[0]
    n, d = A.shape
    return (-0.5 * n * np.log(2 * np.pi * s2) - r @ r / (2 * s2) + 0.5 * d * np.log(2 * np.pi)
            + 0.5 * np.linalg.slogdet(lg.cov)[1] + float(lg.prior.log_prob(np.zeros(d))[0]))


@pytest.fixture(scope="module")
def lg():
    # 8 observations of 5 parameters: posterior sd 0.13-0.39 and correlations up to 0.5, well inside the box [-3, 3]^5
    return LinearGaussian(A=np.random.default_rng(3).normal(size=(8, 5)), sigma=0.5, bound=3.0)


@pytest.fixture(scope="module")
def obs(lg):
    x_o = lg.simulate(np.array([0.5, -0.8, 0.3, 1.0, -0.4]), rng=1)[0]
    return x_o, lg.posterior_samples(x_o, N, seed=0)


@pytest.fixture(scope="module")
def npe(lg):
    theta = lg.prior.sample(3000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return train_npe(theta, lg.simulate(theta, rng=2), lg.prior, estimator="maf", hidden_features=32,
                         num_transforms=3, learning_rate=1e-3, training_batch_size=100, stop_after_epochs=10,
                         max_epochs=80, show_progress=False)


# ---------------------------------------------------------------- the three methods against the exact posterior

def test_nautilus_matches_exact_posterior(lg, obs):
    x_o, exact = obs
    res = run_nautilus(lg.log_likelihood, lg.prior, n_samples=N, n_live=300, n_eff=3000, n_networks=1, args=(x_o,))
    assert isinstance(res, ReferenceResult) and res.method == "nautilus"
    assert res.samples.shape == (N, 5) and res.names == lg.prior.names
    assert res.converged and res.ess >= N and res.n_likelihood_calls > 3000 and res.seconds > 0
    assert np.isfinite(lg.prior.log_prob(res.samples)).all()
    assert abs(res.log_evidence - log_evidence(lg, x_o)) < 0.15
    assert np.isnan(res.acceptance) and res.n_steps == 0 and np.isnan(res.tau).all()
    assert c2st_score(res.samples, exact) <= 0.55


def test_importance_sampling_matches_exact_posterior(lg, obs, npe):
    x_o, exact = obs
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # a reliable result warns about nothing
        res = importance_sample(npe, lg.log_likelihood, x_o, N, args=(x_o,))
    assert isinstance(res, ISResult) and res.reliable and res.converged and res.reason == ""
    assert res.pareto_k <= 0.7 and res.ess >= N
    assert res.proposal.shape == (10 * N, 5) and res.weights.shape == (10 * N,)
    assert np.isclose(res.weights.sum(), 1.0) and (res.weights >= 0).all()
    assert res.n_likelihood_calls <= 10 * N + 8     # proposals inside the box, plus the check
    assert abs(res.log_evidence - log_evidence(lg, x_o)) < 0.1
    assert c2st_score(res.samples, exact) <= 0.55
    assert "pareto_k=" in repr(res) and "reliable=True" in repr(res)


def test_emcee_de_snooker_converges_where_stretch_does_not(lg, obs):
    x_o = obs[0]
    kw = dict(n_samples=1000, n_walkers=32, n_burn=300, n_steps=1500, args=(x_o,), seed=0)
    de = run_emcee(lg.log_likelihood, lg.prior, moves="de_snooker", **kw)
    stretch = run_emcee(lg.log_likelihood, lg.prior, **kw)
    assert de.converged and np.all(50 * de.tau < 1500) and de.samples.shape == (1000, 5)
    assert de.tau.max() < 0.6 * stretch.tau.max() and not stretch.converged
    assert np.isclose(de.ess, 1500 * 32 / de.tau.max()) and de.n_likelihood_calls >= 32 * 1800
    assert np.isnan(de.log_evidence) and de.method == "emcee" and de.n_steps == 1800
    import emcee                                 # moves passed through
    r = run_emcee(lg.log_likelihood, lg.prior, n_samples=64, n_walkers=16, n_burn=10, args=(x_o,),
                  moves=[(emcee.moves.DEMove(), 1.0)])
    assert r.samples.shape == (64, 5)
    with pytest.raises(ValueError, match="not one of"):
        run_emcee(lg.log_likelihood, lg.prior, args=(x_o,), moves="gibbs")


def test_mcmc_result_is_the_reference_result(lg, obs):
    assert MCMCResult is ReferenceResult
    r = run_emcee(lambda t: float(lg.log_likelihood(t, obs[0])), lg.prior, n_samples=64, n_walkers=16, n_burn=10,
                  vectorize=False)                # a per-row function, wrapped
    assert isinstance(r, MCMCResult) and r.samples.shape == (64, 5) and r.tau.shape == (5,)
    assert repr(r).startswith("ReferenceResult(emcee: samples=(64, 5)") and "acceptance=" in repr(r)


# ---------------------------------------------------------------- importance sampling: its proposal and its diagnostics

def test_importance_sampling_flags_a_bad_proposal(lg, obs, npe):
    x_o = obs[0]
    x_other = lg.simulate(np.array([0.5, -0.8, 0.3, 1.0, -0.4]) + 0.8, rng=5)[0]   # NPE of another observation
    with pytest.warns(UserWarning, match=r"unreliable: Pareto k = \d+\.\d+ > 0.7.*train a better NPE"):
        bad = importance_sample(npe, lg.log_likelihood, x_other, N, args=(x_o,))
    assert not bad.reliable and not bad.converged and bad.pareto_k > 0.7 and "Pareto k" in bad.reason
    assert bad.samples.shape == (N, 5)            # still returned, flagged
    with pytest.raises(ValueError, match="unreliable.*use a sampler"):
        importance_sample(npe, lg.log_likelihood, x_other, N, args=(x_o,), on_unreliable="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importance_sample(npe, lg.log_likelihood, x_other, 100, args=(x_o,), on_unreliable="ignore")
    with pytest.raises(ValueError, match="on_unreliable"):
        importance_sample(npe, lg.log_likelihood, x_o, 10, args=(x_o,), on_unreliable="maybe")


def test_importance_sampling_asks_for_enough_ess(lg, obs, npe):
    x_o = obs[0]
    with pytest.warns(UserWarning, match="ESS = .* < min_ess = 5000"):
        r = importance_sample(npe, lg.log_likelihood, x_o, 100, n_proposal=2000, args=(x_o,), min_ess=5000)
    assert not r.reliable and r.pareto_k <= 0.7 and r.reason.startswith("importance sampling is unreliable: ESS")


def test_proposal_density_is_the_raw_flow_for_direct_and_ensemble(lg, obs, npe):
    from sbi.inference import EnsemblePosterior
    x_o = obs[0]
    x = npe.check_x(x_o)
    th = npe.sample(x_o, 200, seed=1, reject_outside_prior=False).astype(float)
    raw = npe.posterior.posterior_estimator.log_prob(torch.as_tensor(th, dtype=torch.float32)[:, None],
                                                     condition=x).squeeze(1).detach().numpy()
    assert np.allclose(_flow_log_prob(npe, th, x), raw, atol=1e-4)
    ens = NPEPosterior(EnsemblePosterior([npe.posterior, npe.posterior]), lg.prior, npe.x_shape, npe.x_range, npe.history)
    assert np.allclose(_flow_log_prob(ens, th, x), raw, atol=1e-4)    # a mixture of two equal flows is that flow
    r = importance_sample(ens, lg.log_likelihood, x_o, 200, args=(x_o,))
    assert r.reliable and r.samples.shape == (200, 5)


def test_defensive_prior_component(lg, obs, npe):
    x_o = obs[0]
    pure_prior = importance_sample(npe, lg.log_likelihood, x_o, 50, n_proposal=500, defensive=1.0, args=(x_o,),
                                   on_unreliable="ignore")  # the prior alone: almost no proposal near the posterior
    assert pure_prior.ess < 20 and not pure_prior.reliable
    with pytest.raises(ValueError, match="defensive"):
        importance_sample(npe, lg.log_likelihood, x_o, 50, defensive=1.5, args=(x_o,))
    with pytest.raises(TypeError, match="NPEPosterior"):
        importance_sample(npe.posterior, lg.log_likelihood, x_o, 50, args=(x_o,))


def test_pareto_k_recovers_known_shapes():
    rng = np.random.default_rng(0)
    for k in (0.2, 0.5, 0.9):               # numpy's pareto(a) is a generalized Pareto with shape k = 1/a, scale 1/a
        k_hat, sigma_hat = fit_generalized_pareto(rng.pareto(1 / k, 4000))
        assert abs(k_hat - k) < 0.07 and abs(sigma_hat - k) < 0.1 * k
        assert abs(pareto_k(np.log1p(rng.pareto(1 / k, 4000))) - k) < 0.15   # weights with such a tail
    assert pareto_k(rng.normal(0, 0.1, 4000)) < 0.3                          # light tail
    assert pareto_k(np.r_[np.zeros(3), np.full(97, -np.inf)]) == np.inf       # too few nonzero weights to fit
    with pytest.raises(ValueError, match="at least 5"):
        fit_generalized_pareto([1.0, 2.0])


# ---------------------------------------------------------------- a bad likelihood is refused, by every method

BAD = {
    "NaN": (lambda lg, x: lambda th: np.where(th[:, 0] > 0, np.nan, lg.log_likelihood(th, x)), r"NaN for \d+ of 8"),
    "shape": (lambda lg, x: lambda th: lg.log_likelihood(th, x)[:, None], r"returned shape \(8, 1\).*expected \(8,\)"),
    "one value": (lambda lg, x: lambda th: lg.log_likelihood(th, x).sum(),
                  r"returns one value for all (walkers|rows): it must take a batch \(m, dim\) and return \(m,\)"),
}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("method", ["emcee", "nautilus", "importance"])
def test_bad_likelihood_is_refused(lg, obs, npe, method, bad):
    x_o = obs[0]
    make, msg = BAD[bad]
    f = make(lg, x_o)
    run = {"emcee": lambda: run_emcee(f, lg.prior, n_samples=64, vectorize=True),
           "nautilus": lambda: run_nautilus(f, lg.prior, n_samples=64),
           "importance": lambda: importance_sample(npe, f, x_o, 64)}[method]
    with pytest.raises(ValueError, match=msg) as e:
        run()
    assert "\n" not in str(e.value)


def test_per_row_likelihood_checked_the_same(lg, obs):
    x_o = obs[0]
    with pytest.raises(ValueError, match="NaN for 8 of 8"):
        run_emcee(lambda t: np.nan, lg.prior, vectorize=False)
    with pytest.raises(ValueError, match=r"shape \(2,\).*one number"):
        run_emcee(lambda t: np.zeros(2), lg.prior, vectorize=False)
    with pytest.raises(ValueError, match="neither a batch"):          # vectorize=None: neither way works
        run_emcee(lambda t: t.missing, lg.prior)
    assert check_log_likelihood(lambda t: float(lg.log_likelihood(t, x_o)), lg.prior, vectorized=False).shape == (8,)
    v = check_log_likelihood(lambda th: np.where(th[:, 0] > 0, -np.inf, 0.0), lg.prior)   # -inf is allowed
    assert np.isinf(v).any() and not np.isnan(v).any()


def test_nan_while_sampling_counts_as_zero_likelihood_and_warns(lg, obs, npe):
    x_o = obs[0]
    cut = lg.prior.sample(8, seed=0)[:, 0].max()     # the check's 8 prior draws (seed 0) stay below the cut
    f = lambda th: np.where(th[:, 0] > cut, np.nan, lg.log_likelihood(th, x_o))
    with pytest.warns(UserWarning, match=r"returned NaN for \d+ of \d+ parameter vectors while sampling"):
        r = importance_sample(npe, f, x_o, 100, n_proposal=1000, defensive=0.5, on_unreliable="ignore")
    assert (r.samples[:, 0] <= cut).all()


def test_importance_sampling_calls_the_likelihood_in_batches(lg, obs, npe):
    x_o, sizes = obs[0], []
    def f(th):
        sizes.append(len(th)); return lg.log_likelihood(th, x_o)
    r = importance_sample(npe, f, x_o, 100, n_proposal=1000, batch_size=300)
    assert sizes[0] == 8 and max(sizes[1:]) == 300 and sum(sizes) == r.n_likelihood_calls
    whole = importance_sample(npe, lg.log_likelihood, x_o, 100, n_proposal=1000, args=(x_o,))
    assert np.allclose(r.weights, whole.weights) and np.array_equal(r.samples, whole.samples)


# ---------------------------------------------------------------- in-prior sampling and references for many observations

def test_sample_in_prior_batched_inside_and_seeded(lg, npe):
    theta = lg.prior.sample(6, seed=3) * 0.5
    x = lg.simulate(theta, rng=4)
    res = sample_in_prior(npe, x, 300, seed=0)
    assert isinstance(res, InPriorSamples) and res.samples.shape == (6, 300, 5) and res.counts() == {"rejection": 6}
    assert np.isfinite(lg.prior.log_prob(res.samples.reshape(-1, 5))).all()
    assert ((res.acceptance > 0.5) & (res.acceptance <= 1)).all() and res.seconds > 0
    np.testing.assert_array_equal(sample_in_prior(npe, x, 300, seed=0).samples, res.samples)
    # the rejection target is the flow restricted to the prior: its draws match the flow's own rejection sampling
    assert c2st_score(res.samples[0], npe.sample(x[0], 300, seed=9)) < 0.62


def test_sample_in_prior_leaky_observation(lg, npe):
    "An observation far outside: importance sampling of the exact likelihood with one, NaN ('failed') without."
    x = np.stack([lg.simulate(np.zeros(5), rng=5)[0], lg.simulate(np.full(5, 2.9), rng=6)[0] + 30.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # the expected notices are silenced, nothing else escapes
        failed = sample_in_prior(npe, x, 200, seed=0, max_draws=400)
    assert list(failed.method) == ["rejection", "failed"] and np.isnan(failed.samples[1]).all() and failed.out_of_range[1]
    assert "1 of 2 observations could not be filled" in failed.summary()
    res = sample_in_prior(npe, x, 200, seed=0, max_draws=400, log_likelihood=lg.log_likelihood,
                          likelihood_args=[(xo,) for xo in x], n_proposal=4000)
    assert list(res.method) == ["rejection", "importance sampling"] and res.n_importance == 1
    assert np.isfinite(lg.prior.log_prob(res.samples.reshape(-1, 5))).all()


def test_sample_in_prior_bad_input(lg, npe):
    x = lg.simulate(lg.prior.sample(2, seed=1) * 0.5, rng=2)
    with pytest.raises(ValueError, match="max_draws"): sample_in_prior(npe, x, 100, max_draws=50)
    with pytest.raises(ValueError, match="likelihood_args"): sample_in_prior(npe, x, 10, likelihood_args=[()])
    with pytest.raises(ValueError, match="shape"): sample_in_prior(npe, x[:, :3], 10)
    with pytest.raises(TypeError, match="NPEPosterior"): sample_in_prior(object(), x, 10)


def test_reference_posteriors_fallback_and_labels(lg, obs, npe):
    x_o, exact = obs
    x_far = lg.simulate(np.array([-2.0, 2.0, -2.0, 2.0, -2.0]), rng=7)[0]
    calls = []
    def fallback(i):
        calls.append(i)
        return ReferenceResult(lg.posterior_samples(x_far, 500, seed=1), method="nautilus", converged=i == 0)
    # the proposal is the NPE at x_o for both; the second likelihood is x_far's, which that proposal misses
    refs = reference_posteriors(npe, lg.log_likelihood, np.stack([x_o, x_o]), 500, seed=0,
                                likelihood_args=[(x_o,), (x_far,)], fallback=fallback)
    assert isinstance(refs, References) and refs.samples.shape == (2, 500, 5) and calls == [1]
    assert refs.methods == ["importance sampling", "nautilus (not converged)"] and refs.reliable_fraction == 0.5
    assert c2st_score(refs.samples[0], exact[:500]) < 0.6 and list(refs.table().columns) == ["reference", "pareto_k", "is_ess"]
    assert refs.counts() == {"importance sampling": 1, "nautilus (not converged)": 1}
    kept = reference_posteriors(npe, lg.log_likelihood, np.stack([x_o, x_o]), 200, likelihood_args=[(x_o,), (x_far,)])
    assert kept.methods == ["importance sampling", "importance sampling (unreliable)"] and kept.fallback_runs == {}
    with pytest.raises(ValueError, match="likelihood_args"):
        reference_posteriors(npe, lg.log_likelihood, np.stack([x_o, x_o]), 200, likelihood_args=[(x_o,)])
    with pytest.raises(ValueError, match="samples, 200 asked"):
        reference_posteriors(npe, lg.log_likelihood, x_o[None], 200, likelihood_args=[(x_far,)], fallback=fallback)


@pytest.mark.parametrize("sigma, truth", [(0.3, (0.5, -1.0)), (0.3, (2.9, -2.9)), (0.002, (0.3, 1.2))])
def test_grid_posterior_matches_the_analytic_posterior(sigma, truth):
    # inside the box, truncated at its corner, and 1000x narrower than the box (the grids close in on it)
    lg2 = LinearGaussian(sigma=sigma)
    x_o = lg2.simulate(np.array(truth), rng=3)[0]
    exact = lg2.posterior_samples(x_o, N, seed=1)
    g = grid_posterior(lg2.log_likelihood, lg2.prior, n_samples=N, seed=0, args=(x_o,))
    assert isinstance(g, GridResult) and g.method == "grid" and g.converged and g.reason == ""
    assert c2st_score(g.samples, exact) < 0.56
    sd = exact.std(0)
    assert np.all(np.abs(g.samples.mean(0) - exact.mean(0)) < 0.1 * sd)
    assert np.all(np.abs(g.samples.std(0) / sd - 1) < 0.06)
    assert np.isfinite(lg2.prior.log_prob(g.samples)).all()
    assert g.n_likelihood_calls == 8 + g.n_passes * 100**2 and np.all(g.cells_per_sigma >= 2) and g.edge_mass <= 1e-4
    again = grid_posterior(lg2.log_likelihood, lg2.prior, n_samples=N, seed=0, args=(x_o,))
    np.testing.assert_array_equal(again.samples, g.samples)          # seeded


def test_grid_posterior_says_when_it_does_not_resolve():
    lg2 = LinearGaussian(sigma=0.002)
    x_o = lg2.simulate(np.array([0.3, 1.2]), rng=3)[0]
    g = grid_posterior(lg2.log_likelihood, lg2.prior, n_grid=8, max_passes=1, args=(x_o,))
    assert not g.converged and "cells per posterior sigma" in g.reason


def test_grid_posterior_bad_input(lg, obs):
    x_o = obs[0]
    with pytest.raises(ValueError, match="max_points"):          # 100^5 points: the 5-parameter problem is refused
        grid_posterior(lg.log_likelihood, lg.prior, args=(x_o,))
    lg2 = LinearGaussian()
    with pytest.raises(ValueError, match="n_grid must be"):
        grid_posterior(lg2.log_likelihood, lg2.prior, n_grid=2, args=(lg2.simulate(np.zeros(2), rng=0)[0],))
    with pytest.raises(ValueError, match="-inf at all"):
        grid_posterior(lambda th: np.where(th[:, 0] > 10, 0.0, -np.inf), lg2.prior, max_passes=1)
    with pytest.raises(TypeError, match="NamedPrior"):
        grid_posterior(lg2.log_likelihood, "prior")
