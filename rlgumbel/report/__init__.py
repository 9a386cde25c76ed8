"""Sweep report: reads the runs of one or more sweeps and writes report.md, PNG plots and scalars.csv."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rlgumbel import aggregate
from rlgumbel.layout import EVAL_RETURN_GREEDY, FAILURE_FILE
from rlgumbel.report.grouping import group_runs
from rlgumbel.report.plots import plot_learning_curves, plot_performance_profiles, plot_return_vs_temperature
from rlgumbel.report.runs import (
    COMPLETED,
    FAILED,
    INCOMPLETE,
    SHARED,
    STATUSES,
    ReportError,
    Run,
    Series,
    find_run_dirs,
    load_run,
    load_sweep,
    read_config,
    read_events,
)
from rlgumbel.report.statistics import (
    BOOTSTRAP_RESAMPLES,
    GroupSummary,
    bootstrap_ci,
    final_value,
    iqm,
    median_steps,
    normalised_by_method,
    probability_of_improvement,
    steps_to_threshold,
    summarize_group,
)
from rlgumbel.report.tables import (
    CSV_COLUMNS,
    RUN_LIST_TITLES,
    across_envs_table,
    improvement_table,
    run_list,
    summary_table,
    write_tidy_csv,
)

__all__ = [
    "COMPLETED",
    "CSV_COLUMNS",
    "DEFAULT_METRIC",
    "FAILED",
    "FAILURE_FILE",
    "INCOMPLETE",
    "GroupSummary",
    "Report",
    "ReportError",
    "Series",
    "bootstrap_ci",
    "final_value",
    "find_run_dirs",
    "iqm",
    "load_run",
    "median_steps",
    "probability_of_improvement",
    "read_config",
    "read_events",
    "steps_to_threshold",
    "write_report",
]

DEFAULT_METRIC = EVAL_RETURN_GREEDY


@dataclass
class Report:
    """What `write_report` produced.

    Attributes:
        markdown: the report text (also written to `out_dir / "report.md"`).
        summaries: per env, the groups' statistics in table order.
        files: every file written.
    """

    markdown: str
    summaries: dict[str, list[GroupSummary]]
    files: list[Path]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _method_note(metric: str, seed: int) -> str:
    return (
        f"Final return: the last `{metric}` of each run. IQM: 25% trimmed mean across seeds; "
        f"95% CI: percentile bootstrap over seeds (scipy.stats.bootstrap, {BOOTSTRAP_RESAMPLES:,} resamples, "
        f"seed {seed}). Steps to threshold: median over seeds of the first env step at which `{metric}` "
        "reaches the threshold; a seed that never reaches it counts as never, so the median is "
        '"not reached" unless at least half of the seeds reach it. Only completed runs enter the '
        "statistics; failed (crashed, STATUS_FAILURE) and incomplete runs (no session end: still running, "
        "interrupted or killed) are listed and never averaged in."
    )


def env_section(
    env: str, summaries: list[GroupSummary], metric: str, out_dir: Path, seed: int, files: list[Path]
) -> str:
    """The Markdown section of one env: table, plots, improvement matrix, failed and incomplete
    runs. Plots are written to `out_dir`, their paths appended to `files`."""
    groups = [s.group for s in summaries]
    parts = [f"## {env}", "", summary_table(summaries), ""]
    curves = out_dir / f"learning_curves_{_slug(env)}.png"
    if plot_learning_curves(groups, metric, env, curves, seed):
        files.append(curves)
        parts += [f"![learning curves]({curves.name})", ""]
    temperature = out_dir / f"return_vs_temperature_{_slug(env)}.png"
    if plot_return_vs_temperature(summaries, metric, env, temperature):
        files.append(temperature)
        parts += [f"![return vs temperature]({temperature.name})", ""]
    if sum(1 for s in summaries if len(s.finals)) >= 2:
        parts += [
            "### Probability of improvement",
            "",
            "P(row's final return > column's) over pairs of seeds, ties counting 1/2.",
            "",
            improvement_table(summaries),
            "",
        ]
    for status, title in RUN_LIST_TITLES.items():
        listed = [run for group in groups for run in group.runs_with(status)]
        if listed:
            parts += [run_list(title, listed), ""]
    return "\n".join(parts)


def across_envs_section(
    summaries: dict[str, list[GroupSummary]], metric: str, out_dir: Path, seed: int, files: list[Path]
) -> str:
    """The Markdown section that aggregates each method over the envs (at least two) whose
    groups ran it: normalised final returns, IQM with a stratified bootstrap interval, and
    performance profiles. Empty when fewer than two envs have normalisable groups."""
    methods, skipped = normalised_by_method(summaries)
    if not methods:
        return ""
    parts = [
        "## Across envs",
        "",
        f"Normalised score: (final `{metric}` − `env.random_return`) / (`env.solved_return` − "
        "`env.random_return`), so 0 is the uniformly random policy and 1 the solved return. IQM over "
        "the pooled runs of every env a method ran in; 95% CI: percentile bootstrap resampling runs "
        f"within each env (stratified; {aggregate.RESAMPLES:,} resamples, seed {seed}). Agarwal et al. (2021).",
        "",
        across_envs_table(methods, seed),
        "",
    ]
    if skipped:
        parts += [f"Left out (no `env.random_return` to normalise by): {', '.join(sorted(set(skipped)))}.", ""]
    path = out_dir / "performance_profiles.png"
    plot_performance_profiles(methods, path, seed)
    files.append(path)
    parts += [f"![performance profiles]({path.name})", ""]
    return "\n".join(parts)


def _check_metric(runs: Sequence[Run], metric: str) -> None:
    if not any(metric in run.scalars for run in runs):
        tags = sorted({tag for run in runs for tag in run.scalars})
        raise ReportError(f"no run logged the metric {metric!r}; logged tags: {', '.join(tags) or 'none'}")


def _status_counts(runs: Sequence[Run]) -> str:
    """How many runs have each status ("shared" only when some run has it)."""
    return ", ".join(
        f"{sum(run.status == status for run in runs)} {status}"
        for status in STATUSES
        if status != SHARED or any(run.status == SHARED for run in runs)
    )


def write_report(
    sweep_dirs: Path | Sequence[Path],
    out_dir: Path | None = None,
    metric: str = DEFAULT_METRIC,
    threshold: float | None = None,
    seed: int = 0,
    csv_tags: Sequence[str] = ("",),
) -> Report:
    """Read one or more sweeps and write their report: report.md (tables), PNG plots and
    scalars.csv; with runs of two or more envs, also an aggregate across envs.

    Args:
        sweep_dirs: the sweep folder(s) (run folders up to two levels down).
        out_dir: where to write; default `<first sweep dir>/report`.
        metric: scalar tag whose last value is a run's final return.
        threshold: level for steps-to-threshold; None: each group's `env.solved_return`.
        seed: bootstrap seed (the report is reproducible for a given seed).
        csv_tags: tag prefixes kept in scalars.csv (default: every tag).
    Returns:
        The report.
    Raises:
        ReportError: no such folder, no runs in it, or no run logged `metric`.
    """
    sweep_dirs = (
        [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else list(dict.fromkeys(map(Path, sweep_dirs)))
    )
    runs = [run for sweep_dir in sweep_dirs for run in load_sweep(sweep_dir)]
    _check_metric(runs, metric)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dirs[0] / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    summaries: dict[str, list[GroupSummary]] = {}
    for group in groups:
        summaries.setdefault(group.env, []).append(summarize_group(group, metric, threshold, seed))
    files: list[Path] = []
    overview = f"{_count(len(runs), 'run')} in {_count(len(groups), 'group')}: {_status_counts(runs)}."
    sections = [f"# Report: {', '.join(str(d) for d in sweep_dirs)}", "", overview, "", _method_note(metric, seed), ""]
    sections += [
        env_section(env, env_summaries, metric, out_dir, seed, files) for env, env_summaries in summaries.items()
    ]
    sections.append(across_envs_section(summaries, metric, out_dir, seed, files))
    markdown = "\n".join(sections).rstrip() + "\n"
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    write_tidy_csv(groups, out_dir / "scalars.csv", csv_tags)
    files = [out_dir / "report.md", *files, out_dir / "scalars.csv"]
    return Report(markdown, summaries, files)
