"Study 3 (sed): recovery, reference posteriors and NPE against them, calibration, PPC, amortization, figures."
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from astro_nb import inference as inf  # noqa: E402
from astro_nb.sed import evaluate, model, sim  # noqa: E402
from astro_nb.sed.model import BagpipesFit  # noqa: E402
from astro_nb.sed.sim import PRIOR  # noqa: E402

WIDTH = np.array([0.1, 0.3, 0.2, 0.15, 0.05])


@pytest.fixture(scope="module")
def fake():
    "Calibrated stand-in posteriors: Gaussians of known width around a noisy copy of each truth."
    rng = np.random.default_rng(0)
    truth = sim.sample_prior(40, rng)
    s = truth[:, None, :] + WIDTH * (rng.normal(size=(40, 1, 5)) + rng.normal(size=(40, 2000, 5)))
    return truth, s


@pytest.fixture(scope="module")
def flow():
    bank = sim.simulate_bank(800, np.random.default_rng(0))
    cfg = {"maf (paper)": model.npe_configs()["maf (paper)"]}
    return model.train_estimators(bank["theta"], bank["x"], cfg, max_epochs=3)["maf (paper)"]


def test_recovery_gives_the_papers_sigma(fake):
    truth, s = fake
    rec = evaluate.recovery(s, truth)
    assert list(rec.index) == PRIOR.names
    np.testing.assert_allclose(rec["sigma"], np.sqrt(2) * WIDTH, rtol=0.05)   # d16 = d84 = sigma
    assert (rec["corr"] > 0.9).all()
    # by hand for one parameter: median over observations of sqrt(d16^2 + d84^2)
    p16, p50, p84 = np.percentile(s[..., 0], [16, 50, 84], axis=1)
    assert rec.loc["log_mass", "sigma"] == pytest.approx(np.median(np.hypot(p50 - p16, p84 - p50)))
    assert set(evaluate.SIGMA_KEYS) == set(PRIOR.names) and evaluate.PAPER_SIGMA == {"log_mass": 0.17, "log_z": 0.26}


def test_reference_posteriors_and_npe_vs_reference(flow):
    x = sim.simulate_bank(2, np.random.default_rng(5))["x"]
    refs = evaluate.reference_posteriors(flow, x, n=300, n_proposal=3000, emcee=dict(n_burn=200, n_steps=400))
    assert refs.samples.shape == (2, 300, 5) and len(refs.methods) == 2 and len(refs.is_runs) == 2
    assert all(m == "importance sampling" if r.reliable else m.startswith("emcee") for m, r in zip(refs.methods, refs.is_runs))
    assert list(refs.table().columns) == ["reference", "pareto_k", "is_ess"]
    c = evaluate.npe_vs_reference(model.sample_npe(flow, x, 300).samples, refs)
    assert isinstance(c, inf.PosteriorComparison)
    assert {"n_observations", "c2st_median", "c2st_p90", "c2st_noise_floor", "mean_shift_sigma_median",
            "width_ratio_median"} <= set(c.summary) and c.summary["n_observations"] == 2
    self_c = evaluate.npe_vs_reference(refs.samples, refs)
    assert self_c.summary["mean_shift_sigma_median"] == 0 and self_c.summary["width_ratio_median"] == 1
    with pytest.raises(ValueError, match="2 references"): evaluate.npe_vs_reference(refs.samples[:1], refs)


def test_reference_uses_given_mcmc_when_importance_sampling_fails(flow):
    x = sim.simulate_bank(1, np.random.default_rng(6))["x"]
    given = inf.ReferenceResult(PRIOR.sample(300, seed=0), method="emcee", converged=True)
    refs = evaluate.reference_posteriors(flow, x, n=300, n_proposal=5, mcmc=[given])   # 5 proposals: unreliable
    assert refs.methods == ["emcee"] and refs.samples[0] is not None
    np.testing.assert_array_equal(refs.samples[0], given.samples)


def test_calibration(fake):
    truth, s = fake
    cal = evaluate.calibration(s[:, :1000], truth)
    assert set(cal) == {"coverage", "coverage_max_dev", "sbc", "tarp"}
    assert cal["sbc"]["ranks"].shape == (40, 5) and cal["coverage_max_dev"] < 0.35
    assert -0.3 < cal["tarp"]["atc"] < 0.3
    f1, f2 = evaluate.plot_calibration(cal); plt.close(f1); plt.close(f2)


def test_ppc_and_spectrum_fits(fake):
    truth, s = fake
    s = np.clip(s, PRIOR.low, PRIOR.high)              # the Gaussians reach past the prior's edges
    m = sim.simulate_spectra(truth[0])[0]
    d = sim.add_noise(m, np.random.default_rng(1), 20.0)
    pred, inside = evaluate.posterior_predictive_check(s[0], d, 20.0, n=100, seed=0)
    assert pred.shape == (100, 138) and inside > 0.8
    assert evaluate.residual_rms(d, m) == pytest.approx(1.0, abs=0.2)
    assert evaluate.residual_rms(d, 2 * m) > 5
    fits = evaluate.spectrum_fits(s[0], s[0], d)
    assert set(fits) == {"NPE median", "reference best fit"} and fits["reference best fit"][1] < 1.3
    fig = evaluate.plot_posterior_and_fit({"a": s[0]}, truth[0], d, fits); plt.close(fig)


