"""Study 4 (clusters): the mass function against colossus, the summaries, the halo-catalog sampler,
the loader's errors and the simulators' shapes and seeding."""
import numpy as np
import pytest

from astro_nb.clusters import data, sim

colossus = pytest.importorskip("colossus")


@pytest.fixture(scope="module")
def draws():
    "Prior draws of the 5-parameter variant (it contains the 2-parameter one)."
    return sim.sample_prior(12, np.random.default_rng(2024), "5p")


def test_dndlnm_matches_colossus_pointwise(draws):
    lm, zs = np.linspace(13.5, 15.5, 21), (0.0, 0.5, 1.0)
    ours = sim.dndlnm(lm[:, None], np.array(zs), *draws.T)              # (12, 21, 3)
    devs = np.array([np.abs(ours[i] / sim.colossus_dndlnm(th, lm, zs) - 1).max() for i, th in enumerate(draws)])
    assert np.quantile(devs, 0.95) < 5e-3 and devs.max() < 2e-2          # the targets
    assert np.median(devs) < 1e-8                                        # what we actually reach


def test_summaries_match_colossus(draws):
    ours = sim.analytic_summaries(draws[:6], "5p")
    ref = sim.analytic_summaries(draws[:6], "5p", mass_function="colossus")
    assert ours.shape == ref.shape == (6, 16)
    assert np.max(np.abs(ours / ref - 1)) < 1e-6
    with pytest.raises(ValueError, match="mass_function"): sim.analytic_summaries(draws[:1], "5p", mass_function="x")


def test_colossus_cosmology_fills_fiducial():
    c = sim.colossus_cosmology([0.3, 0.8])
    assert np.isclose(c.Om0, 0.3) and np.isclose(c.sigma8, 0.8) and np.isclose(c.h, sim.FIDUCIAL["h"])
    assert sim.colossus_dndlnm([0.3, 0.8], [14.0, 15.0], 0.5).shape == (2, 1)


def test_prior_is_one_named_prior():
    from astro_nb.inference import NamedPrior
    assert isinstance(sim.PRIOR, NamedPrior) and sim.PRIOR.names == ["omega_m", "sigma_8"]
    assert sim.PRIOR.units == ["dimensionless", "dimensionless"] and sim.NAMED_PRIORS["2p"] is sim.PRIOR
    np.testing.assert_array_equal(sim.PRIOR.low, [0.1, 0.6]); np.testing.assert_array_equal(sim.PRIOR.high, [0.5, 1.0])
    th = sim.sample_prior(200, np.random.default_rng(0))
    assert np.isfinite(sim.PRIOR.log_prob(th)).all()


def test_summaries_shape_order_and_physics():
    x = sim.analytic_summaries(np.column_stack([[0.2, 0.3, 0.4], np.full(3, 0.8)]))
    assert sim.analytic_summaries([0.3, 0.8]).shape == (16,)
    with pytest.raises(ValueError, match="columns"): sim.analytic_summaries([0.3, 0.8, 0.7])
    assert x.shape == (3, 16) and len(sim.SUMMARY_NAMES) == 16
    counts, logm = x[:, :8], x[:, 8:]
    assert np.all(np.diff(x[:, 0]) > 0)                                  # more matter, more halos
    assert np.all(counts[:, :4] > counts[:, 4:8])                        # fewer halos at z = 0.5
    for j, (lo, hi) in enumerate(zip(sim.LOG10_M_BINS[:-1], sim.LOG10_M_BINS[1:])):
        assert np.all((logm[:, j] > lo) & (logm[:, j] < hi))             # mean mass inside its bin
    # expected counts = V * integral of dn/dlnM over the bin
    lm = np.linspace(14.0, 14.2, 2001)
    n = sim.VOLUME * np.trapezoid(sim.dndlnm(lm, 0.0, 0.3, 0.8), lm * np.log(10))
    assert abs(n / x[1, 0] - 1) < 1e-6


def test_quadrature_numpy_path_equals_numba_path(draws):
    a = sim.sigma_tables(*draws[:4].T)
    b = sim.sigma_tables(*draws[:4].T, use_numba=False)
    np.testing.assert_allclose(a["log10_sigma"], b["log10_sigma"], rtol=0, atol=1e-11)


