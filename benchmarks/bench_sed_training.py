"""Study 3: whether the NPE's training settings decide how close it comes to the exact posterior.

    python benchmarks/bench_sed_training.py --run _runs/reproduce-sed [--spectra 5] [--max-epochs 200]
                                            [--configs "maf batch256 p20" "maf batch64 p50"]

The same question `bench_clusters_training.py` answers for study 4, where sbi's default batches and patience left the
network under-fitted and too wide. Each configuration is trained on the training bank of a sed run folder (`--run`:
its `banks/train` and `banks/test`, at the run's snr) and judged on the first `--spectra` test spectra against emcee
reference posteriors of the exact likelihood (differential evolution + snooker, 2000 + 10000 steps, converged on
these spectra in the reproduce run), through `inference.compare_posteriors`: the median C2ST beside its noise floor
and the median width ratio per parameter, with the epochs and seconds of training. The first configuration is the chapter's (`sed.model.train_estimators`: batches of 256,
early stopping after 20 epochs), measured in the same run as the others.
"""
import argparse
import json
import os
import time
import warnings

import numpy as np

os.environ.setdefault("ASTRO_NB_PROGRESS", "0")
import torch  # noqa: E402

from astro_nb import inference as inf  # noqa: E402
from astro_nb.banks import Bank  # noqa: E402
from astro_nb.sed import model  # noqa: E402
from astro_nb.sed.sim import PRIOR  # noqa: E402

CONFIGS = {
    "maf batch256 p20": dict(estimator="maf", hidden_features=25, num_transforms=10, training_batch_size=256,
                             stop_after_epochs=20),
    "maf batch64 p50": dict(estimator="maf", hidden_features=25, num_transforms=10, training_batch_size=64,
                            stop_after_epochs=50),
    "nsf batch256 p20": dict(estimator="nsf", hidden_features=50, num_transforms=5, training_batch_size=256,
                             stop_after_epochs=20),
    "nsf batch64 p50": dict(estimator="nsf", hidden_features=50, num_transforms=5, training_batch_size=64,
                            stop_after_epochs=50),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--spectra", type=int, default=5)
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--configs", nargs="*", default=["maf batch256 p20", "maf batch64 p50"])
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    snr = float(json.load(open(os.path.join(a.run, "params.json")))["parameters"]["snr"])
    tr, te = Bank(os.path.join(a.run, "banks", "train")).arrays(), Bank(os.path.join(a.run, "banks", "test")).arrays()
    x_obs = te["x"][: a.spectra]
    t0 = time.perf_counter()
    refs = [model.emcee_posterior(x, snr, 1000, seed=k) for k, x in enumerate(x_obs)]
    print(f"{len(tr['theta'])} training spectra; {a.spectra} emcee references in {time.perf_counter() - t0:.0f} s "
          f"(converged: {sum(r.converged for r in refs)} of {len(refs)})", flush=True)
    base = None
    for name in a.configs:
        cfg = dict(CONFIGS[name]); batch = cfg.pop("training_batch_size")
        t0 = time.perf_counter()
        with model.expected_warnings():
            p = inf.train_npe(tr["theta"], tr["x"], PRIOR, **cfg, max_epochs=a.max_epochs, training_batch_size=batch,
                              device="cpu", seed=0, show_progress=False)
        seconds = time.perf_counter() - t0
        s = model.sample_npe(p, x_obs, 1000, snr=snr, seed=0).samples
        cmp = inf.compare_posteriors(s, [r.samples for r in refs], names=PRIOR.names).summary
        base = base or seconds
        print(f"{name:18s} {len(p.history):4d} epochs {seconds:6.0f} s ({seconds / base:4.1f}x the first)  "
              f"best val loss {p.history['val_loss'].min():.3f}  C2ST {cmp['c2st_median']:.3f} "
              f"(floor {cmp['c2st_noise_floor']:.3f})  width ratio "
              f"{ {n: round(cmp[f'width_ratio_median_{n}'], 2) for n in PRIOR.names} }", flush=True)


if __name__ == "__main__":
    main()
