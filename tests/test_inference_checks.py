"""Tests of the comparison and calibration checks (astro_nb.inference.checks) on toy posteriors built from the exact
posterior of the linear-Gaussian problem: no network is trained here.

The calibration trio, on 200 held-out observations drawn from the prior, 500 samples each:
- exact: exact posterior samples, calibrated by construction;
- biased: the exact samples shifted by +1 posterior sigma in each parameter;
- over-confident: the exact samples shrunk toward their mean by 2x.
The exact one must pass coverage, SBC and TARP, the other two must fail all three. Thresholds (fixed, seeded):
- coverage: `coverage_report` verdict, max_dev <= the 95th percentile of the noise floor (200 obs, 2 parameters:
  about 0.095); over 30 seeds the exact one scored 0.3-1.2x that floor, the biased one >= 2.1x, the over-confident one >= 3.3x;
- SBC: every KS p-value of the ranks > 1e-3 (exact over 30 seeds: >= 1e-3; biased <= 1e-27, over-confident <= 3e-6);
- TARP, references drawn from the posteriors: |ATC| < 0.04 and the KS p-value of the coverage values > 1e-3
  (exact over 30 seeds: |ATC| <= 0.027, p >= 0.01; biased: ATC <= -0.054, p <= 3e-4; over-confident: ATC <= -0.13, p <= 2e-17).
"""
import numpy as np
import pandas as pd
import pytest
import torch

from astro_nb.inference import (LinearGaussian, PosteriorComparison, compare_posteriors, coverage, coverage_max_dev,
                                coverage_noise_floor, coverage_report, sbc_check, sbc_ranks, tarp_samples)

torch.set_num_threads(1)

COVERAGE_QUANTILE, SBC_KS_MIN, TARP_ATC_MAX, TARP_KS_MIN = 0.95, 1e-3, 0.04, 1e-3


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


@pytest.fixture(scope="module")
def held_out(lg):
    "200 truths drawn from the prior (calibration needs them so), their data, and 500 exact posterior samples each."
    theta = lg.prior.sample(200, seed=31)
    x = lg.simulate(theta, rng=32)
    exact = np.stack([lg.posterior_samples(xi, 500, seed=1000 + i) for i, xi in enumerate(x)])
    return theta, exact


def _toy(kind, exact):
    m, sd = exact.mean(1, keepdims=True), exact.std(1, keepdims=True)
    return {"exact": exact, "biased": exact + sd, "overconfident": m + 0.5 * (exact - m)}[kind]


def _verdicts(samples, theta, names):
    cov = coverage_report(samples, theta, names=names, quantile=COVERAGE_QUANTILE)
    sbc = sbc_check(samples, theta)
    tp = tarp_samples(samples, theta, references="posterior")
    values = {"coverage_max_dev": cov["max_dev"], "floor_p95": cov["noise_floor_p95"],
              "sbc_ks_min": float(sbc["ks_pvals"].min()), "tarp_atc": tp["atc"], "tarp_ks_uniform": tp["ks_pval_uniform"]}
    passed = {"coverage": cov["verdict"] == "calibrated", "sbc": values["sbc_ks_min"] > SBC_KS_MIN,
              "tarp": abs(tp["atc"]) < TARP_ATC_MAX and tp["ks_pval_uniform"] > TARP_KS_MIN}
    return passed, values


# ---------------------------------------------------------------- calibration cannot mislead

@pytest.mark.parametrize("kind, expected", [("exact", True), ("biased", False), ("overconfident", False)])
def test_calibration_trio(lg, held_out, kind, expected):
    theta, exact = held_out
    passed, values = _verdicts(_toy(kind, exact), theta, lg.prior.names)
    assert passed == {"coverage": expected, "sbc": expected, "tarp": expected}, (kind, values)


def test_tarp_default_references_are_weak_on_a_bias(held_out):
    "sbi's default references (uniform over the truths' box) barely see a +1 sigma bias: why the trio uses 'posterior'."
    theta, exact = held_out
    box, post = tarp_samples(_toy("biased", exact), theta), tarp_samples(_toy("biased", exact), theta, references="posterior")
    assert abs(box["atc"]) < abs(post["atc"])
    assert box["ks_pval"] > 0.5   # sbi's KS between the ecp and alpha grids does not reject even this


# ---------------------------------------------------------------- TARP: z-scoring and sbi's core