def test_mcmc_and_amortization_summaries():
    assert evaluate.mcmc_summary([], 10) == dict.fromkeys(["mcmc_converged_fraction", "mcmc_max_autocorr_steps",
                                                           "mcmc_steps_over_autocorr"])
    assert evaluate.amortization_summary([], 1.0, 1.0, 1.0) is None
    run = inf.ReferenceResult(np.zeros((2, 5)), method="emcee", seconds=10.0, converged=False, n_likelihood_calls=1000,
                              tau=np.array([5.0, 8.0, 1, 1, 1]))
    assert evaluate.mcmc_summary([run], 800) == {"mcmc_converged_fraction": 0.0, "mcmc_max_autocorr_steps": 8.0,
                                                 "mcmc_steps_over_autocorr": 100.0}
    am = evaluate.amortization_summary([run, run], 0.01, 50.0, 0.02)
    assert am["speedup"] == pytest.approx(1000) and am["ratio_bagpipes_mcmc"] == pytest.approx(2000)
    assert "ratio_bagpipes_fit" not in am
    fits = [BagpipesFit(np.zeros((2, 5)), s, 20000, 0.0, 400) for s in (100.0, 300.0)]
    am = evaluate.amortization_summary([], 0.01, 50.0, 0.02, fits)      # bagpipes' own fits without emcee
    assert am["ratio_bagpipes_fit"] == pytest.approx(2e4) and am["bagpipes_fit_likelihood_calls"] == 20000
    assert "speedup" not in am


def test_smoke_test_note():
    assert evaluate.smoke_test_note({"fine": False}, 10, 2) == ""
    s = evaluate.smoke_test_note({"spectrum 6 sigma off": True, "ok thing": False, "sigma 1.4 dex": True}, 3000, 20)
    assert "smoke test" in s and "spectrum 6 sigma off; sigma 1.4 dex" in s and "ok thing" not in s and "3000" in s


def test_figures(fake, flow):
    truth, s = fake
    for fig in (evaluate.plot_training({"maf": flow}), evaluate.plot_recovery(s, truth, evaluate.recovery(s, truth))):
        assert len(fig.axes) >= 1; plt.close(fig)


def _comparison(c2st, floor, width_mass, width_z):
    import pandas as pd
    return inf.PosteriorComparison(pd.DataFrame({"c2st": c2st, "c2st_floor": floor, "width_ratio_log_mass": width_mass,
                                                 "width_ratio_log_z": width_z}), {}, [])


def _emcee(calls):
    return inf.ReferenceResult(np.zeros((2, 5)), method="emcee", seconds=100.0, converged=True, n_likelihood_calls=calls)


def test_sed_claims_rows_and_verdicts():
    "Five claim rows: widths, C2ST, coverage and matched-cost amortization; reproduced, not reproduced, inconclusive."
    from astro_nb.claims import ROW_KEYS, check_rows
    rng = np.random.default_rng(1)
    truth = sim.sample_prior(1000, rng)
    w = np.array([0.2, 0.3, 0.2, 0.26, 0.05])
    s = truth[:, None, :] + w * (rng.normal(size=(1000, 1, 5)) + rng.normal(size=(1000, 200, 5)))   # calibrated
    methods = ["importance sampling", "emcee", "emcee (not converged)"]                          # the third left out
    good = evaluate.sed_claims(s, truth, _comparison([0.52, 0.55, 0.99], [0.51, 0.52, 0.53], [1.0, 1.1, 5.0], [0.9, 1.0, 5.0]),
                               methods, [_emcee(10**6), _emcee(1.1 * 10**6)], 0.1, 0.01, n_boot=200)
    check_rows(good)
    assert all(set(r) == set(ROW_KEYS) for r in good)
    assert [r["verdict"] for r in good] == ["reproduced"] * 5
    assert [r["unit"] for r in good] == ["reference spectra"] * 3 + ["test spectra", "emcee fits"]
    assert good[0]["accept"] == list(inf.WIDTH_BAND) and good[2]["accept"] == [None, pytest.approx(0.515 + inf.C2ST_MARGIN)]
    assert good[3]["accept"] == [None, inf.COVERAGE_TOLERANCE] and "p95" in good[3]["rule"]
    assert good[4]["accept"] == [0.9e5, 1.2e5] and good[4]["measured"] == pytest.approx(1.05e5)
    assert "0.17" in good[0]["paper"] and good[0]["n"] == 2        # the paper's sigmas: display, not the region
    # an NPE 2-3x wider than its references and far from them by C2ST, over-confident, and one fit (no interval)
    tight = truth[:, None, :] + w * (rng.normal(size=(1000, 1, 5)) + 0.3 * rng.normal(size=(1000, 200, 5)))
    bad = evaluate.sed_claims(tight, truth, _comparison([0.9, 0.95], [0.51, 0.52], [2.0, 3.0], [2.0, 2.5]),
                              ["importance sampling"] * 2, [_emcee(10**6)], 0.1, 0.01, n_boot=200)
    assert [r["verdict"] for r in bad] == ["not reproduced"] * 4 + ["inconclusive"]
    assert bad[4]["measured"] == pytest.approx(1e5) and np.isnan(bad[4]["low"])
    # 10x too cheap an MCMC: wholly below the paper's range
    cheap = evaluate.sed_claims(s, truth, _comparison([0.52], [0.51], [1.0], [1.0]), ["emcee"], [_emcee(10**5), _emcee(1.2 * 10**5)],
                                0.1, 0.01, n_boot=200)
    assert cheap[4]["verdict"] == "not reproduced"
    # no converged reference, no fit: nothing measured, inconclusive (never reproduced)
    none = evaluate.sed_claims(s[:40], truth[:40], _comparison([0.5], [0.5], [1.0], [1.0]), ["emcee (not converged)"], [], 0.1, 0.01, n_boot=50)
    assert [r["verdict"] for r in none] == ["inconclusive"] * 5 and np.isnan(none[2]["measured"]) and np.isnan(none[4]["measured"])
    with pytest.raises(ValueError, match="reference methods"):
        evaluate.sed_claims(s, truth, _comparison([0.5], [0.5], [1.0], [1.0]), methods, [], 0.1, 0.01)