def test_sigma_tables_shared_along_sigma_8():
    # rows that differ only in sigma_8 (a grid of the 2-parameter posterior) share one quadrature, scaled by sigma_8:
    # the same tables, and the same summaries, as computed one cosmology at a time
    om, s8 = np.array([0.3, 0.3, 0.45, 0.3]), np.array([0.7, 0.9, 0.9, 0.95])
    shared = sim.sigma_tables(om, s8)
    alone = [sim.sigma_tables(om[i:i + 1], s8[i:i + 1]) for i in range(4)]
    for k in ("log10_sigma", "growth", "norm", "nint"):
        np.testing.assert_allclose(shared[k], np.concatenate([a[k] for a in alone]), rtol=1e-12, atol=0)
    grid = np.stack(np.meshgrid([0.25, 0.35], [0.75, 0.85, 0.95], indexing="ij"), -1).reshape(-1, 2)
    one_by_one = np.concatenate([sim.analytic_summaries(g[None]) for g in grid])
    np.testing.assert_allclose(sim.analytic_summaries(grid), one_by_one, rtol=1e-12)


def test_dndlnm_broadcasting_and_errors():
    assert sim.dndlnm(14.0, 0.0, 0.3, 0.8).shape == ()
    assert sim.dndlnm(np.linspace(14, 15, 5), 0.5, np.full((2, 3), 0.3), 0.8).shape == (2, 3, 5)
    assert sim.dndlnm(np.linspace(14, 15, 5)[:, None], np.array([0, 1.0]), [0.3, 0.4], 0.8).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="out of range"): sim.dndlnm(14.0, 0.0, 1.5, 0.8)
    with pytest.raises(ValueError, match="sigma table"): sim.dndlnm(22.0, 0.0, 0.3, 0.8)


def test_halo_catalog_sampler_statistics():
    grid = np.linspace(14.0, 16.0, 501)
    dn = sim.dndlnm(grid, 0.0, np.full(200, 0.3175), 0.834)
    lm, owner, n = sim.sample_halo_catalogs(np.random.default_rng(1), grid, dn)
    expected = sim.analytic_summaries([0.3175, 0.834])[:4]
    # Poisson: mean and variance of the total both equal the expectation
    assert abs(n.mean() / expected.sum() - 1) < 0.01
    assert abs(n.var() / expected.sum() - 1) < 0.3
    # masses follow the mass function: the bin fractions and the mean mass per bin
    frac = np.histogram(lm, bins=sim.LOG10_M_BINS)[0] / len(lm)
    np.testing.assert_allclose(frac, expected / expected.sum(), rtol=0.02)
    x = sim.summaries_from_catalogs(lm, owner, 200)
    np.testing.assert_allclose(x[:, 4:].mean(0), sim.analytic_summaries([0.3175, 0.834])[8:12], atol=2e-3)
    assert np.all((lm >= 14.0) & (lm <= 16.0))


def test_simulators_shapes_and_seeds():
    for variant, dim, nx in (("2p", 2, 16), ("5p", 5, 16), ("richness", 5, 20)):
        a = sim.simulate_analytic(3, np.random.default_rng(5), variant)
        assert a["theta"].shape == (3, dim) and a["x"].shape == (3, nx) and a["x"].dtype == np.float32
        b = sim.simulate_analytic(3, np.random.default_rng(5), variant)
        np.testing.assert_array_equal(a["x"], b["x"])
    h1 = sim.simulate_halos(2, np.random.default_rng(7))
    h2 = sim.simulate_halos(2, np.random.default_rng(7))
    np.testing.assert_array_equal(h1["x"], h2["x"])
    assert not np.array_equal(h1["x"], sim.simulate_halos(2, np.random.default_rng(8))["x"])
    lo = np.array([p[1] for p in sim.PRIOR_5P]); hi = np.array([p[2] for p in sim.PRIOR_5P])
    th = sim.sample_prior(500, np.random.default_rng(0), "5p")
    assert np.all((th >= lo) & (th <= hi))
    with pytest.raises(ValueError, match="variant"): sim.sample_prior(2, np.random.default_rng(0), "3p")


def test_noise_has_the_given_covariance():
    cov = np.diag(np.arange(1, 17, dtype=float))
    x = sim.simulate_analytic(4000, np.random.default_rng(0), covariance=cov.tolist())
    mu = sim.analytic_summaries(x["theta"].astype(float))
    np.testing.assert_allclose(np.var(x["x"] - mu, axis=0), np.diag(cov), rtol=0.1)


def test_bank_of_analytic_simulator(tmp_path):
    from astro_nb.banks import build_bank
    b = build_bank(sim.simulate_analytic, n=40, chunk_size=16, path=tmp_path / "b", seed=3, show_progress=False)
    arr = b.arrays()
    assert arr["theta"].shape == (40, 2) and arr["x"].shape == (40, 16)


