"""Study 4: how the NPE's training settings decide whether it matches the exact posterior.

    python benchmarks/bench_clusters_training.py [--n-train 20000] [--n-covariance 200] [--mocks 6] [--bank PATH]
                                                [--configs "mdn defaults" "mdn batch50 p50" ...]

The exact posterior of the cluster-count survey is about 1/200 of the prior's width in Omega_m, so the network must
place its mean to a fraction of that everywhere in the prior. Each configuration below is trained on the same
analytic bank (`--bank`: the `banks/analytic-...` folder of a clusters run, or a new bank of `--n-train`
simulations with a covariance from `--n-covariance` halo catalogues) and judged on `--mocks` reference mocks against
reference posteriors (importance sampling of the exact Gaussian likelihood), through `inference.compare_posteriors`:
the median C2ST beside its noise floor and the median ratio of posterior widths, with the training's epochs and
seconds. The baseline is sbi's defaults (batches of 200, early stopping after 20 epochs without improvement),
measured in the same run; `clusters.model.TRAINING_OPTIONS` is the
setting the chapter uses.
"""
import argparse
import json
import os
import tempfile
import time
import warnings

import numpy as np

os.environ.setdefault("ASTRO_NB_PROGRESS", "0")
import torch  # noqa: E402

from astro_nb import inference as inf  # noqa: E402
from astro_nb.banks import Bank  # noqa: E402
from astro_nb.clusters import evaluate as ev  # noqa: E402
from astro_nb.clusters import model, sim  # noqa: E402

CONFIGS = {
    "mdn defaults": dict(estimator="mdn", num_components=5, training_batch_size=200, stop_after_epochs=20),
    "mdn batch200 p50 lr2e-4": dict(estimator="mdn", num_components=5, training_batch_size=200, stop_after_epochs=50,
                                    learning_rate=2e-4),
    "mdn batch50 p20": dict(estimator="mdn", num_components=5, training_batch_size=50, stop_after_epochs=20),
    "mdn batch50 p50": dict(estimator="mdn", num_components=5, training_batch_size=50, stop_after_epochs=50),
    "mdn batch20 p30": dict(estimator="mdn", num_components=5, training_batch_size=20, stop_after_epochs=30),
    "maf defaults": dict(estimator="maf", training_batch_size=200, stop_after_epochs=20),
    "maf batch50 p50": dict(estimator="maf", training_batch_size=50, stop_after_epochs=50),
}


def load_bank(path, n_train: int, n_covariance: int, seed: int = 0):
    "(theta, features, covariance) from a clusters run's analytic bank, or a new one."
    if path is None:
        cov = sim.covariance_from_catalogs(np.random.default_rng(seed + 1), n_covariance)[1]
        path = tempfile.mkdtemp() + "/analytic"
        theta, x = model.simulation_bank(sim.simulate_analytic, n_train, path, covariance=cov, seed=seed)
        return theta, x, cov
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    a = Bank(path).arrays()
    return a["theta"].astype(float), model.features(a["x"]), np.array(manifest["params"]["covariance"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", default=None)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-covariance", type=int, default=200)
    ap.add_argument("--mocks", type=int, default=6)
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--configs", nargs="*", default=["mdn defaults", "mdn batch50 p50"])
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    theta, x, cov = load_bank(a.bank, a.n_train, a.n_covariance)
    like = model.GaussianLikelihood(cov)
    _, x_mock = ev.reference_mocks(a.mocks, np.random.default_rng(2), cov)
    print(f"{len(theta)} simulations, {a.mocks} mocks; chapter setting: {model.TRAINING_OPTIONS}")
    refs, base = None, None
    for name in a.configs:
        kw = CONFIGS[name]
        t0 = time.perf_counter()
        p = inf.train_npe(theta, x, sim.PRIOR, max_epochs=a.max_epochs, device="cpu", seed=0, show_progress=False, **kw)
        seconds = time.perf_counter() - t0
        if refs is None:   # references once, with the first network as the importance-sampling proposal
            refs = [inf.importance_sample(p, like, model.features(xo), 500, seed=i, n_proposal=5000, args=(xo,),
                                          on_unreliable="ignore") for i, xo in enumerate(x_mock)]
        s = inf.sample_in_prior(p, model.features(x_mock), 500).samples
        cmp = inf.compare_posteriors(s, [r.samples for r in refs], names=sim.PRIOR.names).summary
        base = base or seconds
        print(f"{name:26s} {len(p.history):4d} epochs {seconds:6.0f} s ({seconds / base:4.1f}x the first)  "
              f"C2ST {cmp['c2st_median']:.3f} (floor {cmp['c2st_noise_floor']:.3f})  width ratio "
              f"{[round(cmp[f'width_ratio_median_{n}'], 2) for n in sim.PRIOR.names]}  "
              f"(references reliable: {sum(r.reliable for r in refs)} of {len(refs)})", flush=True)


if __name__ == "__main__":
    main()