def test_tarp_z_score_rescales_samples_truths_and_references(held_out):
    theta, exact = held_out
    s = exact[:100]; t = theta[:100]
    ref = np.random.default_rng(0).uniform(-3, 3, size=t.shape)
    a, b = np.array([50.0, 0.02]), np.array([3.0, -1.0])
    r1 = tarp_samples(s, t, references=ref)
    r2 = tarp_samples(s * a + b, t * a + b, references=ref * a + b)
    np.testing.assert_allclose(r1["coverage_values"], r2["coverage_values"], atol=5e-3)
    np.testing.assert_allclose(r1["ecp"], r2["ecp"], atol=0.02)
    # not vacuous: without z-scoring the rescaling changes the result, and so would forgetting the references
    r3 = tarp_samples(s * a + b, t * a + b, references=ref * a + b, z_score=False)
    assert np.abs(r3["coverage_values"] - r1["coverage_values"]).max() > 0.1
    r4 = tarp_samples(s * a + b, t * a + b, references=ref, z_score=True)   # references left in the raw scale
    assert np.abs(r4["coverage_values"] - r1["coverage_values"]).max() > 0.1


def test_tarp_samples_is_sbis_core(held_out):
    "The same ecp as sbi's `_run_tarp` (sbi >= 0.26.1 z-scores the references as well: issue 1832)."
    from sbi.diagnostics.tarp import _run_tarp
    theta, exact = held_out
    ref = np.random.default_rng(1).uniform(-3, 3, size=theta.shape)
    ours = tarp_samples(exact, theta, references=ref, z_score=True)
    ecp, alpha = _run_tarp(torch.as_tensor(exact).transpose(0, 1), torch.as_tensor(theta), torch.as_tensor(ref),
                           z_score_theta=True)
    np.testing.assert_allclose(ours["ecp"], ecp.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours["alpha"], alpha.numpy(), atol=1e-6)


