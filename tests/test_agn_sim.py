"Tests of the AGN survey simulator's stated properties (issue 26) against the numbers `nbs/21_agn_sim.ipynb` cites, on seeds the chapter does not use."
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astro_nb.agn import data, sim
from astro_nb.banks import build_bank

DATA = Path(__file__).parent / "data" / "agn_dc"


@pytest.fixture(scope="module")
def out():
    "The parent survey, to the coadd depth (before the labelled-sample selection)."
    return sim.simulate_survey(12_000, np.random.default_rng(13), n_visits=30, labelled_depth=False)


@pytest.fixture(scope="module")
def labelled_out():
    "The labelled sample (the default): each class brighter than its spectroscopic targeting bound."
    return sim.simulate_survey(6_000, np.random.default_rng(17), n_visits=20)


def _delta_r(o):
    return o["psMag_r"] - o["bdMag_r"]


def test_magnitudes_follow_number_counts_to_the_coadd_depth(out):
    for name in sim.CLASSES:
        band, lo, brk, hi, s1, s2 = sim.NUMBER_COUNTS[name]
        assert hi == pytest.approx(sim.M5_COADD[sim.BANDS.index(band)])          # the coadd 5-sigma depth
    m = sim.number_counts_mags(100_000, np.random.default_rng(21), *sim.NUMBER_COUNTS["Gal"][1:])
    h, _ = np.histogram(m, bins=np.arange(21, 24.01, 1.0))
    assert np.mean(np.diff(np.log10(h))) == pytest.approx(0.33, abs=0.03)      # the faint galaxy slope the notebook cites
    gal = out["cls"] == sim.LABELS["Gal"]
    assert np.nanpercentile(out["bdMag_r"][gal], 99) > 24.0                     # galaxies reach the coadd depth


def test_faint_galaxies_look_point_like_bright_ones_do_not(out):
    gal, d, r = out["cls"] == sim.LABELS["Gal"], _delta_r(out), out["psMag_r"]
    faint, bright = gal & (r > 23), gal & (r < 20)
    assert faint.sum() > 300 and bright.sum() > 20
    assert np.mean(d[faint] < sim.EXTENDED_CUT) > 0.3
    assert np.mean(d[bright] < sim.EXTENDED_CUT) < 0.3
    # at high signal-to-noise the size decides: the cut falls at a half-light radius of ~0.32" under the median seeing
    hi_sn = gal & (r < 21.5)
    small, large = hi_sn & (out["r_half"] < 0.2), hi_sn & (out["r_half"] > 0.5)
    assert np.mean(d[small] < sim.EXTENDED_CUT) > 0.7 and np.mean(d[large] > sim.EXTENDED_CUT) > 0.9
    star = (out["cls"] == sim.LABELS["Star"]) & (r < 21)
    assert np.mean(d[star] < sim.EXTENDED_CUT) > 0.97


def test_extended_quasars_at_low_z_and_host_dominated_agn(out):
    q, d, z = out["cls"] == sim.LABELS["Qso"], _delta_r(out), out["z"]
    agn = q & (out["agn"] > 0)
    assert np.mean(agn[q]) == pytest.approx(sim.AGN_FRACTION, abs=0.025)
    assert np.median(out["host_fraction_r"][agn]) > 0.5                        # nucleus 1-10x fainter than the host
    assert (z[agn] < 0.81).all()
    highz = q & (z > 1.5)
    # host-dominated AGN look extended far more often than distant quasars (as often as galaxies of their magnitude)
    assert np.mean(d[agn] > sim.EXTENDED_CUT) > 3 * np.mean(d[highz] > sim.EXTENDED_CUT)
    assert np.mean(d[highz & (out["psMag_r"] < 22)] < sim.EXTENDED_CUT) > 0.9   # luminous distant quasars are point-like
    assert (out["host_fraction_r"][q & (z > sim.HOST_MAX_Z)] == 0).all()


