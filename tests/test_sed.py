"Study 3 (sed): the batched simulator against bagpipes, the bank simulator, the survey-spectrum loader."
import warnings

import numpy as np
import pytest

from astro_nb.sed import sim
from astro_nb.sed.sim import (PRIOR_HIGH, PRIOR_LOW, SPEC_WAVS, add_noise, bagpipes_spectra, normalise_spectra,
                              sample_prior, simulate_bank, simulate_spectra, spectres_matrix)


@pytest.fixture(scope="module")
def draws():
    "15 prior draws plus the corners a shortcut would miss, with bagpipes' spectra."
    th = sample_prior(15, np.random.default_rng(42))
    edge = np.array([[8.0, 0.0101, -1.0, -2.0, 0.1], [13.0, 4.0, 1.0, 0.2, 1.0], [10.0, 0.02, 1.0, -1.7, 0.0],
                     [11.0, 3.0, -1.0, -2.6, 3.0], [12.0, 1.5, 0.0, 0.9, 0.5]])
    th = np.concatenate([th, edge])
    return th, bagpipes_spectra(th)


def test_simulate_spectra_matches_bagpipes_float64(draws):
    th, ref = draws
    rel = np.abs(simulate_spectra(th) / ref - 1)
    assert (np.median(rel, 1) < 1e-6).all(), np.median(rel, 1).max()
    assert rel.max() < 1e-9                        # in fact ~1e-14: the same arithmetic up to rounding


def test_simulate_spectra_matches_bagpipes_float32(draws):
    th, ref = draws
    out = simulate_spectra(th, dtype="float32")
    assert out.dtype == np.float64 and np.isfinite(out).all()   # 1e13 Msun gives 1e44: no float32 overflow
    rel = np.abs(out / ref - 1)
    assert (np.median(rel, 1) < 1e-5).all(), np.median(rel, 1).max()


def test_simulate_spectra_batching_and_torch(draws):
    import torch
    th, _ = draws
    a = simulate_spectra(th)
    np.testing.assert_allclose(simulate_spectra(th, batch_size=3), a, rtol=1e-12)
    np.testing.assert_allclose(simulate_spectra(th[4]), a[4:5], rtol=1e-12)   # one (5,) vector
    t = simulate_spectra(torch.as_tensor(th))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), a, rtol=1e-12)


def test_mass_is_exactly_linear():
    th = sample_prior(3, np.random.default_rng(1))
    th2 = th.copy(); th2[:, 0] += 1.0
    np.testing.assert_allclose(simulate_spectra(th2), 10 * simulate_spectra(th), rtol=1e-12)


@pytest.mark.parametrize("bad, msg", [(np.zeros((2, 4)), "shape"), ([10, 0.0005, 0, 0, 0.5], "age_gyr"),
                                      ([10, 13.6, 0, 0, 0.5], "age_gyr"), ([10, 1, 0, 0, -0.1], "av must lie"),
                                      ([10, 1, 0, 0, 3.5], "av must lie"), ([[10, 1, np.inf, 0, 0.5]], "non-finite"),
                                      (np.zeros((0, 5)), "empty")])
def test_bad_theta(bad, msg):
    with pytest.raises(ValueError, match=msg): simulate_spectra(bad)
    with pytest.raises(ValueError, match=msg): bagpipes_spectra(bad)


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype"): simulate_spectra([10, 1, 0, 0, 0.5], dtype="float16")


def test_spectres_matrix_matches_spectres():
    import spectres
    rng = np.random.default_rng(0)
    old = np.sort(rng.uniform(2000, 12000, 900))
    f = rng.normal(size=(3, 900))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = np.stack([spectres.spectres(SPEC_WAVS, old, fi, fill=0, verbose=False) for fi in f])
    np.testing.assert_allclose(f @ spectres_matrix(SPEC_WAVS, old).T, want, rtol=1e-12, atol=1e-14)


