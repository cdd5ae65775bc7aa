"""Run the reusable benchmarks one after another (``make bench``), each in its own process,
with its report on stdout. Long accuracy runs are not here: they are ``sam-med evaluate``
commands (``docs/engine.md``, ``docs/cvpr25.md``).

    python benchmarks/run_all.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> arguments; each script prints `lscpu` flags and its reference run in the same process
BENCHMARKS = {
    "bench_encoder": [],
    "bench_decoder": [],
    "bench_click_latency": [],
    "bench_slicewise": [],
    "bench_fullsize": ["all"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these")
    args = ap.parse_args(argv)
    failed = []
    for name, extra in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *extra])
        if rc:
            failed.append(f"{name} (exit {rc})")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
