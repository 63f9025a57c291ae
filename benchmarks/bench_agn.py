"""Benchmark of the AGN study's data path (arXiv:2307.04072): simulation and feature extraction.

Objects per second through `simulate_survey` (a bank) + `write_tables` + `extract_features`,
serially and on a local Dask cluster of 2 workers, measured in the same run (their ratio is the
speed-up); and the memory peak of streaming feature extraction against the size the ForcedSource
table would take if read at once (numpy allocations via tracemalloc, pyarrow's pool peak).

    python benchmarks/bench_agn.py                 # 6000 objects
    python benchmarks/bench_agn.py --n 437000      # Stripe 82 size (long: ~1.5 ms/object/core to simulate)
"""
import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("ASTRO_NB_PROGRESS", "0")

import pyarrow as pa
import pyarrow.parquet as pq

from astro_nb.agn import data, sim
from astro_nb.banks import build_bank, dask_client


def run(n, chunk, root, client, workers, tag):
    "Simulate, write tables and extract features; return (sim seconds, features seconds, tables)."
    t0 = time.perf_counter()
    bank = build_bank(sim.simulate_survey, n, chunk, root / f"bank-{tag}", seed=0, client=client, workers=workers,
                      show_progress=False)
    tables = sim.write_tables(bank, root / f"tables-{tag}")
    t1 = time.perf_counter()
    feats, maps, rep = data.extract_features(tables["ForcedSourceTable"], client=client, workers=workers, show_progress=False)
    t2 = time.perf_counter()
    assert len(feats) == n, (len(feats), n)
    return t1 - t0, t2 - t1, tables


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000, help="objects")
    ap.add_argument("--chunk", type=int, default=1000, help="objects per chunk / row group")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench_agn_"))
    try:
        s_sim, s_feat, tables = run(a.n, a.chunk, root, None, None, "serial")
        t0 = time.perf_counter()
        client, _ = dask_client("local", a.workers)
        startup = time.perf_counter() - t0
        try:
            d_sim, d_feat, _ = run(a.n, a.chunk, root, client, None, "dask")
        finally:
            cluster = client.cluster; client.close(); cluster.close()
        print(f"dask cluster start-up: {startup:.1f} s (not counted below)")
        print(f"objects: {a.n}, chunk {a.chunk}, cores {os.cpu_count()}")
        print(f"serial       : simulate+write {a.n / s_sim:8.0f} obj/s   features {a.n / s_feat:8.0f} obj/s   "
              f"total {a.n / (s_sim + s_feat):8.0f} obj/s")
        print(f"dask x{a.workers}      : simulate+write {a.n / d_sim:8.0f} obj/s   features {a.n / d_feat:8.0f} obj/s   "
              f"total {a.n / (d_sim + d_feat):8.0f} obj/s")
        print(f"speed-up dask/serial: simulate {s_sim / d_sim:.2f}x  features {s_feat / d_feat:.2f}x  "
              f"total {(s_sim + s_feat) / (d_sim + d_feat):.2f}x")

        # memory: stream the serial table again under tracemalloc
        fs = pq.ParquetFile(tables["ForcedSourceTable"])
        full_bytes = fs.metadata.num_rows * 10 * 8
        pool = pa.default_memory_pool()
        print(f"ForcedSource rows {fs.metadata.num_rows:,} in {fs.num_row_groups} row groups; "
              f"read at once ~{full_bytes / 2**20:.0f} MiB ({full_bytes / a.n / 1024:.1f} KiB per object)")
        for maps in (False, True):
            tracemalloc.start()
            feats, mp, _ = data.extract_features(tables["ForcedSourceTable"], maps=maps, show_progress=False)
            _, peak = tracemalloc.get_traced_memory(); tracemalloc.stop()
            out_bytes = feats.memory_usage().sum() + (mp.nbytes if maps else 0)
            print(f"streaming peak (maps={maps}): numpy {peak / 2**20:.0f} MiB, arrow pool peak {pool.max_memory() / 2**20:.0f} MiB; "
                  f"of which the result (features{' + dm-dt maps' if maps else ''}) {out_bytes / 2**20:.0f} MiB, "
                  f"{out_bytes / a.n / 1024:.2f} KiB per object")
        print(f"working memory beyond the result is bounded by one row group ({a.chunk} objects); at the Stripe-82 size "
              f"the whole ForcedSource table would take ~{full_bytes / a.n * 437000 / 2**30:.1f} GiB at once, "
              f"the streamed result ~{out_bytes / a.n * 437000 / 2**30:.1f} GiB (with maps)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
