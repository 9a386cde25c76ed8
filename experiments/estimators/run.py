"""Bias and variance of every gradient estimator versus temperature, without RL noise.

The objective is J(θ) = E_{a ~ softmax(θ)}[f(e_a)] over A = 10 actions, with fixed random
logits θ and one of two fixed "critics" f of the action vector y:
  linear     f(y) = q·y               (what a Q-head critic is for a single member)
  quadratic  f(y) = q·y + yᵀ W y      (curvature off the vertices, like a concat critic)
Only f's values at one-hot vectors define J; its exact gradient p ⊙ (F − p·F), F_a = f(e_a),
is computed by enumeration. Each estimator is the library's selector: its `actor_objective`
is differentiated with respect to θ (rlgumbel.diagnostics.logit_gradients), M = 100,000
independent estimates per point, summarised by rlgumbel.diagnostics.estimator_statistics.

Usage (from the repository root): python experiments/estimators/run.py
Writes results.csv, results.md and estimators.png next to this file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from rlgumbel.diagnostics import estimator_statistics, logit_gradients
from rlgumbel.schedules import ConstantSchedule
from rlgumbel.selectors import (
    ActionSelector,
    ArgmaxSelector,
    ExpectedSelector,
    GumbelRaoSelector,
    GumbelSoftmaxSelector,
    ReinmaxSelector,
    SampleSelector,
    StraightThroughSelector,
)

HERE = Path(__file__).resolve().parent
NUM_ACTIONS = 10
SAMPLES = 100_000
# An RL update averages over a batch of states: RMSE of a mean of this many i.i.d. estimates.
BATCH = 256
TEMPERATURES = [0.1, 0.2, 0.5, 1.0, 2.0, 4.0]
ESTIMATORS: dict[str, Callable[[], ActionSelector]] = {
    "gumbel_softmax (soft)": lambda: GumbelSoftmaxSelector(hard=False),
    "gumbel_softmax (hard)": lambda: GumbelSoftmaxSelector(hard=True),
    "straight_through": StraightThroughSelector,
    "gumbel_rao K=1": lambda: GumbelRaoSelector(samples=1),
    "gumbel_rao K=10": lambda: GumbelRaoSelector(samples=10),
    "reinmax": ReinmaxSelector,
    "sample (score function)": SampleSelector,
    "expected": ExpectedSelector,
    "argmax (deterministic ST)": lambda: ArgmaxSelector(epsilon=ConstantSchedule(0.0)),
}


class FixedCritic:
    """f(y) = q·y + yᵀ W y for every row of a batch of copies of one state."""

    def __init__(self, q: torch.Tensor, weights: torch.Tensor, rows: int) -> None:
        self.q, self.weights, self.rows = q, weights, rows

    def of(self, action: torch.Tensor) -> torch.Tensor:
        return action @ self.q + ((action @ self.weights) * action).sum(-1)

    def all(self) -> torch.Tensor:
        return (self.q + self.weights.diagonal()).expand(self.rows, -1)


def problem(seed: int = 0) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(NUM_ACTIONS, generator=generator, dtype=torch.float64)
    q = torch.randn(NUM_ACTIONS, generator=generator, dtype=torch.float64)
    noise = torch.randn(NUM_ACTIONS, NUM_ACTIONS, generator=generator, dtype=torch.float64)
    quadratic = (noise + noise.T) / 2
    return logits, {"linear": (q, torch.zeros_like(quadratic)), "quadratic": (q, quadratic)}


def sweep() -> list[dict]:
    logits, objectives = problem()
    obs = torch.zeros(1, 1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    rows = []
    for objective, (q, weights) in objectives.items():

        def bind(o: torch.Tensor, q: torch.Tensor = q, weights: torch.Tensor = weights) -> FixedCritic:
            return FixedCritic(q, weights, o.shape[0])

        for name, make in ESTIMATORS.items():
            selector = make()
            for temperature in TEMPERATURES:
                if temperature < selector.min_temperature:
                    continue
                exact, estimates = logit_gradients(logits[None], obs, bind, selector, temperature, generator, SAMPLES)
                summary = estimator_statistics(estimates[:, 0], exact[0])
                exact_norm = summary["estimator/exact_norm"]
                bias = summary["estimator/relative_bias"]
                relative_std = math.sqrt(summary["estimator/variance"]) / exact_norm
                rows.append(
                    {
                        "objective": objective,
                        "estimator": name,
                        "temperature": temperature,
                        "relative_bias": bias,
                        "relative_standard_error": summary["estimator/relative_standard_error"],
                        "relative_std": relative_std,  # of a single estimate
                        "relative_rmse": math.sqrt(bias**2 + relative_std**2),  # of a single estimate
                        f"relative_rmse_batch{BATCH}": math.sqrt(bias**2 + relative_std**2 / BATCH),
                        "cosine": summary["estimator/cosine"],
                        "snr": summary["estimator/snr"],
                        "exact_norm": exact_norm,
                    }
                )
    return rows


def write_outputs(rows: list[dict]) -> None:
    with (HERE / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    sections = [
        "# Gradient estimators: results\n",
        f"Generated by `python experiments/estimators/run.py`: A = {NUM_ACTIONS} actions, "
        f"M = {SAMPLES:,} estimates per cell. Relative to |exact gradient|: bias of the mean "
        f"(Monte-Carlo floor ≈ std/√M = std/{math.isqrt(SAMPLES)}), std of a single estimate, RMSE of "
        f"the mean of {BATCH} estimates (sqrt(bias² + std²/{BATCH}), as for a batch of {BATCH} states). "
        "'—': temperature refused (ReinMax needs τ ≥ 1).\n",
    ]
    for objective in ("linear", "quadratic"):
        for metric in ("relative_bias", "relative_std", f"relative_rmse_batch{BATCH}", "cosine"):
            header = "| estimator | " + " | ".join(f"τ={t:g}" for t in TEMPERATURES) + " |"
            lines = [f"## {objective}: {metric}\n", header, "|---|" + "---|" * len(TEMPERATURES)]
            for name in ESTIMATORS:
                cells = []
                for temperature in TEMPERATURES:
                    match = [
                        r
                        for r in rows
                        if r["objective"] == objective and r["estimator"] == name and r["temperature"] == temperature
                    ]
                    cells.append(f"{match[0][metric]:.3g}" if match else "—")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            sections.append("\n".join(lines) + "\n")
    (HERE / "results.md").write_text("\n".join(sections))


def figure(rows: list[dict]) -> None:
    metrics = [
        ("relative_bias", "relative bias of the mean"),
        ("relative_std", "relative std of one estimate"),
        (f"relative_rmse_batch{BATCH}", f"relative RMSE of a mean of {BATCH} estimates"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9), sharex=True)
    markers = "os^vD<>px"
    for row_index, objective in enumerate(("linear", "quadratic")):
        for col, (metric, title) in enumerate(metrics):
            ax = axes[row_index, col]
            for marker, name in zip(markers, ESTIMATORS):
                points = [
                    (r["temperature"], r[metric])
                    for r in rows
                    if r["objective"] == objective and r["estimator"] == name
                ]
                x, y = zip(*points)
                # exact zeros (expected; deterministic std) are drawn at the floor 1e-4
                ax.plot(x, [max(v, 1e-4) for v in y], marker=marker, label=name)
            ax.set(xscale="log", yscale="log", title=f"{objective} f: {title}", ylim=(1e-4, 30))
            if row_index == 1:
                ax.set_xlabel("temperature τ")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "estimators.png", dpi=100)


def main() -> None:
    torch.set_num_threads(1)
    rows = sweep()
    write_outputs(rows)
    figure(rows)
    print((HERE / "results.md").read_text())


if __name__ == "__main__":
    main()
