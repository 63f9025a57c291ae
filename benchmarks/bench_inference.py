"""NPE posteriors per second against emcee posteriors per second, measured in the same run.

The problem is the linear-Gaussian model of `astro_nb.inference` (known posterior), so each method's
samples are also checked against the exact posterior (C2ST) and the speeds compare posteriors of the
same quality and the same number of samples. A warm-up training and a warm-up MCMC run come first:
the first training in a fresh process is several times slower than the next.

    python benchmarks/bench_inference.py                      # quick: ~1 minute on a 2-core CPU
    python benchmarks/bench_inference.py --n-obs 2000 --n-mcmc 10 --json bench.json
"""
import argparse
import json
import os
import time
import warnings

import numpy as np
import torch

from astro_nb.core import get_device, to_builtin
from astro_nb.inference import LinearGaussian, amortization, c2st_score, run_emcee, train_npe


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=4000, help="simulations to train NPE on")
    ap.add_argument("--n-obs", type=int, default=500, help="observations whose NPE posteriors are timed")
    ap.add_argument("--n-mcmc", type=int, default=5, help="observations whose emcee posteriors are timed")
    ap.add_argument("--n-samples", type=int, default=1000, help="samples per posterior, both methods")
    ap.add_argument("--estimator", default="mdn", choices=["mdn", "maf", "nsf"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    a = ap.parse_args(argv)
    os.environ.setdefault("ASTRO_NB_PROGRESS", "0")
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    dev = get_device(a.device)
    lg = LinearGaussian()
    rng = np.random.default_rng(0)
    npe_kw = dict(estimator=a.estimator, hidden_features=50, num_transforms=3, num_components=2,
                  learning_rate=1e-3, training_batch_size=100, stop_after_epochs=20, max_num_epochs=200,
                  device=dev, show_progress=False)
    mcmc_kw = dict(n_samples=a.n_samples, n_walkers=32, n_burn=300, thin=max(1, int(np.ceil(1600 / np.ceil(a.n_samples / 32)))),
                   vectorize=True)

    # warm-up: first training, first sampling and first emcee run in this process (not timed)
    th = lg.prior.sample(500, seed=1)
    warm = train_npe(th, lg.simulate(th, rng=1), lg.prior, **{**npe_kw, "max_num_epochs": 3})
    warm.sample_batched(lg.simulate(th[:10], rng=2), 100)
    run_emcee(lg.log_likelihood, lg.prior, n_samples=64, n_walkers=32, n_burn=20, args=(lg.simulate(th[0], rng=3)[0],),
              vectorize=True)

    theta = lg.prior.sample(a.n_train, seed=0)
    npe = train_npe(theta, lg.simulate(theta, rng=1), lg.prior, **npe_kw)
    theta_obs = 0.7 * lg.prior.sample(max(a.n_obs, a.n_mcmc), seed=5)
    x_obs = lg.simulate(theta_obs, rng=6)

    t0 = time.perf_counter()
    s_npe = npe.sample_batched(x_obs[:a.n_obs], a.n_samples, seed=0)
    npe_per = (time.perf_counter() - t0) / a.n_obs

    mcmc_times, s_mcmc, conv = [], [], []
    for i in range(a.n_mcmc):
        r = run_emcee(lg.log_likelihood, lg.prior, args=(x_obs[i],), seed=i, **mcmc_kw)
        mcmc_times.append(r.seconds); s_mcmc.append(r.samples); conv.append(r.converged)
    mcmc_per = float(np.mean(mcmc_times))

    c2 = {"npe": [], "mcmc": []}
    for i in range(min(3, a.n_mcmc)):
        exact = lg.posterior_samples(x_obs[i], a.n_samples, seed=100 + i)
        c2["npe"].append(c2st_score(s_npe[i], exact)); c2["mcmc"].append(c2st_score(s_mcmc[i], exact))
    amo = amortization(mcmc_per, npe_per, npe.training_seconds)

    out = {"device": str(dev), "torch_threads": a.threads, "estimator": a.estimator, "n_train": a.n_train,
           "n_samples_per_posterior": a.n_samples, "npe_training_seconds": npe.training_seconds,
           "npe_epochs": int(len(npe.history)), "npe_posteriors_timed": a.n_obs, "mcmc_posteriors_timed": a.n_mcmc,
           "mcmc_converged": all(conv), "c2st_vs_exact_npe": c2["npe"], "c2st_vs_exact_mcmc": c2["mcmc"], **amo}
    print(f"device {dev}, {a.threads} torch thread(s); {a.n_samples} samples per posterior, both methods")
    print(f"NPE ({a.estimator}, {a.n_train} sims): trained in {npe.training_seconds:.1f} s ({len(npe.history)} epochs)")
    print(f"NPE   posteriors/second: {amo['npe_posteriors_per_second']:10.1f}   ({a.n_obs} posteriors, sample_batched)")
    print(f"emcee posteriors/second: {amo['mcmc_posteriors_per_second']:10.3f}   ({a.n_mcmc} posteriors, "
          f"{mcmc_kw['n_walkers']} walkers, converged: {all(conv)})")
    print(f"ratio (NPE / emcee):     {amo['speedup']:10.0f}")
    print(f"break-even (paper: (MCMC - training) / NPE per posterior): {amo['break_even']:.0f}; "
          f"posteriors to amortize training: {amo['n_to_amortize_training']:.1f}")
    print(f"C2ST vs exact posterior: NPE {np.round(c2['npe'], 3).tolist()}, emcee {np.round(c2['mcmc'], 3).tolist()}")
    if a.json:
        with open(a.json, "w") as f: json.dump(to_builtin(out), f, indent=2)
    return out


if __name__ == "__main__":
    main()
