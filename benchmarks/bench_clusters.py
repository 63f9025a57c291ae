"""Benchmark of Study 4's forward model (issue 7).

1. Cosmologies per second of `astro_nb.clusters.sim.dndlnm` against colossus `massFunction` on the same
   prior draws in the same run (the ratio is what to compare across machines; issue 14 asks for >= 200x per
   cosmology in batches), and the agreement, through `astro_nb.clusters.evaluate.mass_function_agreement`.
2. Simulations per second of the analytic and halo-catalog simulators, serial and as a Dask bank.

Run: python benchmarks/bench_clusters.py [--n-cosmo 1000] [--n-colossus 40] [--n-sims 4000] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_mass_function(n_cosmo: int, n_colossus: int, seed: int = 0, n_redshifts: int = 3) -> dict:
    """ms per cosmology of `sim.dndlnm` (one batch of `n_cosmo`) and of colossus (the first `n_colossus`, one at a
    time) on 21 masses, through `clusters.evaluate.mass_function_agreement`; the numpy-only sigma table beside them."""
    from astro_nb.clusters import evaluate, sim
    theta = sim.sample_prior(n_cosmo, np.random.default_rng(seed), "5p")
    lm, z = np.linspace(13.5, 15.5, 21), np.linspace(0.0, 1.0, n_redshifts)
    r = evaluate.mass_function_agreement(theta, lm, z, n_colossus)
    t = time.perf_counter(); sim.sigma_tables(*theta.T, use_numba=False); t_numpy = (time.perf_counter() - t) / n_cosmo
    t = time.perf_counter(); sim.dndlnm(lm[:, None], z, *theta.T); t_z = (time.perf_counter() - t) / n_cosmo
    return dict(colossus_ms=r["colossus_ms"], ours_ms=r["ours_ms"], ours_numpy_ms=t_numpy * 1e3, speedup=r["speedup"],
                speedup_numpy=r["colossus_ms"] / (t_numpy * 1e3), ours_all_z_ms=t_z * 1e3, n_redshifts=n_redshifts,
                max_rel_dev=float(r["max_rel_dev"].max()), p95_rel_dev=float(np.quantile(r["max_rel_dev"], 0.95)))


def bench_simulators(n_sims: int, workers: int, seed: int = 0) -> dict:
    "Simulations per second: serial (in-process bank) and a bank on a warm LocalCluster (start-up timed apart)."
    from dask.distributed import Client, LocalCluster
    from astro_nb.banks import build_bank
    from astro_nb.clusters.sim import simulate_analytic, simulate_halos
    out = {}
    t = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    startup = time.perf_counter() - t
    try:
        for name, simulator, n in (("analytic", simulate_analytic, n_sims), ("halos", simulate_halos, max(n_sims // 20, 20))):
            simulator(8, np.random.default_rng(0))
            chunk = max(n // (4 * max(workers, 1)), 1)
            with tempfile.TemporaryDirectory() as d:
                # warm-up: every worker imports the module and compiles (or loads) numba's cache
                build_bank(simulator, n=4 * workers, chunk_size=1, path=Path(d) / "warm", seed=seed, client=client,
                           show_progress=False)
                t = time.perf_counter()
                build_bank(simulator, n=n, chunk_size=chunk, path=Path(d) / "serial", seed=seed, show_progress=False)
                serial = n / (time.perf_counter() - t)
                t = time.perf_counter()
                build_bank(simulator, n=n, chunk_size=chunk, path=Path(d) / "dask", seed=seed, client=client,
                           show_progress=False)
                dask = n / (time.perf_counter() - t)
            out[name] = dict(n=n, serial_per_s=serial, dask_per_s=dask, dask_workers=workers, cluster_startup_s=startup)
    finally:
        client.close(); cluster.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-cosmo", type=int, default=1000)
    ap.add_argument("--n-colossus", type=int, default=40)
    ap.add_argument("--n-sims", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args(argv)
    m = bench_mass_function(a.n_cosmo, a.n_colossus)
    print(f"mass function, {a.n_cosmo} cosmologies in one batch vs colossus on the first {a.n_colossus} of them:")
    print(f"  colossus      {m['colossus_ms']:8.2f} ms/cosmology  ({1e3 / m['colossus_ms']:8.1f} cosmologies/s)")
    print(f"  dndlnm        {m['ours_ms']:8.3f} ms/cosmology  ({1e3 / m['ours_ms']:8.1f} cosmologies/s)  speedup {m['speedup']:.0f}x")
    print(f"  numpy only    {m['ours_numpy_ms']:8.3f} ms/cosmology (sigma table without numba)  speedup {m['speedup_numpy']:.0f}x")
    print(f"  dndlnm at {m['n_redshifts']} redshifts at once {m['ours_all_z_ms']:.3f} ms/cosmology "
          f"(colossus needs one call per redshift: {m['colossus_ms'] * m['n_redshifts'] / m['ours_all_z_ms']:.0f}x); target >= 200x")
    print(f"  agreement: max relative deviation {m['max_rel_dev']:.1e}, 95th percentile {m['p95_rel_dev']:.1e}")
    s = bench_simulators(a.n_sims, a.workers)
    for name, r in s.items():
        print(f"simulator {name:8s} n={r['n']:6d}: serial {r['serial_per_s']:9.1f} sims/s, Dask bank "
              f"({r['dask_workers']} workers, warm) {r['dask_per_s']:9.1f} sims/s, ratio {r['dask_per_s'] / r['serial_per_s']:.2f}"
              f" (cluster start-up {r['cluster_startup_s']:.1f} s not included)")
    return m, s


if __name__ == "__main__":
    main()
