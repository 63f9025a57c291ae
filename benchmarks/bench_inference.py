"""Posteriors per second of NPE, importance sampling, emcee and nautilus, measured in the same run.

The problem is a 5-D linear-Gaussian model (`astro_nb.inference.LinearGaussian` with an 8x5 matrix),
whose posterior is known, so each method's samples are also checked against the exact posterior
(C2ST, 0.5: indistinguishable) and the speeds compare posteriors of the same number of samples. The
baseline is batched NPE sampling (`sample_batched`); each method's ratio is its posteriors per second
over NPE's. Importance sampling uses the same NPE as its proposal; emcee runs a converged chain (DE +
snooker moves, `--mcmc-steps` after burn-in); nautilus runs with few live points and one network.
A warm-up of each method comes first: the first call in a fresh process is slower than the next.

    python benchmarks/bench_inference.py                      # ~2 minutes on a 2-core CPU
    python benchmarks/bench_inference.py --n-obs 2000 --n-nautilus 3 --json bench.json
"""
import argparse
import json
import os
import time
import warnings

import numpy as np
import torch

from astro_nb.core import get_device, to_builtin
from astro_nb.inference import (LinearGaussian, c2st_score, importance_sample, run_emcee, run_nautilus,
                                train_npe)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=4000, help="simulations to train NPE on")
    ap.add_argument("--n-obs", type=int, default=500, help="observations whose NPE posteriors are timed")
    ap.add_argument("--n-is", type=int, default=20, help="observations whose importance-sampled posteriors are timed")
    ap.add_argument("--n-mcmc", type=int, default=3, help="observations whose emcee posteriors are timed")
    ap.add_argument("--n-nautilus", type=int, default=2, help="observations whose nautilus posteriors are timed")
    ap.add_argument("--n-samples", type=int, default=1000, help="samples per posterior, all methods")
    ap.add_argument("--n-proposal", type=int, default=10000, help="importance-sampling proposals per posterior")
    ap.add_argument("--mcmc-steps", type=int, default=1500, help="emcee steps per walker after 300 of burn-in")
    ap.add_argument("--mcmc-moves", default="de_snooker", choices=["stretch", "de", "de_snooker"])
    ap.add_argument("--nautilus-live", type=int, default=300, help="nautilus live points")
    ap.add_argument("--nautilus-networks", type=int, default=1, help="nautilus networks per bound")
    ap.add_argument("--n-c2st", type=int, default=3, help="posteriors per method checked against the exact one")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    a = ap.parse_args(argv)
    os.environ.setdefault("ASTRO_NB_PROGRESS", "0")
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    dev = get_device(a.device)
    lg = LinearGaussian(A=np.random.default_rng(3).normal(size=(8, 5)), sigma=0.5, bound=3.0)
    n = a.n_samples
    npe_kw = dict(estimator="maf", hidden_features=32, num_transforms=3, learning_rate=1e-3, training_batch_size=100,
                  stop_after_epochs=10, max_epochs=150, device=dev, show_progress=False)
    mcmc_kw = dict(n_samples=n, n_walkers=32, n_burn=300, n_steps=a.mcmc_steps, moves=a.mcmc_moves)
    ns_kw = dict(n_samples=n, n_live=a.nautilus_live, n_networks=a.nautilus_networks)

    # warm-up: first training, sampling, importance sampling, MCMC and nested sampling in this process (not timed)
    th = lg.prior.sample(500, seed=1)
    xw = lg.simulate(th[:10], rng=2)
    warm = train_npe(th, lg.simulate(th, rng=1), lg.prior, **{**npe_kw, "max_epochs": 3})
    warm.sample_batched(xw, 100)
    importance_sample(warm, lg.log_likelihood, xw[0], 100, n_proposal=1000, args=(xw[0],), on_unreliable="ignore")
    run_emcee(lg.log_likelihood, lg.prior, n_samples=64, n_walkers=32, n_burn=20, args=(xw[0],), moves=a.mcmc_moves)
    run_nautilus(lg.log_likelihood, lg.prior, n_samples=100, n_live=100, n_eff=200, n_networks=1, args=(xw[0],))

    theta = lg.prior.sample(a.n_train, seed=0)
    npe = train_npe(theta, lg.simulate(theta, rng=1), lg.prior, **npe_kw)
    n_obs = max(a.n_obs, a.n_is, a.n_mcmc, a.n_nautilus)
    x_obs = lg.simulate(0.5 * lg.prior.sample(n_obs, seed=5), rng=6)    # posteriors well inside the box

    t0 = time.perf_counter()
    s_npe = npe.sample_batched(x_obs[:a.n_obs], n, seed=0)
    rows = {"NPE (sample_batched)": dict(seconds=(time.perf_counter() - t0) / a.n_obs, timed=a.n_obs,
                                         samples=list(s_npe[:a.n_c2st]), note=f"maf, {a.n_train} sims")}

    runs = [r_ for r_ in (importance_sample(npe, lg.log_likelihood, x_obs[i], n, seed=i, n_proposal=a.n_proposal,
                                            args=(x_obs[i],)) for i in range(a.n_is))]
    rows["importance sampling"] = dict(
        seconds=float(np.mean([r_.seconds for r_ in runs])), timed=a.n_is, samples=[r_.samples for r_ in runs[:a.n_c2st]],
        note=f"{a.n_proposal} proposals; reliable {np.mean([r_.reliable for r_ in runs]):.0%}, "
             f"Pareto k max {max(r_.pareto_k for r_ in runs):.2f}, ESS min {min(r_.ess for r_ in runs):.0f}")

    runs = [run_emcee(lg.log_likelihood, lg.prior, args=(x_obs[i],), seed=i, **mcmc_kw) for i in range(a.n_mcmc)]
    rows[f"emcee ({a.mcmc_moves})"] = dict(
        seconds=float(np.mean([r_.seconds for r_ in runs])), timed=a.n_mcmc, samples=[r_.samples for r_ in runs[:a.n_c2st]],
        note=f"32 walkers x {300 + a.mcmc_steps} steps; converged {np.mean([r_.converged for r_ in runs]):.0%}, "
             f"max tau {max(r_.tau.max() for r_ in runs):.0f}")

    runs = [run_nautilus(lg.log_likelihood, lg.prior, seed=i, args=(x_obs[i],), **ns_kw) for i in range(a.n_nautilus)]
    rows["nautilus"] = dict(
        seconds=float(np.mean([r_.seconds for r_ in runs])), timed=a.n_nautilus, samples=[r_.samples for r_ in runs[:a.n_c2st]],
        note=f"{a.nautilus_live} live, {a.nautilus_networks} network(s); converged {np.mean([r_.converged for r_ in runs]):.0%}, "
             f"{np.mean([r_.n_likelihood_calls for r_ in runs]):.0f} likelihood calls")

    exact = [lg.posterior_samples(x_obs[i], n, seed=100 + i) for i in range(a.n_c2st)]
    base = rows["NPE (sample_batched)"]["seconds"]
    print(f"device {dev}, {a.threads} torch thread(s); 5-D linear-Gaussian problem; {n} samples per posterior")
    print(f"NPE (maf, {a.n_train} sims): trained in {npe.training_seconds:.1f} s ({len(npe.history)} epochs)")
    print(f"{'method':24s} {'posteriors/s':>13s} {'ratio to NPE':>13s} {'NPE x faster':>13s} {'timed':>6s}  "
          f"C2ST vs exact (first {a.n_c2st})")
    out = {"device": str(dev), "torch_threads": a.threads, "n_train": a.n_train, "n_samples_per_posterior": n,
           "npe_training_seconds": npe.training_seconds, "methods": {}}
    for name, r_ in rows.items():
        c2 = [c2st_score(s, e) for s, e in zip(r_["samples"], exact)]
        ratio = base / r_["seconds"]
        print(f"{name:24s} {1 / r_['seconds']:13.3f} {ratio:13.2e} {1 / ratio:13.0f} {r_['timed']:6d}  {np.round(c2, 3).tolist()}  ({r_['note']})")
        out["methods"][name] = {"posteriors_per_second": 1 / r_["seconds"], "seconds_per_posterior": r_["seconds"],
                                "ratio_to_npe": ratio, "posteriors_timed": r_["timed"], "c2st_vs_exact": c2,
                                "note": r_["note"]}
    if a.json:
        with open(a.json, "w") as f: json.dump(to_builtin(out), f, indent=2)
    return out


if __name__ == "__main__":
    main()