def test_drw_amplitudes_follow_macleod_with_the_stated_scatter(out):
    q = out["cls"] == sim.LABELS["Qso"]
    lam = sim.LAMBDA_EFF[1] / (1 + out["z"][q])
    sf_rel, _ = sim.macleod_drw(lam, out["M_i"][q], out["log_mbh"][q])
    resid = np.log10(out["drw_sf"][q, 1]) - np.log10(sf_rel)
    assert abs(np.median(resid)) < 0.04
    assert np.std(resid) == pytest.approx(sim.MACLEOD_SF_DEX, rel=0.15)


def test_band_correlation_not_fixed():
    rng = np.random.default_rng(17)
    t = np.tile(np.sort(rng.uniform(0, 3000, 80))[None, None, :], (300, 5, 1)) + np.arange(5)[None, :, None] * 1e-3
    z, M_i, mbh = np.full(300, 1.0), np.full(300, -25.0), np.full(300, 8.5)
    dmag, _, _ = sim._quasar_variability(t, z, M_i, mbh, np.random.default_rng(3))
    rho = np.array([np.corrcoef(dmag[j, 1], dmag[j, 2])[0, 1] for j in range(300)])
    assert 0.4 < np.percentile(rho, 5) < np.percentile(rho, 95) <= 1.0
    assert sim.BAND_CORRELATION[0] < np.median(rho) < sim.BAND_CORRELATION[1]
    assert np.percentile(rho, 95) - np.percentile(rho, 5) > 0.1                # spread, not one fixed value
    fixed, _, _ = sim._quasar_variability(t, z, M_i, mbh, np.random.default_rng(3), band_correlation=1.0)
    assert np.allclose(fixed[:, 1] / fixed[:, 1].std(1, keepdims=True), fixed[:, 2] / fixed[:, 2].std(1, keepdims=True))


def test_galaxies_follow_the_seeing_stars_do_not(out):
    r = out["psMag_r"]
    def rms(sel):
        m, e = out["lc_mag"][sel, 2], out["lc_magerr"][sel, 2]
        return np.nanmedian(np.nanstd(m, -1) / np.nanmedian(e, -1))
    gal = (out["cls"] == sim.LABELS["Gal"]) & (r < 21)
    star = (out["cls"] == sim.LABELS["Star"]) & (r < 21) & (out["var_type"] == 0)
    assert rms(gal) > 1.3 * rms(star)
    assert 0.8 < rms(star) < 1.6                                                # constant stars: noise and 1% calibration


def test_variable_star_fractions_and_label_noise(out):
    star = out["cls"] == sim.LABELS["Star"]
    vt = out["var_type"][star]
    n_var = np.sum(vt > 0)
    assert n_var / star.sum() == pytest.approx(sim.VARIABLE_STAR_FRACTION, abs=0.004)    # Sesar et al. 2007
    assert np.sum(vt == sim.VAR_TYPES.index("rrlyrae")) < n_var / 2
    assert np.mean(out["label_cls"] != out["cls"]) == pytest.approx(sim.LABEL_NOISE, abs=0.004)


def test_epoch_counts_and_cadence():
    t, counts = sim.stripe82_cadence(4000, np.random.default_rng(19), n_visits=60)
    assert 55 <= np.median(counts) <= 65
    assert np.mean(counts < 30) > 0.01 and counts.min() >= 3                   # few-epoch objects exist
    year = np.floor((t[:, 2] - sim.SEASON_START_MJD) / 365.25)
    frac_sn = np.mean(year[np.isfinite(year)] >= 7)
    assert frac_sn == pytest.approx(3 * sim.SN_SURVEY_WEIGHT / (7 + 3 * sim.SN_SURVEY_WEIGHT), abs=0.02)
    with pytest.raises(ValueError, match="min_visits"):
        sim.stripe82_cadence(3, np.random.default_rng(0), n_visits=20, min_visits=0)


