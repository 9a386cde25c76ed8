"""Gradient diagnostics inside CartPole training, one run per selector.

Each selector trains CartPole-v1 with the shipped defaults for `--steps` env steps and
`trainer.diagnostics=true`: every `--every` env steps, 32 independent actor-gradient estimates on
a replay batch are compared with the exact gradient of E_π[Q(s, a)] under the current critic.
Writes in_training.md (medians over the run's diagnostics) and in_training.png (cosine and
relative bias along training). ReinMax runs at a constant temperature of 1 (it refuses lower
ones); the others use the default exponential schedule 1 → 0.1.

Usage (from the repository root): .venv/bin/python experiments/estimators/in_training.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from hydra import compose, initialize_config_dir

from rlgumbel.config import build_trainer, register_with_hydra
from rlgumbel.configs import CONFIG_DIR
from rlgumbel.report import read_events

HERE = Path(__file__).resolve().parent
SELECTORS = {
    "gumbel_softmax": [],
    "gumbel_softmax (hard)": ["selector=gumbel_softmax", "selector.hard=true"],
    "straight_through": [],
    "gumbel_rao (K=10)": ["selector=gumbel_rao", "selector.samples=10"],
    "reinmax (τ=1)": ["selector=reinmax", "schedule=constant", "schedule.start=1.0"],
    "sample": [],
    "argmax": [],
    "expected": [],
}
METRICS = (
    "estimator/cosine",
    "estimator/relative_bias",
    "estimator/snr",
    "estimator/variance",
    "estimator/grad_norm",
    "estimator/exact_norm",
)


def run(label: str, overrides: list[str], steps: int, every: int, seed: int) -> dict[str, list]:
    """Train one selector with diagnostics on; its estimator/* series."""
    overrides = overrides or [f"selector={label}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *overrides,
                f"seed={seed}",
                f"trainer.total_steps={steps}",
                "trainer.diagnostics=true",
                f"trainer.diagnostics_every={every}",
                "trainer.progress=false",
            ],
        )
    with tempfile.TemporaryDirectory() as run_dir:
        build_trainer(cfg, Path(run_dir)).run()
        scalars = read_events(Path(run_dir) / "tb").scalars
    return {tag: list(zip(scalars[tag].steps.tolist(), scalars[tag].values.tolist())) for tag in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    register_with_hydra()
    results = {
        label: run(label, overrides, args.steps, args.every, args.seed) for label, overrides in SELECTORS.items()
    }
    lines = [
        f"CartPole-v1, seed {args.seed}, {args.steps} env steps, diagnostics every {args.every} steps "
        "(32 estimates on a 128-state replay batch); medians over the run's diagnostics.",
        "",
        "| selector | cosine | relative bias | SNR | variance | estimate norm | exact norm |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, series in results.items():
        medians = [statistics.median(v for _, v in series[tag]) for tag in METRICS]
        lines.append(f"| {label} | " + " | ".join(f"{m:.3g}" for m in medians) + " |")
    (HERE / "in_training.md").write_text("\n".join(lines) + "\n")
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, series in results.items():
        for axis, tag in zip(axes, ("estimator/cosine", "estimator/relative_bias")):
            steps, values = zip(*series[tag])
            axis.plot(steps, values, marker=".", label=label)
            axis.set_title(tag)
            axis.set_xlabel("env steps")
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(HERE / "in_training.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