def test_tarp_samples_bad_input(held_out):
    theta, exact = held_out
    with pytest.raises(ValueError, match="truths"): tarp_samples(exact, theta[:10])
    with pytest.raises(ValueError, match="references"): tarp_samples(exact, theta, references="prior")
    with pytest.raises(ValueError, match="references"): tarp_samples(exact, theta, references=theta[:5])
    bad = exact[:20].copy(); bad[3, 7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"): tarp_samples(bad, theta[:20])


# ---------------------------------------------------------------- SBC on samples

def test_sbc_check_with_prior_samples(lg, held_out):
    theta, exact = held_out
    out = sbc_check(exact, theta, prior_samples=lg.prior.sample(200, seed=5))
    np.testing.assert_array_equal(out["ranks"], sbc_ranks(exact, theta))
    assert out["n_samples"] == 500 and out["ks_pvals"].shape == (2,)
    assert (out["c2st_dap"] < 0.6).all()   # c2st_ranks is shown, not asserted: on 200 ranks it scored up to 0.60 here
    with pytest.raises(ValueError, match="prior_samples"): sbc_check(exact, theta, prior_samples=np.zeros((10, 2)))


# ---------------------------------------------------------------- coverage noise floor

def test_coverage_noise_floor_is_not_zero():
    f = coverage_noise_floor(200, dim=2)
    assert set(f) == {"median", "p95"}
    assert 0.03 < f["median"] < 0.08 and f["median"] < f["p95"] < 0.12
    f4 = coverage_noise_floor(800, dim=2)
    assert f4["median"] < 0.7 * f["median"]   # ~ 1/sqrt(n_obs)
    assert set(coverage_noise_floor(50, quantile=0.99)) == {"median", "p99"}
    with pytest.raises(ValueError, match=">= 1"): coverage_noise_floor(0)
    with pytest.raises(ValueError, match="quantile"): coverage_noise_floor(10, quantile=95)


def test_coverage_noise_floor_matches_exact_posteriors(lg):
    "The floor is what exact posteriors score: the median over 40 seeded sets of 100 observations is near its median."
    floor = coverage_noise_floor(100, dim=2, n_samples=200)
    devs = []
    for k in range(40):
        theta = lg.prior.sample(100, seed=300 + k)
        x = lg.simulate(theta, rng=400 + k)
        s = np.stack([lg.posterior_samples(xi, 200, seed=10_000 * k + i) for i, xi in enumerate(x)])
        devs.append(coverage_max_dev(coverage(s, theta)))
    assert abs(np.median(devs) - floor["median"]) < 0.02
    assert np.mean(np.array(devs) > floor["p95"]) < 0.2


def test_coverage_report(held_out):
    theta, exact = held_out
    rep = coverage_report(exact, theta, names=["a", "b"])
    assert set(rep) == {"max_dev", "max_dev_a", "max_dev_b", "n_obs", "noise_floor_median", "noise_floor_p95", "verdict"}
    assert rep["max_dev"] == max(rep["max_dev_a"], rep["max_dev_b"]) and rep["n_obs"] == 200
    with pytest.raises(ValueError, match="truths"): coverage_report(exact[:5], theta)


# ---------------------------------------------------------------- NPE against a reference over many observations

@pytest.fixture(scope="module")
def small(held_out):
    "3 observations: a 'NPE' that is an independent exact sample, and a reference; 250 samples each."
    theta, exact = held_out
    return exact[:3, :250], exact[:3, 250:]


def test_compare_posteriors_same_posterior(small):
    npe, ref = small
    c = compare_posteriors(npe, ref, names=["a", "b"])
    assert isinstance(c, PosteriorComparison)
    assert list(c.summary)[:6] == ["n_observations", "c2st_median", "c2st_p90", "c2st_noise_floor",
                                   "mean_shift_sigma_median", "width_ratio_median"]
    assert list(c.table.columns) == ["c2st", "c2st_floor", "shift_sigma_a", "shift_sigma_b", "width_ratio_a", "width_ratio_b"]
    assert c.summary["n_observations"] == 3 and len(c.table) == 3
    assert abs(c.summary["c2st_median"] - 0.5) < 0.08 and abs(c.summary["c2st_noise_floor"] - 0.5) < 0.1
    assert c.summary["mean_shift_sigma_median"] < 0.2 and abs(c.summary["width_ratio_median"] - 1) < 0.15
    fig = c.plot()
    assert len(fig.axes) == 3


def test_compare_posteriors_detects_bias_and_width(small):
    npe, ref = small
    m = npe.mean(1, keepdims=True)
    shifted = compare_posteriors([s + s.std(0) for s in npe], list(ref))
    assert abs(shifted.summary["mean_shift_sigma_median"] - 1) < 0.15 and shifted.summary["c2st_median"] > 0.65
    narrow = compare_posteriors([s[:150] for s in m + 0.5 * (npe - m)], ref)   # lists of another length are fine
    assert abs(narrow.summary["width_ratio_median"] - 0.5) < 0.08
    assert narrow.summary["c2st_median"] > narrow.summary["c2st_noise_floor"] + 0.1


def test_compare_posteriors_bad_input(small):
    npe, ref = small
    with pytest.raises(ValueError, match="observations"): compare_posteriors(npe[:2], ref)
    with pytest.raises(ValueError, match="parameters"): compare_posteriors(npe[:, :, :1], ref)
    with pytest.raises(ValueError, match="names"): compare_posteriors(npe, ref, names=["a"])
    with pytest.raises(ValueError, match="at least"): compare_posteriors(npe, ref[:, :15])
    with pytest.raises(ValueError, match=r"\(n_obs, n, dim\)"): compare_posteriors(npe[0], ref[0])
    bad = ref.copy(); bad[2, 4, 1] = np.inf
    with pytest.raises(ValueError, match=r"ref_samples\[2\] contains NaN"): compare_posteriors(npe, bad)
    flat = ref.copy(); flat[1, :, 0] = 1.0
    with pytest.raises(ValueError, match="zero spread"): compare_posteriors(npe, flat)


def test_two_sigma_region_and_claim_settings():
    from scipy.stats import norm
    from astro_nb.inference import C2ST_MARGIN, COVERAGE_TOLERANCE, WIDTH_BAND, two_sigma_region
    assert (WIDTH_BAND, COVERAGE_TOLERANCE, C2ST_MARGIN) == ((0.8, 1.25), 0.1, 0.05)
    lo, hi = two_sigma_region(1)
    assert lo == pytest.approx(2 * norm.cdf(1.6) - 1, abs=1e-3) and hi == pytest.approx(2 * norm.cdf(2.5) - 1, abs=1e-3)
    lo2, hi2 = two_sigma_region(2)
    assert lo2 < lo < 0.9545 < hi < hi2 < 1
    assert two_sigma_region(3, (1.0, 1.0)) == pytest.approx((0.9545, 0.9545))
    with pytest.raises(ValueError, match="bad"): two_sigma_region(0)
    with pytest.raises(ValueError, match="bad"): two_sigma_region(1, (1.1, 1.2))
    # the coverage tolerance is what the band's edges do to a 68.3% interval
    assert [abs(2 * norm.cdf(s) - 1 - 0.6827) for s in WIDTH_BAND] == pytest.approx([COVERAGE_TOLERANCE] * 2, abs=0.01)


def test_training_summary_and_table(lg):
    import warnings
    from astro_nb.inference import train_npe
    from astro_nb.inference import stopped_at_cap, training_summary, training_table
    theta = lg.prior.sample(500, seed=0); x = lg.simulate(theta, rng=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        short = train_npe(theta, x, lg.prior, estimator="mdn", hidden_features=10, num_components=1, max_epochs=2,
                          show_progress=False)
        done = train_npe(theta, x, lg.prior, estimator="mdn", hidden_features=10, num_components=1, max_epochs=200,
                         learning_rate=5e-2, stop_after_epochs=2, show_progress=False)
    assert stopped_at_cap(short) and not stopped_at_cap(done)
    assert "stopped at max_epochs = 2" in training_summary(short) and "converged" in training_summary(done)
    t = training_table({"short": short, "done": done})
    assert t["stopped_at_cap"].tolist() == [True, False] and t.loc["short", "epochs"] == 2
