"""The quick chapters' time, stage by stage (issue 20: the four together within 360 s of chapter time on 2 cores).

    python benchmarks/bench_quick_chapters.py [--studies mergers agn sed clusters] [--out DIR] [--keep]

Runs each study's chapter at the quick profile as a user would (`astro-nb run STUDY --out DIR/STUDY --fresh`,
banks and checkpoints built from nothing), then prints from each run's metrics.json the `chapter_seconds` and the
`stage_seconds` (simulate, train, reference, evaluate), the wall time of the command, and the number of stderr
outputs left in the executed notebook (a reader must see none). The run folders go to a temporary folder unless
`--out` names one (`--keep` keeps the temporary one). The chapters run one after the other, as `astro-nb run all`
runs them, so their times add up; on a shared machine compare them only with times measured in the same run.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDIES = ("mergers", "agn", "sed", "clusters")
STAGES = ("simulate", "train", "reference", "evaluate")
GOAL_SECONDS = 90.0          # issue 20: about 90 s of chapter time per quick chapter, 360 s for the four


def stderr_outputs(notebook: Path) -> int:
    "Number of stderr stream outputs in an executed notebook (what the docs build refuses)."
    if not notebook.exists(): return -1
    nb = json.loads(notebook.read_text())
    return sum(o.get("output_type") == "stream" and o.get("name") == "stderr"
               for c in nb.get("cells", []) for o in c.get("outputs", []))


def run_chapter(study: str, out: Path) -> dict:
    "Run one quick chapter with `astro-nb run`; its stage times from metrics.json and the command's wall time."
    cmd = ["astro-nb", "run", study, "--out", str(out), "--fresh", "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ASTRO_NB_PROGRESS": "0"})
    wall = time.perf_counter() - t0
    row = {"study": study, "wall_seconds": wall, "returncode": proc.returncode}
    metrics = out / "metrics.json"
    if proc.returncode or not metrics.exists():
        row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return row
    m = json.loads(metrics.read_text())
    row["chapter_seconds"] = float(m.get("chapter_seconds", float("nan")))
    row.update({s: float(m.get("stage_seconds", {}).get(s, 0.0)) for s in STAGES})
    row["other"] = row["chapter_seconds"] - sum(row[s] for s in STAGES)
    row["stderr_outputs"] = stderr_outputs(out / f"{study}.ipynb")
    return row


def table(rows: list) -> str:
    "The rows as a fixed-width table, with the total of the chapters that ran."
    cols = ["chapter_seconds", *STAGES, "other", "wall_seconds", "stderr_outputs"]
    lines = [f"{'study':<10}" + "".join(f"{c:>16}" for c in cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['study']:<10} FAILED (exit {r['returncode']}): " + " | ".join(r["error"])); continue
        lines.append(f"{r['study']:<10}" + "".join(f"{r[c]:>16.1f}" if isinstance(r[c], float) else f"{r[c]:>16}" for c in cols))
    ok = [r for r in rows if "error" not in r]
    if ok:
        total = sum(r["chapter_seconds"] for r in ok)
        lines.append(f"total chapter_seconds of {len(ok)} chapter(s): {total:.1f} s (goal about {GOAL_SECONDS:.0f} s each, "
                     f"{GOAL_SECONDS * len(STUDIES):.0f} s for all four)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", nargs="+", default=list(STUDIES), choices=STUDIES)
    ap.add_argument("--out", type=Path, default=None, help="parent folder of the run folders (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run folders")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if shutil.which("astro-nb") is None: sys.exit("astro-nb is not on PATH: pip install -e . first")
    parent = args.out or Path(tempfile.mkdtemp(prefix="bench_quick_"))
    print(f"command: python benchmarks/bench_quick_chapters.py --studies {' '.join(args.studies)}; run folders under {parent}")
    rows = []
    try:
        for study in args.studies:
            rows.append(run_chapter(study, parent / study))
            r = rows[-1]
            print(f"{study}: " + (f"{r['chapter_seconds']:.1f} s of chapter time" if "error" not in r else "failed"), flush=True)
    finally:
        if args.out is None and not args.keep: shutil.rmtree(parent, ignore_errors=True)
    print(table(rows))
    if args.json: args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
