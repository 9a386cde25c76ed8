"""Benchmark: the discrete suite, env by env and selector by selector, with the shipped presets.

For every env preset, selector and seed, trains one run through the real console entry point
(`python -m rlgumbel.cli.train env=<env> selector=<selector> seed=<k> hydra.run.dir=...`),
`--jobs` at a time, one torch thread each as configured. Runs go to `--out`; a run that already
finished there is read, not run again, so an interrupted benchmark continues where it stopped.
Each preset is used as shipped, the same for every selector; only ReinMax, which is defined for
temperatures >= 1, runs at the constant temperature 1.

Prints, per env, one Markdown table with a row per selector: seeds whose greedy evaluation
reached the preset's solved return (`env.solved_return`) within the budget, the median env steps
to get there (a seed that never did counts as infinitely slow, so "—" means at most half did),
the interquartile mean of the final greedy evaluations across seeds with a 95% bootstrap
interval, training env steps per second and wall seconds per run (medians over seeds).

`--population` trains each env and selector's seeds together, as one population through the
population launcher (`hydra/launcher=population`), `--jobs` populations at once: each seed's run
is the same as alone (tests/test_population.py), in less wall time; steps/s and wall seconds are
then the population's, shared by its runs.

`--quick` is a smoke test of the whole pipeline: one seed, 2,000 env steps per run, two
evaluation episodes. Its returns mean nothing.

Usage:
    python benchmarks/suite.py [--envs cartpole acrobot ...] [--selectors gumbel_softmax ...]
        [--seeds 5] [--jobs 2] [--out DIR] [--population] [--quick] [-- extra Hydra overrides...]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlgumbel import layout
from rlgumbel.checkpoint import list_checkpoints
from rlgumbel.report import (
    COMPLETED,
    FAILED,
    bootstrap_ci,
    final_value,
    iqm,
    load_run,
    median_steps,
    steps_to_threshold,
)

ENVS = (
    "cartpole",
    "acrobot",
    "mountain_car",
    "lunar_lander",
    "taxi",
    "cliff_walking",
    "minatar_breakout",
    "minatar_space_invaders",
)
CLASSIC_CONTROL = ("cartpole", "acrobot", "mountain_car")
# Selector variants: the overrides that pick each one.
SELECTORS = {
    "argmax": ["selector=argmax"],
    "sample": ["selector=sample"],
    "gumbel_softmax": ["selector=gumbel_softmax"],
    "gumbel_softmax_hard": ["selector=gumbel_softmax", "selector.hard=true"],
    "straight_through": ["selector=straight_through"],
    "gumbel_rao": ["selector=gumbel_rao"],
    "reinmax": ["selector=reinmax", "schedule=constant", "schedule.start=1.0"],
    "expected": ["selector=expected"],
}
QUICK = [
    "trainer.total_steps=2000",
    "trainer.learning_starts=500",
    "trainer.eval_every=1000",
    "trainer.eval_episodes=2",
    "trainer.log_every=500",
]
TRAIN = [sys.executable, "-m", "rlgumbel.cli.train"]
BOOTSTRAP_SEED = 0  # numpy seed of every row's bootstrap interval: the tables are reproducible


@dataclass
class RunResult:
    env: str
    selector: str
    seed: int
    status: str
    threshold: float | None
    steps_to_threshold: int | None
    final_greedy: float
    steps_per_second: float
    wall_seconds: float


def run_dir(root: Path, env: str, selector: str, seed: int) -> Path:
    return root / env / f"{selector}_seed{seed}"


def _pending(root: Path, env: str, selector: str, seed: int) -> str | None:
    """Whether a run must still train: None if its folder holds a finished or failed run, "resume"
    if it holds a checkpoint to continue from, else "start" (a folder without one is removed)."""
    folder = run_dir(root, env, selector, seed)
    if not folder.is_dir():
        return "start"
    if load_run(folder, root).status in (COMPLETED, FAILED):
        return None
    if list_checkpoints(folder / layout.CHECKPOINT_DIR):
        return "resume"
    shutil.rmtree(folder)  # stopped before its first checkpoint: start again
    return "start"


def _run_logged(command: list[str], root: Path, log: Path, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=root)
    log.write_text(done.stdout + done.stderr)
    state = "done" if done.returncode == 0 else f"exit {done.returncode}"
    print(f"{what}: {state} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def train(root: Path, env: str, selector: str, seed: int, extra: list[str]) -> None:
    """Train one run through the CLI unless its folder already holds a finished or failed one;
    an interrupted run is continued from its last checkpoint."""
    folder = run_dir(root, env, selector, seed)
    pending = _pending(root, env, selector, seed)
    if pending is None:
        return
    if pending == "resume":
        command = [*TRAIN, f"resume={folder}"]
    else:
        command = [*TRAIN, f"env={env}", *SELECTORS[selector], f"seed={seed}", f"hydra.run.dir={folder}", *extra]
    _run_logged(
        [*command, "trainer.progress=false"],
        root,
        folder.parent / f"{folder.name}.log",
        f"{env} {selector} seed {seed}",
    )


def train_population(root: Path, env: str, selector: str, seeds: range, extra: list[str]) -> None:
    """Train an env's and selector's seeds that are not finished as one multirun through the
    population launcher, each into the folder it would have alone; interrupted runs continue
    from their checkpoints (`resume=true`)."""
    pending = [seed for seed in seeds if _pending(root, env, selector, seed) is not None]
    if not pending:
        return
    command = [
        *TRAIN,
        "-m",
        "hydra/launcher=population",
        "hydra.launcher.n_jobs=1",
        f"env={env}",
        *SELECTORS[selector],
        f"seed={','.join(map(str, pending))}",
        f"hydra.sweep.dir={root / env}",
        f"hydra.sweep.subdir={selector}_seed${{seed}}",
        "resume=true",
        "trainer.progress=false",
        *extra,
    ]
    _run_logged(command, root, root / env / f"{selector}_population.log", f"{env} {selector} seeds {pending}")


def read_result(root: Path, env: str, selector: str, seed: int) -> RunResult:
    """The figures of one finished (or failed) run, from its config and event file."""
    folder = run_dir(root, env, selector, seed)
    nan = math.nan
    if not folder.is_dir():
        return RunResult(env, selector, seed, "missing", None, None, nan, nan, nan)
    run = load_run(folder, root)
    greedy = run.scalars.get(layout.EVAL_RETURN_GREEDY)
    solved = run.config.get("env.solved_return")
    threshold = None if solved is None else float(solved)
    wall = run.scalars.get(layout.WALL_SECONDS)
    if greedy is None or wall is None:
        return RunResult(env, selector, seed, run.status, threshold, None, nan, nan, nan)
    seconds = final_value(wall)
    return RunResult(
        env,
        selector,
        seed,
        run.status,
        threshold,
        steps_to_threshold(greedy, threshold) if threshold is not None else None,
        final_value(greedy),
        float(wall.steps.max()) / seconds if seconds > 0 else nan,
        seconds,
    )


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def env_table(env: str, results: list[RunResult], budget: str) -> str:
    """One env's Markdown table: a row per selector."""
    threshold = next((r.threshold for r in results if r.threshold is not None), None)
    lines = [
        f"### {env} (solved: greedy eval ≥ {_fmt(threshold, 1)} within {budget} env steps)",
        "",
        "| selector | solved | median steps to solved | final greedy IQM [95% CI] | steps/s | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for selector in dict.fromkeys(r.selector for r in results):
        rows = [r for r in results if r.selector == selector and r.status == COMPLETED]
        finals = np.array([r.final_greedy for r in rows])
        if len(finals):
            low, high = bootstrap_ci(finals, iqm, BOOTSTRAP_SEED)
            final = f"{_fmt(float(iqm(finals)), 1)} [{_fmt(float(low), 1)}, {_fmt(float(high), 1)}]"
        else:
            final = "—"
        steps = [r.steps_to_threshold for r in rows]
        solved = sum(s is not None for s in steps)
        failed = sum(r.status != COMPLETED for r in results if r.selector == selector)
        lines.append(
            f"| {selector} | {solved}/{len(rows)}{f' ({failed} failed)' if failed else ''} | "
            f"{_fmt(median_steps(steps) if steps else None)} | {final} | "
            f"{_fmt(_median([r.steps_per_second for r in rows]))} | {_fmt(_median([r.wall_seconds for r in rows]))} |"
        )
    return "\n".join(lines)


def _budget(overrides: list[str]) -> str:
    """The budget a table states: `trainer.total_steps` from the overrides, else the preset's."""
    steps = [o.partition("=")[2] for o in overrides if o.partition("=")[0] == "trainer.total_steps"]
    return f"{int(steps[-1]):,}" if steps else "the preset's"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), help="env presets (configs/env/)")
    parser.add_argument(
        "--selectors", nargs="+", default=["gumbel_softmax"], choices=list(SELECTORS), help="selector variants"
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 5; 1 with --quick)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at once")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument(
        "--population", action="store_true", help="train each env's and selector's seeds as one population"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 2,000 env steps per run")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (after --)")
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 5)
    extra = [*QUICK, *args.overrides] if args.quick else list(args.overrides)

    with tempfile.TemporaryDirectory(prefix="suite_") as temp:
        root = (args.out or Path(temp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        jobs = [(env, selector, seed) for env in args.envs for selector in args.selectors for seed in range(seeds)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            if args.population:
                groups = [(env, selector) for env in args.envs for selector in args.selectors]
                list(pool.map(lambda group: train_population(root, *group, range(seeds), extra), groups))
            else:
                list(pool.map(lambda job: train(root, *job, extra), jobs))
        elapsed = time.perf_counter() - started
        results = [read_result(root, *job) for job in jobs]

    print(
        f"## The discrete suite: {seeds} seed{'s' if seeds > 1 else ''} per selector, "
        + (f"{args.jobs} populations at once" if args.population else f"{args.jobs} runs at once")
        + (" (--quick: a smoke test, not a measurement)" if args.quick else "")
        + (f", overrides: {' '.join(args.overrides)}" if args.overrides else "")
    )
    for env in args.envs:
        budget = "2,000" if args.quick else _budget(args.overrides)
        print()
        print(env_table(env, [r for r in results if r.env == env], budget))
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    if any(r.status != COMPLETED for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