def test_chebyshev_dust_expansion_is_exact():
    g = sim.sed_grids()
    lo, hi = g.window
    av = np.linspace(0, sim.AV_MAX, 23)
    a = sim._chebyshev_coefficients(g.kappa[lo:hi], sim.AV_MAX, 64, 1e-13)
    approx = np.polynomial.chebyshev.chebval(2 * av / sim.AV_MAX - 1, a)
    np.testing.assert_allclose(approx, np.exp(-np.outer(g.kappa[lo:hi], av)), atol=1e-12)


def test_noise_and_normalisation():
    th = sample_prior(200, np.random.default_rng(3))
    f = simulate_spectra(th)
    r = add_noise(f, np.random.default_rng(4), snr=20.0) / f - 1
    assert abs(r.std() - 0.05) < 0.002 and abs(r.mean()) < 0.002
    x = normalise_spectra(f)
    assert x.shape == (200, 139)
    np.testing.assert_allclose(x[:, :138].mean(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(10 ** x[:, 138:] * x[:, :138], f, rtol=1e-12)
    with pytest.raises(ValueError, match="snr"): add_noise(f, np.random.default_rng(0), snr=-1)
    with pytest.raises(ValueError, match="non-finite"): normalise_spectra(np.full((1, 138), np.nan))


def test_bank_simulator(tmp_path):
    from astro_nb.banks import build_bank
    out = simulate_bank(7, np.random.default_rng(0))
    assert out["theta"].shape == (7, 5) and out["x"].shape == (7, 139)
    assert out["theta"].dtype == np.float32 and out["x"].dtype == np.float32
    assert ((out["theta"] >= PRIOR_LOW.astype(np.float32)) & (out["theta"] <= PRIOR_HIGH.astype(np.float32))).all()
    np.testing.assert_array_equal(simulate_bank(7, np.random.default_rng(0))["x"], out["x"])
    bank = build_bank(simulate_bank, n=25, chunk_size=10, path=tmp_path / "b", seed=3, params={"snr": 10.0},
                      show_progress=False)
    arr = bank.arrays()
    assert arr["x"].shape == (25, 139) and np.isfinite(arr["x"]).all()


# ---- the survey-spectrum loader -------------------------------------------------------------------
from astro_nb.sed.data import (load_sdss_spectrum, load_survey_spectrum, luminosity_distance_cm,  # noqa: E402
                               read_sdss_spectrum, resample_masked, write_sdss_like)


def _sdss_arrays(z=0.08, L=2e40, lo=3200.0, hi=11000.0):
    "A rest-frame-flat spectrum on SDSS-like log-lambda pixels (wider than BOSS, to cover the model range), in SDSS's flux units."
    loglam = np.arange(np.log10(lo), np.log10(hi), 1e-4)
    f = np.full(len(loglam), L / (4 * np.pi * luminosity_distance_cm(z) ** 2 * (1 + z) * 1e-17))
    return loglam, f, np.full(len(loglam), 1 / (0.05 * f[0]) ** 2), z


def test_sdss_file_round_trip(tmp_path):
    loglam, f, iv, z = _sdss_arrays()
    path = write_sdss_like(tmp_path / "spec-1234-56789-0001.fits", loglam, f, iv, z)
    arr = read_sdss_spectrum(path)
    assert set(arr) == {"loglam", "flux", "ivar", "z"} and abs(arr["z"] - z) < 1e-6
    spec = load_sdss_spectrum(path)
    assert spec.complete
    np.testing.assert_allclose(spec.flux, 2e40, rtol=1e-5)          # float32 file
    x = spec.network_input()
    assert x.shape == (1, 139)
    np.testing.assert_allclose(x[0, 138], np.log10(2e40), atol=1e-6)
    # ivar per model pixel: 5% per fine pixel, averaged over 50 A / (rest pixel width lambda ln10 1e-4) pixels
    rel_err = 1 / np.sqrt(spec.ivar) / spec.flux
    np.testing.assert_allclose(rel_err, 0.05 / np.sqrt(50 / (SPEC_WAVS * np.log(10) * 1e-4)), rtol=0.05)


def test_masked_pixels_are_ignored(tmp_path):
    loglam, f, iv, z = _sdss_arrays()
    f2, iv2 = f.copy(), iv.copy()
    f2[3000:3005] = 1e9; iv2[3000:3005] = 0                          # junk flux on bad pixels
    a = load_survey_spectrum(flux=f, ivar=iv, z=z, loglam=loglam)
    b = load_survey_spectrum(flux=f2, ivar=iv2, z=z, loglam=loglam)
    np.testing.assert_allclose(b.flux, a.flux, rtol=1e-10)
    assert (b.ivar <= a.ivar).all() and (b.ivar < a.ivar).any()


def test_partial_coverage_is_masked():
    loglam, f, iv, z = _sdss_arrays(lo=3900.0, hi=9000.0)           # rest 3611-8333 A: both ends missing
    spec = load_survey_spectrum(flux=f, ivar=iv, z=z, loglam=loglam)
    assert not spec.complete and spec.mask.sum() < 138 and spec.mask[40:100].all()
    assert np.isnan(spec.flux[~spec.mask]).all() and (spec.ivar[~spec.mask] == 0).all()
    with pytest.raises(ValueError, match="no data"): spec.network_input()


def test_resample_masked_constant():
    w = np.linspace(2800, 10500, 3000)
    f, iv, cov = resample_masked(SPEC_WAVS, w, np.full(3000, 7.0), np.ones(3000))
    np.testing.assert_allclose(f, 7.0, rtol=1e-12); np.testing.assert_allclose(cov, 1.0, rtol=1e-12)


@pytest.mark.parametrize("kw, msg", [
    (dict(wave=np.r_[np.linspace(4000, 6000, 50), np.linspace(5990, 9000, 50)]), "not strictly increasing"),
    (dict(wave=np.linspace(12000, 20000, 100)), "no overlap"),
    (dict(wave=np.linspace(500, 2900, 100)), "no overlap"),
    (dict(wave=np.linspace(4000, 9000, 100), ivar=np.zeros(100)), "all inverse variances are zero"),
    (dict(wave=np.linspace(4000, 9000, 100), flux=np.r_[np.ones(50), np.nan, np.ones(49)]), "NaN"),
    (dict(wave=np.linspace(4000, 9000, 100), ivar=-np.ones(100)), "ivar must be finite and >= 0"),
    (dict(wave=np.linspace(3.6, 3.95, 100)), "loglam"),
    (dict(), "exactly one"),
    (dict(wave=np.linspace(4000, 9000, 99)), "one length"),
    (dict(wave=np.linspace(4000, 9000, 100), z=0.0), "redshift"),
])
def test_loader_errors(kw, msg):
    args = dict(flux=np.ones(100), ivar=np.ones(100), z=0.1)
    args.update(kw)
    with pytest.raises(ValueError, match=msg): load_survey_spectrum(**args)


def test_bad_files(tmp_path):
    from astropy.io import fits
    with pytest.raises(FileNotFoundError, match="no spectrum file"): read_sdss_spectrum(tmp_path / "missing.fits")
    (tmp_path / "junk.fits").write_text("not a fits file")
    with pytest.raises(ValueError, match="not a readable FITS"): read_sdss_spectrum(tmp_path / "junk.fits")
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "empty.fits")
    with pytest.raises(ValueError, match="no COADD"): read_sdss_spectrum(tmp_path / "empty.fits")
    loglam, f, iv, z = _sdss_arrays()
    loglam[10], loglam[11] = loglam[11], loglam[10]                  # unsorted pixels in a real-format file
    write_sdss_like(tmp_path / "spec-unsorted.fits", loglam, f, iv, z)
    with pytest.raises(ValueError, match="not strictly increasing"): load_sdss_spectrum(tmp_path / "spec-unsorted.fits")
