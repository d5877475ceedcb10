"""Time and peak memory of every notebook of the book, for Binder and workshops.

Target (issue "The rendered book, Binder and workshops"): every notebook in full
mode fits in 2 GB of memory and 10 minutes on 2 cores (a mybinder.org session).

Each notebook of _toc.yml runs with papermill in a fresh process; its peak
memory is the largest resident set size of that process and its children (the
Jupyter kernel), from the operating system's accounting (getrusage), so it
includes PyTorch's and numba's native memory. Downloads go to the usual cache
(EMUCAL_DATA_DIR) through EMUCAL_MIRROR if set: run the notebooks once first,
or `emucal fetch`, so that the times do not include downloads.

Run: python benchmarks/notebooks.py [--fast] [--only 05_calibration ...] [--keep DIR] [--csv FILE]
Prints a table, and writes it as CSV with --csv FILE (with the mode, date,
machine and command); the "Measured performance" page shows
benchmarks/results/notebooks_full.csv and notebooks_fast.csv. With --only, the
rows of the notebooks that ran replace theirs in an existing FILE, and the
other rows stay, each with its own date and command.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

import emucal

REPO = Path(__file__).resolve().parents[1]
LIMIT_GB, LIMIT_MIN = 2.0, 10.0

# Run one notebook in a child process and report the peak RSS of its children.
CHILD = """
import resource, sys, time, papermill
start = time.perf_counter()
papermill.execute_notebook(sys.argv[1], sys.argv[2], kernel_name="python3", cwd=sys.argv[3],
                           progress_bar=False, log_output=False)
seconds = time.perf_counter() - start
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kernel = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"RESULT {seconds:.1f} {max(own, kernel) / 1024**2:.3f}")
"""


def notebooks() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    return [f for f in files if (REPO / f"{f}.ipynb").exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="EMUCAL_FAST=1 (the test configuration)")
    parser.add_argument("--only", nargs="*", help="notebook names (without book/ and .ipynb)")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    parser.add_argument("--keep", type=Path, help="keep the executed notebooks in this folder")
    args = parser.parse_args()
    env = dict(os.environ, EMUCAL_FAST="1" if args.fast else "0")
    choice = emucal.size_thread_pools()  # what each kernel will choose on this machine
    print(f"emucal threads in each notebook's kernel: {choice.threads} ({choice.reason})", flush=True)
    rows = []
    chosen = [f for f in notebooks() if not args.only or Path(f).name in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            path = REPO / f"{name}.ipynb"
            out = (args.keep or Path(tmp)) / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), str(path.parent)],
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
            if proc.returncode or not result:
                print(f"{name}: FAILED\n{proc.stderr[-3000:]}", file=sys.stderr)
                rows.append({"notebook": Path(name).name, "minutes": wall / 60, "peak GB": float("nan"),
                             "fits Binder": "failed"})
                continue
            seconds, peak_gb = map(float, result[0].split()[1:])
            rows.append({"notebook": Path(name).name, "minutes": seconds / 60, "peak GB": peak_gb,
                         "fits Binder": "yes" if peak_gb < LIMIT_GB and seconds < 60 * LIMIT_MIN else "NO"})
            print(f"{Path(name).name}: {seconds:.0f} s, {peak_gb:.2f} GB", flush=True)
    table = pd.DataFrame(rows).set_index("notebook")
    table["mode"] = "FAST" if args.fast else "full"
    table["threads"] = choice.threads
    table["date"] = datetime.now(timezone.utc).date().isoformat()
    table["machine"] = f"{platform.machine()}, {platform.system()}, {os.cpu_count()} CPUs"
    table["command"] = "python benchmarks/notebooks.py" + (" --fast" if args.fast else "") + (
        " --only " + " ".join(args.only) if args.only else "")
    print(f"\n{'FAST' if args.fast else 'full'} mode, {os.cpu_count()} CPUs; limits {LIMIT_GB:g} GB and "
          f"{LIMIT_MIN:g} min per notebook")
    print(table[["minutes", "peak GB", "fits Binder"]].to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"total {table['minutes'].sum():.1f} min")
    if args.csv:
        if args.only and args.csv.exists():  # replace these notebooks' rows, keep the others
            kept = pd.read_csv(args.csv, index_col="notebook").drop(index=table.index, errors="ignore")
            order = [Path(f).name for f in notebooks()]
            table = pd.concat([kept, table]).loc[lambda t: sorted(t.index, key=order.index)]
        table.to_csv(args.csv)


if __name__ == "__main__":
    main()