def test_epoch_errors_follow_the_error_model(out):
    "Constant stars: the median per-epoch error at a magnitude is the Ivezic et al. model at the single-epoch depth."
    star = (out["cls"] == sim.LABELS["Star"]) & (out["var_type"] == 0) & (out["psMag_r"] > 19.5) & (out["psMag_r"] < 20.5)
    e = np.nanmedian(out["lc_magerr"][star, 2])
    assert e == pytest.approx(float(sim.mag_err(20.0, sim.M5_EPOCH[2])), rel=0.25)
    ce = np.nanmedian(out["psMagErr_r"][star])
    assert ce == pytest.approx(float(sim.mag_err(20.0, sim.M5_COADD[2])), rel=0.25)


def test_psf_model_scatter_from_the_sample_rows():
    real = pd.read_csv(DATA / "ObjectTable_sample.csv")
    d = np.concatenate([(real[f"psMag_{b}"] - real[f"bdMag_{b}"]).to_numpy() for b in "griz"])
    assert 1.4826 * np.median(np.abs(d[np.isfinite(d)])) == pytest.approx(sim.PSF_MODEL_SCATTER, abs=0.001)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="lo <= brk"):
        sim.number_counts_mags(3, np.random.default_rng(0), 20, 19, 24, 0.4, 0.3)
    with pytest.raises(ValueError, match="label noise"):
        sim.noisy_labels(np.zeros(3, int), np.random.default_rng(0), -0.1)


def test_tables_carry_agn_labels_and_truth(tmp_path):
    bank = build_bank(sim.simulate_survey, 2000, 1000, tmp_path / "bank", seed=23, params={"n_visits": 20}, show_progress=False)
    paths = sim.write_tables(bank, tmp_path / "tables")
    obj = pd.read_parquet(paths["ObjectTable"])
    truth = pd.read_parquet(paths["Truth"])
    assert "Agn" in set(obj["class"]) and not set(sim.TRUTH_COLUMNS) & set(obj.columns)
    assert set(sim.TRUTH_COLUMNS) <= set(truth.columns)
    written = obj["class"].map(sim.CLASS_MAP).map(sim.LABELS).to_numpy()
    np.testing.assert_array_equal(written, truth["label_cls"].to_numpy())       # the table holds the noisy labels
    assert 0 < np.mean(written != truth["cls"].to_numpy()) < 0.03
    objects, rep = data.load_object_table(paths["ObjectTable"])
    assert rep["merged_into_Qso"]["Agn"] > 0


def test_labelled_sample_is_brighter_than_the_targeting_bound(out, labelled_out):
    # the bounds the notebook cites: quasar programs g <= 22.5 or r <= 22.0; galaxies eBOSS LRG i <= 21.8 or ELG g <= 22.825
    assert sim.LABELLED_DEPTH["Qso"] == (("g", 22.5), ("r", 22.0))
    assert sim.LABELLED_DEPTH["Gal"] == (("i", 21.8), ("g", 22.825))
    frac = np.bincount(labelled_out["cls"], minlength=3) / len(labelled_out["cls"])
    np.testing.assert_allclose(frac, sim.class_fractions(), atol=0.02)               # the class mix is kept
    for k, name in enumerate(sim.CLASSES):
        sel = labelled_out["cls"] == k
        m = np.stack([labelled_out[f"bdMag_{b}"][sel] for b in sim.BANDS], 1)     # measured total magnitudes
        assert np.mean(sim.labelled(m - 0.3, name)) > 0.97, name
        assert np.mean(sim.labelled(np.stack([out[f"bdMag_{b}"][out["cls"] == k] for b in sim.BANDS], 1), name)) < 0.9
    gal = labelled_out["cls"] == sim.LABELS["Gal"]
    assert np.nanpercentile(labelled_out["bdMag_r"][gal], 99) < 23.0                  # far from the coadd depth 24.5


def test_labelled_rejects_bad_magnitudes():
    with pytest.raises(ValueError, match="ugrizy"):
        sim.labelled(np.zeros((3, 5)), "Qso")
    assert not sim.labelled(np.full((1, 6), np.nan), "Gal")[0]                        # no magnitude, no label
