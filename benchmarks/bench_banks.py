"""Bank building: rows per second in-process vs on a Dask LocalCluster, measured in the same run.

    python benchmarks/bench_banks.py [--n 200000] [--chunk 10000] [--workers 2] [--bins 2000]

Prints both rates and their ratio (the speed-up of the Dask build over the serial one), and checks
that both banks hold the same numbers.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ASTRO_NB_PROGRESS", "0")
from astro_nb.banks import build_bank, toy_simulator  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--bins", type=int, default=2000, help="points per simulated curve (the work per row)")
    a = ap.parse_args()
    params = {"n_bins": a.bins}
    with tempfile.TemporaryDirectory() as d:
        build_bank(toy_simulator, n=a.chunk, chunk_size=a.chunk, path=Path(d) / "warm", params=params)  # warm-up
        t0 = time.perf_counter()
        serial = build_bank(toy_simulator, n=a.n, chunk_size=a.chunk, path=Path(d) / "serial", params=params)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        dask = build_bank(toy_simulator, n=a.n, chunk_size=a.chunk, path=Path(d) / "dask", params=params,
                          client="local", workers=a.workers)
        t_dask = time.perf_counter() - t0      # includes starting and stopping the LocalCluster
        same = all(np.array_equal(x["x"], y["x"]) for x, y in zip(serial.iter_chunks(), dask.iter_chunks()))
    print(f"serial : {a.n / t_serial:12.0f} rows/s ({t_serial:.2f} s)")
    print(f"dask x{a.workers}: {a.n / t_dask:12.0f} rows/s ({t_dask:.2f} s, cluster start-up included)")
    print(f"ratio dask/serial: {t_serial / t_dask:.2f}x; identical banks: {same}")


if __name__ == "__main__":
    main()
