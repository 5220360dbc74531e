"""`tracker-prune` console script (placeholder-free minimal version; see README)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tracker-prune", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="run the package benchmark")
    b.add_argument("--scale", default="smoke", choices=["smoke", "cpu", "gpu"])
    b.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)
    if args.cmd == "bench":
        from paperworks_shared.bench import BenchContext

        from .bench import run

        run(BenchContext("tracker-prune", args.scale, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
