"""Run every d4m benchmark and write BENCHMARKS.md from their results.

    python bench/run_all.py [--quick] [--only synthesis,kmeans,storage,memory] [--no-write]

Each benchmark is also runnable alone (``python bench/<name>.py [--quick]``); each writes
``bench/results/<name>[_quick].json``, from which ``bench/report.py`` renders BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("synthesis", "kmeans", "storage", "memory", "synthesis_flops")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller runs")
    p.add_argument("--smoke", action="store_true", help="tiny runs (numbers meaningless; nothing written)")
    p.add_argument("--only", help="comma-separated subset of " + ", ".join(NAMES))
    p.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(NAMES)
    flag = ["--smoke"] if args.smoke else (["--quick"] if args.quick else [])
    failed = []
    for name in names:
        print(f"=== {name} {' '.join(flag)}", flush=True)
        t0 = time.perf_counter()
        # one benchmark per process: each starts from the same state (imports, memory)
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *flag])
        print(f"=== {name}: exit {code}, {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(name)
    if not args.smoke and not args.no_write:
        from report import write_report

        print(f"wrote {write_report(quick=args.quick)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
