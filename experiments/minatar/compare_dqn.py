"""Print this study's runs next to the MinAtar paper's DQN at the same env-step counts.

The paper (Young & Tian 2019) plots, for DQN, the moving average of the last 100 training
episodes' returns (ε-greedy, ε 1 → 0.1 over the first 100k frames; one frame is one env step),
averaged over 30 runs. dqn_reference.csv holds that curve at the step counts below, read from the
pixel positions of the DQN curve in the figure the MinAtar repository ships
(img/learning_curves.gif): the centre of the curve's pixels, on a y axis calibrated by its tick
marks (good to about ±0.3 in Breakout and ±1.5 in Space Invaders, the curve's width). The same
reading gives 10.1 and 43.9 at 4.9M frames, the 5M-frame returns the presets' `solved_return` uses.

For each run this prints both measures at those steps: the mean return of its last 100 training
episodes (`charts/episodic_return`, the paper's measure, here under the sampled policy) and its
last greedy evaluation (`charts/eval_return_greedy`, 10 episodes) at or before the step.

Usage: python experiments/minatar/compare_dqn.py SWEEP [SWEEP ...]   (e.g. suite_runs/minatar)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from rlgumbel import layout
from rlgumbel.report.runs import Series, load_sweep

HERE = Path(__file__).resolve().parent
EPISODES = 100


def trailing_mean(series: Series, step: int, count: int) -> float:
    """Mean of the last `count` values logged at or before `step`."""
    values = series.values[series.steps <= step][-count:]
    return float(values.mean()) if len(values) else float("nan")


def reference() -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    with open(HERE / "dqn_reference.csv", newline="") as file:
        for row in csv.DictReader(file):
            table.setdefault(row["game"], {})[int(row["env_steps"])] = float(row["dqn_return"])
    return table


def main(sweeps: list[Path]) -> None:
    dqn = reference()
    runs = sorted((run for sweep in sweeps for run in load_sweep(sweep)), key=lambda run: (run.env, run.seed))
    for game, points in dqn.items():
        members = [run for run in runs if run.env == f"MinAtar/{game}-v1"]
        if not members:
            continue
        steps = [step for step in points if any(run.last_step and run.last_step >= step for run in members)]
        print(f"\n## {game}: mean of the last {EPISODES} training episodes / last greedy evaluation\n")
        print("| env steps | MinAtar paper's DQN | " + " | ".join(f"seed {run.seed}" for run in members) + " | mean |")
        print("|---:|---:|" + "---:|" * (len(members) + 1))
        for step in steps:
            cells, train_means = [], []
            for run in members:
                train = trailing_mean(run.scalars[layout.EPISODIC_RETURN], step, EPISODES)
                greedy = trailing_mean(run.scalars[layout.EVAL_RETURN_GREEDY], step, 1)
                reached = run.last_step is not None and run.last_step >= step
                cells.append(f"{train:.1f} / {greedy:.1f}" if reached else "–")
                train_means.append(train if reached else np.nan)
            print(f"| {step:,} | {points[step]:.1f} | " + " | ".join(cells) + f" | {np.nanmean(train_means):.1f} |")


if __name__ == "__main__":
    main([Path(argument) for argument in sys.argv[1:]])
