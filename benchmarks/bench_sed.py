"""Study 3 simulator: spectra per second of bagpipes vs the batched `simulate_spectra`, on the same draws in one run.

    python benchmarks/bench_sed.py [--draws 50] [--batch 1000] [--repeats 3] [--posteriors]

1. Agreement on `--draws` prior draws: the median over pixels of |ours/bagpipes - 1| per spectrum
   (worst over the draws) and the worst pixel, in float64 and float32.
2. Time per spectrum: bagpipes `model_galaxy.update` on those draws (after a warm-up; best of
   `--repeats`), `simulate_spectra` on batches of `--batch` prior draws in float64 and float32, with
   torch on 1 thread (one core, like bagpipes) and on all threads; on a GPU when torch sees one.
   Ratios are against bagpipes measured in the same run.
3. With `--posteriors`: NPE posteriors per second (1000 samples each inside the prior, batched,
   `sed.model.sample_npe`) vs emcee posteriors per second (`sed.model.emcee_posterior`), after a small NPE training.
"""
import argparse
import os
import time

import numpy as np

os.environ.setdefault("ASTRO_NB_PROGRESS", "0")
import torch  # noqa: E402

from astro_nb.sed.sim import bagpipes_spectra, sample_prior, simulate_spectra  # noqa: E402


def best_time(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--posteriors", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    theta = sample_prior(a.draws, rng)
    bagpipes_spectra(theta[:2])                                     # build the model, warm up
    t_bp = best_time(lambda: bagpipes_spectra(theta), a.repeats) / a.draws
    ref = bagpipes_spectra(theta)
    print(f"bagpipes          : {1e3 * t_bp:8.2f} ms per spectrum ({1 / t_bp:9.0f} spectra/s), {a.draws} draws")
    for dtype in ("float64", "float32"):
        rel = np.abs(simulate_spectra(theta, dtype=dtype) / ref - 1)
        med = np.median(rel, 1)
        print(f"agreement {dtype}: worst per-spectrum median |rel| {med.max():.2e} (all {a.draws} < "
              f"{'1e-6' if dtype == 'float64' else '1e-5'}: {bool((med < (1e-6 if dtype == 'float64' else 1e-5)).all())}), "
              f"worst pixel {rel.max():.2e}")
    big = sample_prior(a.batch, rng)
    n_threads = torch.get_num_threads()
    rows = []
    for threads in sorted({1, n_threads}):
        torch.set_num_threads(threads)
        for dtype in ("float64", "float32"):
            simulate_spectra(big, dtype=dtype)                       # warm-up (grids, caches)
            t = best_time(lambda: simulate_spectra(big, dtype=dtype), a.repeats) / a.batch
            rows.append((f"cpu x{threads} {dtype}", t))
    torch.set_num_threads(n_threads)
    if torch.cuda.is_available():
        gpu_big = sample_prior(100 * a.batch, rng)
        for dtype in ("float64", "float32"):
            simulate_spectra(gpu_big[:a.batch], device="cuda", dtype=dtype)
            def run():
                simulate_spectra(gpu_big, device="cuda", dtype=dtype); torch.cuda.synchronize()
            t = best_time(run, a.repeats) / len(gpu_big)
            rows.append((f"{torch.cuda.get_device_name(0)} {dtype} (batches of {len(gpu_big)})", t))
    for name, t in rows:
        print(f"simulate_spectra {name:28s}: {1e6 * t:8.1f} us per spectrum ({1 / t:9.0f} spectra/s), "
              f"{t_bp / t:7.0f}x bagpipes (batches of {a.batch} on CPU)")
    if a.posteriors: posteriors(rng)


def posteriors(rng, n_train=5000, n_test=3):
    "NPE vs emcee on the same noisy spectra: posteriors per second."
    from astro_nb.sed.model import emcee_posterior, sample_npe, train_estimators, npe_configs
    from astro_nb.sed.sim import simulate_bank
    torch.set_num_threads(1)                                         # small flows: one thread is as fast
    bank = simulate_bank(n_train, rng)
    cfg = dict(list(npe_configs().items())[:1])                      # the paper's MAF
    t0 = time.perf_counter()
    post = next(iter(train_estimators(bank["theta"], bank["x"], cfg, max_epochs=30).values()))
    t_train = time.perf_counter() - t0
    x = simulate_bank(n_test, rng)["x"]
    t_npe = sample_npe(post, x, 1000).seconds / n_test
    t_mcmc = emcee_posterior(x[0], n_samples=1000, n_burn=1000, n_steps=1000).seconds
    print(f"NPE training {t_train:.0f} s; NPE {1 / t_npe:.1f} posteriors/s; emcee {1 / t_mcmc:.4f} posteriors/s; "
          f"ratio {t_mcmc / t_npe:.0f}")


if __name__ == "__main__":
    main()
