"""`rlgumbel-report <sweep dir> [<sweep dir> …]`: tables, learning curves and tidy CSV of the
runs of one or more sweeps, and an aggregate across envs when they span several.

Writes `report.md`, PNG plots and `scalars.csv` to `--out` (default `<sweep>/report`), prints
the report and, last, the folder it went to. Exit code 0 on success, 2 with a one-line error
when the folder does not exist, holds no run, or no run logged `--metric`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlgumbel import layout
from rlgumbel.report import DEFAULT_METRIC, ReportError, write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: the sweep folder and the report's options."""
    parser = argparse.ArgumentParser(
        prog="rlgumbel-report",
        description="Report on one or more sweeps: final return per group (mean, IQM with 95% bootstrap "
        "CI), env steps to a threshold, learning curves, P(improvement), an aggregate "
        "across envs, tidy CSV.",
    )
    parser.add_argument(
        "sweeps",
        type=Path,
        nargs="+",
        metavar="sweep",
        help=f"sweep folder(s); runs are found by <run>/{layout.CONFIG_FILE}",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <first sweep>/report)")
    parser.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help=f"scalar whose last value is a run's final return (default: {DEFAULT_METRIC})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="level of the metric for steps-to-threshold (default: each run's env.solved_return)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument(
        "--csv-tags",
        default="",
        metavar="PREFIXES",
        help="comma-separated tag prefixes kept in scalars.csv, e.g. charts/ (default: all)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the process exit code."""
    args = parse_args(argv)
    try:
        report = write_report(
            args.sweeps, args.out, args.metric, args.threshold, args.seed, csv_tags=tuple(args.csv_tags.split(","))
        )
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(report.markdown)
    print(f"report: {report.files[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
