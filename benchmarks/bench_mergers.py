"""Study 1 (mergers): simulator images per second, serial vs a Dask bank, and ResNet18 training images per second.

    python benchmarks/bench_mergers.py [--systems 16] [--chunk 2] [--workers 2] [--size 101]
                                       [--train-size 64] [--batch 64] [--device auto]
                                       [--cv-systems 600 --folds 5 --seeds 3 --val-fraction 0.15 --epochs 8]

The simulator is timed in-process and on a Dask LocalCluster in the same run (ratio printed; both banks
must hold the same images). Training throughput is measured on the device it runs on, beside a
baseline at the quick input size (64 px) on the same device, so that the ratio is comparable across
machines.

The cross-validation estimate: the chapter trains folds x seeds networks, each on
systems x (1 - 1/folds - val_fraction) x 6 images for at most `epochs` epochs; the training time at
`--train-size` is extrapolated from the measured throughput (validation, predictions and checkpoints
not included: add ~10%).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ASTRO_NB_PROGRESS", "0")
from astro_nb.banks import build_bank  # noqa: E402
from astro_nb.core import get_device  # noqa: E402
from astro_nb.mergers.model import training_throughput  # noqa: E402
from astro_nb.mergers.sim import simulate_mergers  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", type=int, default=16, help="systems per bank (6 angles x 3 bands each)")
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=101, help="cutout size in pixels")
    ap.add_argument("--train-size", type=int, default=224, help="network input size")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cv-systems", type=int, default=600, help="systems of the cross-validation estimate")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--epochs", type=int, default=8)
    a = ap.parse_args()
    params = {"image_size": a.size}
    n_img = a.systems * 6
    with tempfile.TemporaryDirectory() as d:
        build_bank(simulate_mergers, n=1, chunk_size=1, path=Path(d) / "warm", params=params, show_progress=False)
        t0 = time.perf_counter()
        serial = build_bank(simulate_mergers, n=a.systems, chunk_size=a.chunk, path=Path(d) / "serial", params=params,
                            show_progress=False)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        dask = build_bank(simulate_mergers, n=a.systems, chunk_size=a.chunk, path=Path(d) / "dask", params=params,
                          client="local", workers=a.workers, show_progress=False)
        t_dask = time.perf_counter() - t0
        same = all(np.array_equal(x["images"], y["images"]) for x, y in zip(serial.iter_chunks(["images"]), dask.iter_chunks(["images"])))
    print(f"simulator, {a.systems} systems x 6 angles x 3 bands of {a.size} px:")
    print(f"  serial  : {n_img / t_serial:8.1f} images/s ({t_serial:.1f} s)")
    print(f"  dask x{a.workers} : {n_img / t_dask:8.1f} images/s ({t_dask:.1f} s, cluster start-up included)")
    print(f"  ratio dask/serial: {t_serial / t_dask:.2f}x; identical banks: {same}")
    dev = get_device(a.device)
    base = training_throughput(64, a.batch, a.steps, dev)
    ips = training_throughput(a.train_size, a.batch, a.steps, dev) if a.train_size != 64 else base
    print(f"ResNet18 training on {dev}: {ips:.1f} images/s at {a.train_size} px, batch {a.batch} "
          f"(baseline {base:.1f} images/s at 64 px; ratio {ips / base:.3f})")
    n_train = int(a.cv_systems * (1 - 1 / a.folds - a.val_fraction)) * 6
    one = n_train * a.epochs / ips
    print(f"cross-validation: {a.folds} folds x {a.seeds} seeds, {n_train} training images x {a.epochs} epochs each: "
          f"{one:.0f} s per training, {a.folds * a.seeds * one / 60:.1f} min in all (training steps only)")


if __name__ == "__main__":
    main()
