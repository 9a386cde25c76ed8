"""Benchmark: wall time of `rlgumbel-report` on a synthetic 100-run sweep.

Builds, in a temporary folder, a sweep shaped like a real temperature study:
4 selector variants (argmax, sample, gumbel_softmax, gumbel_softmax hard) × 5 constant
temperatures × 5 seeds = 100 runs, each with the config Hydra composes for it and an event
file written by `rlgumbel.logger.Logger` at realistic sizes: 100k env steps, greedy and sampled
evaluation every 2,500 steps, ~500 training episodes (episodic_return and episodic_length),
and losses/policy/perf scalars every 1,000 steps. Then times the real console script
`rlgumbel-report <sweep>` (a fresh process each time, so imports count) and prints a Markdown
table of the median of `--repeats` runs. A second table compares, per run, the event-file
readers the report could use: TensorBoard's `EventAccumulator`, its `EventFileLoader`, and
`rlgumbel.report.read_events` (a plain TFRecord reader plus protobuf parsing).

Target: under 30 s on a 2-core machine.

Usage: python benchmarks/report_speed.py [--runs 100] [--repeats 3] [--reader-runs 20] [--keep DIR]
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from rlgumbel.config import hparams, register_with_hydra
from rlgumbel.configs import CONFIG_DIR
from rlgumbel.logger import Logger
from rlgumbel.report import read_events

REPORT = Path(sys.executable).with_name("rlgumbel-report")
TOTAL_STEPS = 100_000
EVAL_EVERY = 2_500
LOG_EVERY = 1_000
EPISODES = 500
SELECTORS = [
    ("argmax", []),
    ("sample", []),
    ("gumbel_softmax", ["selector.hard=false"]),
    ("gumbel_softmax", ["selector.hard=true"]),
]
TEMPERATURES = [0.1, 0.3, 1.0, 3.0, 10.0]
LOGGED_EVERY_1000 = [
    "losses/critic",
    "losses/actor",
    "policy/entropy",
    "policy/grad_norm",
    "values/q_mean",
    "policy/temperature",
    "policy/epsilon",
    "perf/steps_per_second",
    "perf/wall_seconds",
]


def run_overrides(num_runs: int) -> list[list[str]]:
    """Hydra overrides of each run of the sweep (selector × temperature × seed, in that order)."""
    seeds = max(1, num_runs // (len(SELECTORS) * len(TEMPERATURES)))
    runs = []
    for selector, extra in SELECTORS:
        for temperature in TEMPERATURES:
            for seed in range(seeds):
                runs.append(
                    [
                        f"selector={selector}",
                        *extra,
                        "schedule=constant",
                        f"schedule.start={temperature}",
                        f"seed={seed}",
                        f"trainer.total_steps={TOTAL_STEPS}",
                        f"trainer.eval_every={EVAL_EVERY}",
                    ]
                )
    return runs[:num_runs]


def compose_config(overrides: list[str]) -> DictConfig:
    """The resolved config `rlgumbel-train` would save for these overrides."""
    register_with_hydra()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def learning_curve(steps: np.ndarray, midpoint: float, rng: np.random.Generator) -> np.ndarray:
    """A noisy sigmoid from ~10 to ~500 (CartPole-like), reaching half height at `midpoint`."""
    clean = 10 + 490 / (1 + np.exp(-(steps - midpoint) / 8_000))
    return np.clip(clean + rng.normal(0, 25, steps.shape), 8, 500)


def write_run(run_dir: Path, overrides: list[str], index: int) -> None:
    """One synthetic run folder: `.hydra/config.yaml` and a complete event file."""
    cfg = compose_config(overrides)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    rng = np.random.default_rng(index)
    midpoint = 30_000 + 15_000 * abs(math.log10(float(cfg.schedule.start)) + 0.5) + rng.normal(0, 5_000)
    logger = Logger(run_dir / "tb", hparams(cfg), OmegaConf.to_yaml(cfg))
    episode_steps = np.sort(rng.choice(np.arange(4, TOTAL_STEPS + 1, 4), EPISODES, replace=False))
    episode_returns = learning_curve(episode_steps, midpoint, rng)
    eval_steps = np.arange(EVAL_EVERY, TOTAL_STEPS + 1, EVAL_EVERY)
    eval_greedy = iter(learning_curve(eval_steps, midpoint, rng))
    eval_sampled = iter(learning_curve(eval_steps, midpoint + 5_000, rng))
    episodes = iter(zip(episode_steps, episode_returns))
    step, episode_return = next(episodes)
    for boundary in range(LOG_EVERY, TOTAL_STEPS + 1, LOG_EVERY):
        while step is not None and step <= boundary:
            logger.scalars(
                {"charts/episodic_return": episode_return, "charts/episodic_length": episode_return}, int(step)
            )
            step, episode_return = next(episodes, (None, None))
        if boundary % EVAL_EVERY == 0:
            logger.scalars(
                {"charts/eval_return_greedy": next(eval_greedy), "charts/eval_return_sampled": next(eval_sampled)},
                boundary,
            )
        logger.scalars({tag: float(rng.normal()) for tag in LOGGED_EVERY_1000}, boundary)
    logger.close("success")


def build_sweep(sweep_dir: Path, num_runs: int) -> None:
    """Write `num_runs` run folders under `sweep_dir`, two processes at a time."""
    jobs = []
    with ProcessPoolExecutor(max_workers=2) as pool:
        for index, overrides in enumerate(run_overrides(num_runs)):
            jobs.append(pool.submit(write_run, sweep_dir / run_name(index, overrides), overrides, index))
        for job in jobs:
            job.result()


def run_name(index: int, overrides: list[str]) -> str:
    """Folder name of a run, e.g. `017_gumbel_softmax_hard_t0.3_seed2`."""
    values = dict(override.split("=", 1) for override in overrides)
    hard = "_hard" if values.get("selector.hard") == "true" else ""
    return f"{index:03d}_{values['selector']}{hard}_t{values['schedule.start']}_seed{values['seed']}"


def reader_seconds_per_run(sweep_dir: Path, num_runs: int) -> dict[str, float]:
    """Mean seconds per run to read every scalar of `num_runs` runs, per reader (imports excluded)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tb_dirs = sorted(sweep_dir.glob("*/tb"))[:num_runs]

    def accumulator(tb_dir: Path) -> None:
        events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            events.Scalars(tag)

    def file_loader(tb_dir: Path) -> None:
        for path in tb_dir.glob("events.out.tfevents.*"):
            for _ in EventFileLoader(str(path)).Load():
                pass

    readers = {
        "tensorboard EventAccumulator": accumulator,
        "tensorboard EventFileLoader": file_loader,
        "rlgumbel.report.read_events": read_events,
    }
    seconds = {}
    for name, read in readers.items():
        start = time.perf_counter()
        for tb_dir in tb_dirs:
            read(tb_dir)
        seconds[name] = (time.perf_counter() - start) / len(tb_dirs)
    return seconds


