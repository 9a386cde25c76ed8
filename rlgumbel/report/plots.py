"""The report's plots: learning curves, return vs temperature, performance profiles (PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgumbel import aggregate
from rlgumbel.report.grouping import Group
from rlgumbel.report.runs import Series
from rlgumbel.report.statistics import GroupSummary, bootstrap_ci

CONSTANT_SCHEDULE = "constant"
CURVE_POINTS = 100  # grid size when a group's runs logged the metric at different steps


def curve_matrix(series: Sequence[Series]) -> tuple[np.ndarray, np.ndarray]:
    """Runs' curves on common steps: their shared steps if they all logged the same ones, else
    CURVE_POINTS steps over the range all runs cover (linear interpolation, repeated steps
    averaged).

    Args:
        series: the metric of each run.
    Returns:
        steps [T] and values [S, T].
    """
    if all(np.array_equal(s.steps, series[0].steps) for s in series):
        return series[0].steps, np.stack([s.values for s in series])
    start, stop = max(s.steps.min() for s in series), min(s.steps.max() for s in series)
    grid = np.linspace(start, stop, CURVE_POINTS) if stop > start else np.array([float(stop)])
    rows = []
    for s in series:
        unique, inverse = np.unique(s.steps, return_inverse=True)
        means = np.bincount(inverse, weights=s.values) / np.bincount(inverse)
        rows.append(np.interp(grid, unique, means))
    return grid, np.stack(rows)


def _new_axes(width: float, height: float) -> Any:
    # A Figure with an explicit Agg canvas: no pyplot, so no global backend state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure.add_subplot()


def _line_style(index: int) -> dict[str, str]:
    """Colour and dash of the index-th line: ten colours, then the same ten dashed, dotted, …"""
    dashes = ("-", "--", ":", "-.")
    return {"color": f"C{index % 10}", "linestyle": dashes[(index // 10) % len(dashes)]}


def _save(axes: Any, path: Path) -> None:
    """Put the legend right of the axes and write their figure to `path`."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    axes.figure.savefig(path, dpi=110)


def plot_learning_curves(groups: Sequence[Group], metric: str, env: str, path: Path, seed: int) -> bool:
    """Metric vs env steps, one line per group: mean over completed seeds with a 95% bootstrap
    band. Returns False (and writes nothing) when no group has data."""
    axes = _new_axes(width=12.0, height=6.0)
    drawn = 0
    for group in groups:
        series = group.completed_series(metric)
        if not series:
            continue
        steps, values = curve_matrix(series)
        style = _line_style(drawn)
        axes.plot(steps, values.mean(axis=0), label=f"{group.ident} {group.label.text()} (n={len(series)})", **style)
        low, high = bootstrap_ci(values, np.mean, seed)
        if not np.isnan(low).all():
            axes.fill_between(steps, low, high, color=style["color"], alpha=0.15, linewidth=0)
        drawn += 1
    if not drawn:
        return False
    axes.set(title=f"{env}: {metric}, mean over seeds with 95% bootstrap CI", xlabel="env steps", ylabel=metric)
    _save(axes, path)
    return True


def constant_temperature_series(summaries: Sequence[GroupSummary]) -> dict[str, list[GroupSummary]]:
    """Groups with a constant temperature, by label without temperature, sorted by temperature;
    empty unless they span at least two temperatures."""
    constant = [
        s
        for s in summaries
        if s.group.label.schedule == CONSTANT_SCHEDULE
        and len(s.finals)
        and isinstance(s.group.config.get("schedule.start"), (int, float))
    ]
    if len({s.group.config["schedule.start"] for s in constant}) < 2:
        return {}
    lines: dict[str, list[GroupSummary]] = {}
    for summary in sorted(constant, key=lambda s: s.group.config["schedule.start"]):
        lines.setdefault(summary.group.label.without_temperature(), []).append(summary)
    return lines


def plot_return_vs_temperature(summaries: Sequence[GroupSummary], metric: str, env: str, path: Path) -> bool:
    """Final return (IQM with 95% CI) vs constant temperature, one line per group without its
    temperature. Returns False (and writes nothing) unless groups differ by constant temperature."""
    lines = constant_temperature_series(summaries)
    if not lines:
        return False
    axes = _new_axes(width=10.0, height=5.5)
    for index, (name, points) in enumerate(lines.items()):
        temperatures = np.array([p.group.config["schedule.start"] for p in points], dtype=np.float64)
        centre = np.array([p.iqm for p in points])
        low = np.nan_to_num(centre - np.array([p.ci_low for p in points]))
        high = np.nan_to_num(np.array([p.ci_high for p in points]) - centre)
        axes.errorbar(
            temperatures, centre, yerr=np.stack([low, high]), marker="o", capsize=3, label=name, **_line_style(index)
        )
    if all(t > 0 for points in lines.values() for t in (p.group.config["schedule.start"] for p in points)):
        axes.set_xscale("log")
    axes.set(
        title=f"{env}: final {metric} vs constant temperature\nIQM over seeds with 95% bootstrap CI",
        xlabel="temperature τ (constant schedule)",
        ylabel=f"final {metric}",
    )
    _save(axes, path)
    return True


def plot_performance_profiles(methods: Mapping[str, Mapping[str, np.ndarray]], path: Path, seed: int) -> None:
    """Fraction of runs with normalised score > τ against τ, one line per method, with 95%
    stratified bootstrap bands."""
    pooled = np.concatenate([s for strata in methods.values() for s in strata.values()])
    thresholds = np.linspace(min(0.0, float(pooled.min())), max(1.0, float(pooled.max())), 101)
    axes = _new_axes(width=10.0, height=5.5)
    for index, (name, strata) in enumerate(methods.items()):
        curve, low, high = aggregate.profile_with_interval(list(strata.values()), thresholds, seed)
        style = _line_style(index)
        axes.plot(thresholds, curve, label=f"{name} ({len(strata)} envs)", **style)
        axes.fill_between(thresholds, low, high, color=style["color"], alpha=0.15, linewidth=0)
    axes.set(
        title="Performance profiles: fraction of runs with normalised final return > τ\n95% stratified bootstrap bands",
        xlabel="normalised score τ",
        ylabel="fraction of runs > τ",
        ylim=(0, 1.02),
    )
    _save(axes, path)
