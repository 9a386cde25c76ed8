"""The report's tables: Markdown tables of the statistics and run lists, and the tidy CSV of every scalar."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlgumbel import aggregate, layout
from rlgumbel.report.grouping import Group, format_value
from rlgumbel.report.runs import FAILED, INCOMPLETE, SHARED, Run
from rlgumbel.report.statistics import GroupSummary, probability_of_improvement

CSV_COLUMNS = ("run", "group", "seed", "env", "tag", "step", "value", "status")
RUN_LIST_TITLES = {
    FAILED: "Failed runs (crashed: STATUS_FAILURE; excluded from the statistics)",
    INCOMPLETE: "Incomplete runs (no session end: still running, interrupted or killed; excluded from the statistics)",
    SHARED: (
        f"Run folders shared by several runs (more than one HParams session in one {layout.TB_DIR}/ folder: Hydra gave "
        f"runs of the sweep the same output folder, so scalars are mixed and {layout.CONFIG_FILE} is the last "
        "run's; excluded from the statistics)"
    ),
}


def number(value: float, digits: int = 1) -> str:
    """`value` with thousands separators and `digits` decimals; "—" for NaN."""
    return "—" if math.isnan(value) else f"{value:,.{digits}f}"


def _steps_cell(summary: GroupSummary) -> str:
    if summary.threshold is None or not summary.steps:
        return "—"
    median = summary.median_steps
    shown = "not reached" if math.isinf(median) else f"{median:,.0f}"
    return f"{shown} ({summary.reached}/{len(summary.steps)} reached)"


def _iqm_cell(summary: GroupSummary) -> str:
    if math.isnan(summary.iqm):
        return "—"
    if math.isnan(summary.ci_low):
        return f"{number(summary.iqm)} (one seed: no CI)"
    return f"{number(summary.iqm)} [{number(summary.ci_low)}, {number(summary.ci_high)}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A Markdown table; `align` holds one letter per column, "r" for right-aligned."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    separator = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def _threshold_header(summaries: Sequence[GroupSummary]) -> str:
    levels = {s.threshold for s in summaries if s.threshold is not None}
    if len(levels) == 1:
        return f"median env steps to ≥ {format_value(levels.pop())}"
    return "median env steps to threshold"


def summary_table(summaries: Sequence[GroupSummary]) -> str:
    """Markdown table of one env's groups: final return (mean, IQM with CI), steps to
    threshold, seeds, and the runs left out: failed, incomplete (and shared, if any)."""
    excluded = [FAILED, INCOMPLETE] + ([SHARED] if any(s.group.runs_with(SHARED) for s in summaries) else [])
    header = ["id", "group", "seeds", "mean final return", "IQM [95% CI]", _threshold_header(summaries), *excluded]
    rows = [
        [
            s.group.ident,
            s.group.label.text(),
            str(len(s.finals)),
            number(s.mean),
            _iqm_cell(s),
            _steps_cell(s),
            *(str(len(s.group.runs_with(status))) for status in excluded),
        ]
        for s in summaries
    ]
    return markdown_table(header, rows, "ll" + "r" * (len(header) - 2))


def improvement_table(summaries: Sequence[GroupSummary]) -> str:
    """Markdown matrix of P(row > column) between the groups that have completed seeds."""
    present = [s for s in summaries if len(s.finals)]
    header = ["P(row > column)", *(s.group.ident for s in present)]
    rows = [
        [
            f"{row.group.ident} {row.group.label.text()}",
            *(
                "—" if row is column else f"{probability_of_improvement(row.finals, column.finals):.2f}"
                for column in present
            ),
        ]
        for row in present
    ]
    return markdown_table(header, rows, "l" + "r" * len(present))


def across_envs_table(methods: Mapping[str, Mapping[str, np.ndarray]], seed: int) -> str:
    """Markdown table of each method's normalised final returns pooled over its envs: IQM with a
    stratified bootstrap CI (seed `seed`), and mean."""
    header = ["method", "envs", "runs", "IQM of normalised final return [95% CI]", "mean normalised"]
    rows = []
    for name, strata in methods.items():
        pooled = np.concatenate(list(strata.values()))
        low, high = aggregate.stratified_interval(list(strata.values()), aggregate.pooled_iqm, seed)
        rows.append(
            [
                name,
                str(len(strata)),
                str(len(pooled)),
                f"{number(float(aggregate.pooled_iqm(pooled)), 2)} [{number(low, 2)}, {number(high, 2)}]",
                number(float(pooled.mean()), 2),
            ]
        )
    return markdown_table(header, rows, "lrrrr")


def run_list(title: str, runs: Sequence[Run]) -> str:
    """A bold title and one Markdown bullet per run: its name, seed and last logged step."""
    lines = [f"**{title}**", ""]
    for run in runs:
        last = run.last_step
        where = f"last logged env step {last:,}" if last is not None else "nothing logged"
        lines.append(f"- `{run.name}` (seed {run.seed}, {where})")
    return "\n".join(lines)


def tidy_rows(groups: Sequence[Group], tag_prefixes: Sequence[str] = ("",)) -> Iterator[tuple[Any, ...]]:
    """One row per logged scalar value of every run whose tag starts with one of
    `tag_prefixes` (all tags by default): CSV_COLUMNS."""
    for group in groups:
        label = group.label.text()
        for run in group.runs:
            for tag, series in run.scalars.items():
                if not tag.startswith(tuple(tag_prefixes)):
                    continue
                for step, value in zip(series.steps.tolist(), series.values.tolist()):
                    yield (run.name, label, run.seed, run.env, tag, step, value, run.status)


def write_tidy_csv(groups: Sequence[Group], path: Path, tag_prefixes: Sequence[str] = ("",)) -> None:
    """Write `tidy_rows` with a header to `path`."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(tidy_rows(groups, tag_prefixes))
