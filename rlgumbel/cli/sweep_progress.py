"""What a multirun prints for its reader: which run of how many starts, and one line per run at the end.

A Hydra callback (configs/train.yaml, `hydra.callbacks`). The sweep's size is counted in
the launching process and handed to the jobs through the environment, so that jobs a launcher
runs in worker processes (joblib, submitit) count the same way.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from rlgumbel import layout

SIZE_VARIABLE = "RLGUMBEL_SWEEP_SIZE"


def sweep_size(config: DictConfig) -> int | None:
    """Jobs in the multirun: a search sweeper's `n_trials`, else the product of the sweeps'
    lengths (the sweeper's `params`, then the command line's, which replace the same keys)."""
    sweeper = config.hydra.sweeper
    if "n_trials" in sweeper:
        return int(sweeper.n_trials)
    params = sweeper.get("params") or {}
    overrides = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    lengths = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            try:
                lengths[override.get_key_element()] = len(list(override.sweep_string_iterator()))
            except Exception:  # an interval: a search space, no count
                return None
        else:
            lengths.pop(override.get_key_element(), None)
    return math.prod(lengths.values())


def run_line(run_dir: Path) -> str:
    """One line on a run of the sweep: its final, mean and first solved evaluation, or why it has none."""
    summary, failure = run_dir / layout.SUMMARY_FILE, run_dir / layout.FAILURE_FILE
    if failure.is_file():
        lines = failure.read_text().strip().splitlines()
        return f"{run_dir.name}: failed: {lines[-1] if lines else 'no message'}"
    if not summary.is_file():
        return f"{run_dir.name}: no summary (interrupted or still running)"
    s = json.loads(summary.read_text())
    solved = s["first_solved_step"]
    return (
        f"{run_dir.name}: final greedy {s['final_eval_return_greedy']:.1f}, mean greedy "
        f"{s['mean_eval_return_greedy']:.1f}, solved at {f'{solved:,}' if solved is not None else '—'}"
        + (" (interrupted)" if s["interrupted"] else "")
    )


def _job_number(run_dir: Path) -> tuple[int, str]:
    match = re.search(r"_job(\d+)$", run_dir.name)
    return (int(match.group(1)) if match else -1, run_dir.name)


class SweepProgress(Callback):
    """Prints `[k/N] <overrides>` when a job of a multirun starts; remembers the sweep's folder
    for `print_sweep_summary`."""

    sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        size = sweep_size(config)
        os.environ[SIZE_VARIABLE] = str(size) if size else "?"
        SweepProgress.sweep_dir = Path(config.hydra.sweep.dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        total = os.environ.get(SIZE_VARIABLE, "?")
        overrides = " ".join(config.hydra.overrides.task)
        print(f"[{config.hydra.job.num + 1}/{total}] {overrides}", file=sys.stderr, flush=True)


def print_sweep_summary() -> None:
    """One line per run of the multirun this process launched, if any, and the report command.
    Called when the multirun has ended, also when some of its runs failed."""
    sweep_dir, SweepProgress.sweep_dir = SweepProgress.sweep_dir, None  # once per multirun
    if sweep_dir is None or not sweep_dir.is_dir():
        return
    runs = sorted((p for p in sweep_dir.iterdir() if (p / layout.HYDRA_DIR).is_dir()), key=_job_number)
    lines = [f"sweep of {len(runs)} runs in {sweep_dir}:", *(f"  {run_line(run)}" for run in runs)]
    lines.append(f"compare them: rlgumbel-report {sweep_dir}")
    print("\n".join(lines), file=sys.stderr, flush=True)
