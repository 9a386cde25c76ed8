"""Benchmark: how fast each selector solves CartPole-v1 with the shipped default hyperparameters.

For every selector and seed, runs the real console entry point (`python -m rlgumbel.cli.train
selector=<s> seed=<k> hydra.run.dir=<tmp>/...`, `--jobs` at a time, one torch thread each as
configured) and reads the run's event file. Prints one Markdown table per selector with, per
seed: env steps and wall seconds to the first greedy evaluation >= the env's solved return
(475 for CartPole-v1), the final greedy evaluation, and training env steps per second; then
the medians and how many seeds solved and stayed solved.

Wall seconds to solve are `perf/wall_seconds` (training time, logged every `trainer.log_every`
steps) interpolated linearly at the solving step; the process column adds start-up (imports,
Hydra, env construction). Medians count an unsolved seed as infinitely slow, so a median of "—"
means that at most half of the seeds solved.

Targets (CartPole-v1, 5 seeds): the default selector (gumbel_softmax) first solves at a median
<= 30,000 env steps and <= 60 s, and its final greedy evaluation is >= 475 in >= 4 seeds; every
selector solves in >= 3 of 5 seeds within 100,000 env steps.

Usage:
    python benchmarks/cartpole_solve.py [--selectors argmax sample gumbel_softmax] [--seeds 5]
        [--total-steps N] [--jobs 2] [--keep DIR] [-- extra Hydra overrides...]
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlgumbel.report import read_events

SELECTORS = ("argmax", "sample", "gumbel_softmax")
SOLVED_RETURN = 475.0  # CartPole-v1's own threshold; configs/env/cartpole.yaml uses the same
SUMMARY_LINE = re.compile(r"env steps: (\d+)\s+wall: ([\d.]+) s")


@dataclass
class RunResult:
    selector: str
    seed: int
    steps: int
    train_seconds: float          # the trainer's own wall time (summary line)
    process_seconds: float        # the whole process, start-up included
    solved_step: int | None
    solved_seconds: float | None  # perf/wall_seconds interpolated at solved_step
    final_greedy: float
    returncode: int


def run_one(selector: str, seed: int, root: Path, total_steps: int | None, overrides: list[str]) -> RunResult:
    """Train one run through the CLI and read its event file."""
    run_dir = root / f"{selector}_seed{seed}"
    command = [sys.executable, "-m", "rlgumbel.cli.train", f"selector={selector}", f"seed={seed}",
               f"hydra.run.dir={run_dir}", "trainer.progress=false", *overrides]
    if total_steps is not None:
        command.append(f"trainer.total_steps={total_steps}")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=root)
    process_seconds = time.perf_counter() - started
    (root / f"{selector}_seed{seed}.log").write_text(done.stdout + done.stderr)
    summary = SUMMARY_LINE.search(done.stdout)
    if done.returncode != 0 or summary is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        print(f"warning: {selector} seed {seed} exited with {done.returncode}: {' / '.join(tail)}", file=sys.stderr)
        return RunResult(selector, seed, 0, math.nan, process_seconds, None, None, math.nan, done.returncode)

    scalars = read_events(run_dir / "tb").scalars
    greedy = scalars["charts/eval_return_greedy"]
    wall = scalars.get("perf/wall_seconds")
    train_seconds = float(summary.group(2))
    solved = np.flatnonzero(greedy.values >= SOLVED_RETURN)
    solved_step = int(greedy.steps[solved[0]]) if len(solved) else None
    solved_seconds = None
    if solved_step is not None:
        # Anchor the curve at (0, 0) and at the end of the run, so early and late solves interpolate too.
        steps = np.concatenate([[0], wall.steps if wall is not None else [], [int(summary.group(1))]])
        seconds = np.concatenate([[0.0], wall.values if wall is not None else [], [train_seconds]])
        solved_seconds = float(np.interp(solved_step, steps, seconds))
    return RunResult(selector, seed, int(summary.group(1)), train_seconds, process_seconds,
                     solved_step, solved_seconds, float(greedy.values[-1]), 0)


def _median_with_failures(values: list[float | None]) -> float | None:
    """Median where None (never solved) counts as +inf; None if the median is unsolved."""
    median = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(median) else median


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def table(selector: str, results: list[RunResult]) -> str:
    """Markdown table of one selector's runs, with medians and counts."""
    lines = [f"### {selector}", "",
             "| seed | steps to ≥475 | wall s to ≥475 | final greedy | steps/s | train s | process s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rate = r.steps / r.train_seconds if r.train_seconds and not math.isnan(r.train_seconds) else None
        lines.append(f"| {r.seed} | {_fmt(r.solved_step)} | {_fmt(r.solved_seconds, 1)} | {_fmt(r.final_greedy, 1)} | "
                     f"{_fmt(rate)} | {_fmt(r.train_seconds, 1)} | {_fmt(r.process_seconds, 1)} |")
    finals = [r.final_greedy for r in results if not math.isnan(r.final_greedy)]
    rates = [r.steps / r.train_seconds for r in results if r.train_seconds and not math.isnan(r.train_seconds)]
    lines.append(
        f"| **median** | {_fmt(_median_with_failures([r.solved_step for r in results]))} | "
        f"{_fmt(_median_with_failures([r.solved_seconds for r in results]), 1)} | "
        f"{_fmt(statistics.median(finals) if finals else None, 1)} | "
        f"{_fmt(statistics.median(rates) if rates else None)} | "
        f"{_fmt(statistics.median([r.train_seconds for r in results]), 1)} | "
        f"{_fmt(statistics.median([r.process_seconds for r in results]), 1)} |")
    solved = sum(r.solved_step is not None for r in results)
    stayed = sum(r.final_greedy >= SOLVED_RETURN for r in results)
    lines += ["", f"solved (greedy eval ≥ 475 at some evaluation): {solved}/{len(results)}; "
                  f"final greedy eval ≥ 475: {stayed}/{len(results)}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--selectors", nargs="+", default=list(SELECTORS), help="selector config names")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per selector")
    parser.add_argument("--total-steps", type=int, default=None,
                        help="trainer.total_steps (default: the config's own default)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at once")
    parser.add_argument("--keep", type=Path, default=None, help="write the runs here instead of a temp dir")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cartpole_solve_") as temp:
        root = (args.keep or Path(temp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        jobs = [(selector, seed) for selector in args.selectors for seed in range(args.seeds)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda job: run_one(*job, root, args.total_steps, args.overrides), jobs))
        elapsed = time.perf_counter() - started

    budget = f"{args.total_steps:,}" if args.total_steps else "the default"
    print(f"## CartPole-v1: {args.seeds} seeds per selector, {budget} env steps, {args.jobs} runs at once"
          + (f", overrides: {' '.join(args.overrides)}" if args.overrides else ""))
    for selector in args.selectors:
        print()
        print(table(selector, [r for r in results if r.selector == selector]))
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if any(r.returncode for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