def time_report(sweep_dir: Path) -> float:
    """Wall seconds of one `rlgumbel-report` process on `sweep_dir` (fails loudly on error)."""
    start = time.perf_counter()
    subprocess.run([str(REPORT), str(sweep_dir)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """Build the sweep, time the report, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reader-runs", type=int, default=20, help="runs read by each reader in table 2")
    parser.add_argument(
        "--keep", type=Path, default=None, help="build the sweep under this folder (or reuse it) and keep it"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="report_speed_")) if args.keep is None else args.keep
    sweep_dir = root / "sweep"
    try:
        start = time.perf_counter()
        if not sweep_dir.is_dir():  # --keep DIR of an earlier call: reuse its sweep
            build_sweep(sweep_dir, args.runs)
        build_seconds = time.perf_counter() - start
        event_bytes = sum(p.stat().st_size for p in sweep_dir.glob("*/tb/events.out.tfevents.*"))
        times = [time_report(sweep_dir) for _ in range(args.repeats)]
        readers = reader_seconds_per_run(sweep_dir, args.reader_runs)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"synthetic sweep: {args.runs} runs, {event_bytes / 1e6:.1f} MB of event files, "
        f"built in {build_seconds:.1f} s\n"
    )
    print(f"| runs | report wall time, median of {args.repeats} (s) | min (s) | max (s) | target (s) |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {args.runs} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | 30 |")
    print(f"\n| event-file reader | ms per run (mean of {args.reader_runs} runs) | × rlgumbel |")
    print("|---|---:|---:|")
    ours = readers["rlgumbel.report.read_events"]
    for name, seconds in readers.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / ours:.1f} |")


if __name__ == "__main__":
    main()