# ---- the loader ----------------------------------------------------------------------------------

THETA = np.array([[0.3175, 0.834, 0.6711, 0.049, 0.9624], [0.3, 0.8, 0.7, 0.045, 0.96]])


def _catalogs(seed=0):
    cosmo, lm, owner, z = data.mock_catalogs(np.random.default_rng(seed), THETA, lo=13.6, mass_unit="log10 Msun/h", n_grid=601)
    return cosmo, lm, owner, z


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_loader_round_trip(tmp_path, suffix):
    cosmo, lm, owner, z = _catalogs()
    p = data.save_halo_catalogs(tmp_path / f"c{suffix}", cosmo, 10**lm, owner, z)
    cats = data.load_halo_catalogs(p)
    np.testing.assert_allclose(cats.log10_m, lm, rtol=0, atol=1e-12)
    theta, x = data.catalog_file_summaries(p)
    np.testing.assert_array_equal(theta, THETA)
    sel = z == 0.0
    np.testing.assert_array_equal(x, np.concatenate([
        sim.summaries_from_catalogs(lm[sel], owner[sel], 2)[:, :4], sim.summaries_from_catalogs(lm[~sel], owner[~sel], 2)[:, :4],
        sim.summaries_from_catalogs(lm[sel], owner[sel], 2)[:, 4:], sim.summaries_from_catalogs(lm[~sel], owner[~sel], 2)[:, 4:]], 1))


def test_loader_missing_cosmology_column(tmp_path):
    cosmo, lm, owner, z = _catalogs()
    del cosmo["omega_m"]
    p = data.save_halo_catalogs(tmp_path / "c.h5", cosmo, 10**lm, owner, z)
    with pytest.raises(KeyError, match="omega_m"): data.load_halo_catalogs(p)


def test_loader_negative_masses(tmp_path):
    cosmo, lm, owner, z = _catalogs()
    m = 10**lm; m[3] = -2e14
    p = data.save_halo_catalogs(tmp_path / "c.npz", cosmo, m, owner, z)
    with pytest.raises(ValueError, match="negative"): data.load_halo_catalogs(p)


def test_loader_mass_unit_mismatch(tmp_path):
    cosmo, lm, owner, z = _catalogs()
    h = THETA[owner, 2]
    p = data.save_halo_catalogs(tmp_path / "msun.npz", cosmo, 10**lm / h, owner, z, mass_unit="Msun/h")
    with pytest.raises(ValueError, match="mass_unit='Msun'"): data.load_halo_catalogs(p)
    p = data.save_halo_catalogs(tmp_path / "msun_ok.npz", cosmo, 10**lm / h, owner, z, mass_unit="Msun")
    np.testing.assert_allclose(data.load_halo_catalogs(p).log10_m, lm, atol=1e-12)
    p = data.save_halo_catalogs(tmp_path / "e10.npz", cosmo, 10**(lm - 10), owner, z, mass_unit="Msun/h")
    with pytest.raises(ValueError, match="1e10 Msun/h"): data.load_halo_catalogs(p)
    p = data.save_halo_catalogs(tmp_path / "log.npz", cosmo, lm, owner, z, mass_unit="Msun/h")
    with pytest.raises(ValueError, match="log10"): data.load_halo_catalogs(p)
    p = data.save_halo_catalogs(tmp_path / "unit.npz", cosmo, 10**lm, owner, z, mass_unit="kg")
    with pytest.raises(ValueError, match="mass_unit"): data.load_halo_catalogs(p)


def test_loader_other_bad_inputs(tmp_path):
    cosmo, lm, owner, z = _catalogs()
    with pytest.raises(FileNotFoundError): data.load_halo_catalogs(tmp_path / "nope.h5")
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(ValueError, match="format"): data.load_halo_catalogs(tmp_path / "c.txt")
    p = data.save_halo_catalogs(tmp_path / "r.npz", cosmo, 10**lm, owner + 5, z)
    with pytest.raises(ValueError, match="realisation"): data.load_halo_catalogs(p)
    p = data.save_halo_catalogs(tmp_path / "z.npz", cosmo, 10**lm, owner, np.zeros_like(z))
    with pytest.raises(ValueError, match="z = 0.5"): data.catalog_file_summaries(data.load_halo_catalogs(p, check_abundance=False))
    p = data.save_halo_catalogs(tmp_path / "v.npz", cosmo, 10**lm, owner, z, volume=1e6)
    with pytest.raises(ValueError, match="volume"): data.catalog_file_summaries(data.load_halo_catalogs(p, check_abundance=False))
