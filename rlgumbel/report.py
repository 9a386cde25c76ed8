"""Sweep report: event files → tidy data → tables and plots.

A sweep folder holds run folders (found by their `.hydra/config.yaml`, at most two levels
down). Runs are grouped by their resolved config minus the seed and run-management keys;
each group's seeds give the statistics of the report:

- final return: the last value of the metric (default `charts/eval_return_greedy`) per run;
  its mean and its IQM (interquartile mean, `scipy.stats.trim_mean(x, 0.25)`) across seeds,
  with a 95% percentile bootstrap confidence interval (`scipy.stats.bootstrap`, fixed seed).
  The bootstrap is stratified in the sense of Agarwal et al. (2021, "Deep RL at the edge of
  the statistical precipice"): seeds are resampled within their group, and a group holds a
  single env, so each group is one stratum.
- steps to threshold: per run the first env step at which the metric reaches the threshold
  (default the run's `env.solved_return`); the group's median counts a run that never reaches
  it as +∞, so the median is finite only when at least half of the seeds reach it.
- probability of improvement P(X > Y) between two groups: the fraction of seed pairs in which
  X's final return beats Y's, ties counting one half (the Mann-Whitney U statistic / (n·m)).

Only completed runs (HParams session end STATUS_SUCCESS) enter the statistics. Failed runs
(STATUS_FAILURE: the run crashed) and incomplete runs (no session end: still running,
interrupted or killed) are listed by name and never averaged in, as are run folders that
several runs of a sweep logged into (status SHARED).

Event files are read with a small TFRecord reader (`read_records`) instead of TensorBoard's
`EventAccumulator`: TensorBoard without TensorFlow checks CRCs in pure Python, which made it
~7x slower on a 100-run sweep (see benchmarks/report_speed.py).
"""

from __future__ import annotations

import csv
import math
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from google.protobuf.message import DecodeError
from omegaconf import OmegaConf
from scipy import stats
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.metadata import SESSION_END_INFO_TAG, SESSION_START_INFO_TAG
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from tensorboard.util import tensor_util

from rlgumbel import aggregate
from rlgumbel.names import option_name

DEFAULT_METRIC = "charts/eval_return_greedy"
# Keys that say how a run was managed, not what was trained; with the seed, they never split groups.
RUN_MANAGEMENT_KEYS = frozenset({"seed", "resume", "device", "num_threads", "experiment_name", "trainer.progress"})
# Keys that the readable part of a group's label already shows.
LABELLED_KEYS = frozenset(
    {"selector._target_", "selector.hard", "schedule._target_", "schedule.start", "schedule.end", "env.id"}
)
CONSTANT_SCHEDULE = "constant"
COMPLETED, FAILED, INCOMPLETE = "completed", "failed", "incomplete"
SHARED = "shared"  # several runs logged into one folder (more than one HParams session start)
STATUSES = (COMPLETED, FAILED, INCOMPLETE, SHARED)
CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_METHOD = "percentile"
BOOTSTRAP_BATCH = 1_000  # resamples per vectorised batch: bounds memory for long learning curves
CURVE_POINTS = 100  # grid size when a group's runs logged the metric at different steps
CSV_COLUMNS = ("run", "group", "seed", "env", "tag", "step", "value", "status")
_RECORD_HEADER = struct.Struct("<Q")
_MISSING = object()


class ReportError(ValueError):
    """The sweep cannot be reported on (no runs, unknown metric); the message says why."""


# --------------------------------------------------------------------------- reading runs


@dataclass
class Series:
    """One scalar tag of one run, in the order it was logged.

    Attributes:
        steps: [N] env steps.
        values: [N] values.
    """

    steps: np.ndarray
    values: np.ndarray


@dataclass
class EventData:
    """What a run's event files hold: its scalars and how its last session ended."""

    scalars: dict[str, Series]
    status: str


@dataclass
class Run:
    """One run folder of a sweep.

    Attributes:
        path: the run folder.
        name: the run folder relative to the sweep folder.
        config: the resolved config, flattened to dotted keys (`schedule.start`).
        status: COMPLETED, FAILED, INCOMPLETE or SHARED.
        scalars: tag → logged values.
    """

    path: Path
    name: str
    config: dict[str, Any]
    status: str
    scalars: dict[str, Series]

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def env(self) -> str:
        return str(self.config.get("env.id", "unknown env"))

    @property
    def last_step(self) -> int | None:
        """The last env step any scalar was logged at (None if nothing was logged)."""
        ends = [int(series.steps.max()) for series in self.scalars.values() if len(series.steps)]
        return max(ends, default=None)


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Run folders of a sweep: the folder itself, its children and grandchildren that hold a
    `.hydra/config.yaml`, sorted by path.

    Args:
        sweep_dir: the sweep (or a single run) folder.
    Returns:
        The run folders.
    """
    patterns = (".hydra/config.yaml", "*/.hydra/config.yaml", "*/*/.hydra/config.yaml")
    found = {path.parent.parent for pattern in patterns for path in Path(sweep_dir).glob(pattern)}
    return sorted(found)


def flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → {dotted key: value}; lists become tuples so that values are hashable.

    An empty mapping (`env.kwargs: {}`) leaves no key.
    """
    flat: dict[str, Any] = {}
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = _hashable(value)
    return flat


def _hashable(value: Any) -> Any:
    """Lists → tuples and mappings → sorted item tuples, all the way down."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, Mapping):
        return tuple(sorted((key, _hashable(item)) for key, item in value.items()))
    return value


class _ConfigLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader with OmegaConf's scalar rules: `1e-3` is a float, no timestamps."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:
     [-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
    |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _ConfigLoader.yaml_implicit_resolvers.items()
}


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run's resolved config (`.hydra/config.yaml`), flattened to dotted keys.

    Hydra saves the composed config with its interpolations; those are resolved with OmegaConf.
    Configs without any are parsed by libyaml alone, ten times faster than `OmegaConf.load`.
    """
    text = (run_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8")
    container = yaml.load(text, Loader=_ConfigLoader) or {}
    if "${" in text:
        container = OmegaConf.to_container(OmegaConf.create(container), resolve=True)
    return flatten(container)


def read_records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file (an event file) as serialized `Event` protos.

    Stops at a truncated last record, as a killed writer leaves one. CRCs are not checked
    (pure-Python CRC32C would dominate the report's run time); a corrupt record surfaces as a
    protobuf decode error, and `_decode` keeps the events before it.

    Args:
        path: the event file.
    Yields:
        One serialized `Event` per record.
    """
    data = path.read_bytes()
    position, end = 0, len(data)
    while position + 12 <= end:  # 8 bytes length, 4 bytes its CRC
        (length,) = _RECORD_HEADER.unpack_from(data, position)
        start = position + 12
        stop = start + length
        if stop + 4 > end:  # data and its 4-byte CRC
            return
        yield data[start:stop]
        position = stop + 4


def _decode(path: Path) -> list[Event]:
    """The events of one file, up to a truncated or corrupt record."""
    events = []
    try:
        for record in read_records(path):
            events.append(Event.FromString(record))
    except DecodeError:
        pass  # a corrupt record: keep what was read before it
    return events


def events_in_write_order(tb_dir: Path) -> Iterator[Event]:
    """The events of every event file in `tb_dir`, file after file in the order they were
    written (by the wall time of each file's first event: names hold whole seconds only)."""
    files = [
        (events[0].wall_time, path.name, events)
        for path in tb_dir.glob("events.out.tfevents.*")
        if (events := _decode(path))
    ]
    for _, _, events in sorted(files, key=lambda file: file[:2]):
        yield from events


def _session_end_status(value: Any) -> str:
    status = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_end_info.status
    return {api_pb2.STATUS_SUCCESS: COMPLETED, api_pb2.STATUS_FAILURE: FAILED}.get(status, INCOMPLETE)


def _scalar(value: Any) -> float | None:
    """The float of a scalar summary value (torch writes simple_value; TF2 writes tensors)."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return value.simple_value
    if kind == "tensor" and value.metadata.plugin_data.plugin_name == "scalars":
        return float(tensor_util.make_ndarray(value.tensor).item())
    return None


def read_events(tb_dir: Path) -> EventData:
    """All scalars of a run's event files and the status of its last session.

    Follows TensorBoard's semantics for resumed runs: a `SessionLog.START` at step s (written
    by a SummaryWriter with `purge_step=s`) discards what earlier files logged at steps >= s,
    and starts a new session, whose HParams session end decides the status. A resumed run
    writes no second HParams session start; more than one means that several runs wrote into
    this folder (runs of a sweep that Hydra gave the same output folder).

    Args:
        tb_dir: the run's `tb/` folder (may be missing: nothing logged yet).
    Returns:
        The scalars by tag and the status (INCOMPLETE when no session end follows the last start,
        SHARED when several runs logged here).
    """
    logged: dict[str, list[tuple[int, float]]] = {}
    status, hparams_sessions = INCOMPLETE, 0
    for event in events_in_write_order(tb_dir) if tb_dir.is_dir() else []:
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            logged = {tag: [p for p in points if p[0] < event.step] for tag, points in logged.items()}
            status = INCOMPLETE
            continue
        for value in event.summary.value:
            if value.tag == SESSION_END_INFO_TAG:
                status = _session_end_status(value)
                continue
            hparams_sessions += value.tag == SESSION_START_INFO_TAG
            scalar = _scalar(value)
            if scalar is not None:
                logged.setdefault(value.tag, []).append((event.step, scalar))
    if hparams_sessions > 1:
        status = SHARED
    scalars = {
        tag: Series(
            np.array([p[0] for p in points], dtype=np.int64), np.array([p[1] for p in points], dtype=np.float64)
        )
        for tag, points in logged.items()
    }
    return EventData(scalars, status)


FAILURE_FILE = "error.txt"  # written by rlgumbel-train into a run folder whose run failed


def load_run(run_dir: Path, sweep_dir: Path) -> Run:
    """Read one run folder: its config and its event files. A run that left an `error.txt`
    failed, even if it failed before writing any event."""
    events = read_events(run_dir / "tb")
    name = run_dir.relative_to(sweep_dir).as_posix() if run_dir != sweep_dir else run_dir.name
    status = FAILED if (run_dir / FAILURE_FILE).is_file() else events.status
    return Run(run_dir, name, read_config(run_dir), status, events.scalars)


def load_sweep(sweep_dir: Path) -> list[Run]:
    """Every run of a sweep.

    Raises:
        ReportError: the folder does not exist or holds no run.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: no such folder")
    run_dirs = find_run_dirs(sweep_dir)
    if not run_dirs:
        raise ReportError(f"{sweep_dir}: no runs found (no <run>/.hydra/config.yaml up to two levels down)")
    return [load_run(run_dir, sweep_dir) for run_dir in run_dirs]


# --------------------------------------------------------------------------- grouping


def group_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What makes runs seeds of one group: the config without seed and run-management keys."""
    return tuple(sorted((key, value) for key, value in config.items() if key not in RUN_MANAGEMENT_KEYS))


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Label:
    """A group's readable name: selector, schedule with its temperatures, other differing keys."""

    selector: str
    schedule: str
    temperature: str
    extras: tuple[tuple[str, Any], ...] = ()  # (dotted key, value)

    def _extras_text(self) -> list[str]:
        return [f"{key}={_format_value(value)}" for key, value in self.extras]

    def text(self) -> str:
        return ", ".join([self.selector, f"{self.schedule} {self.temperature}", *self._extras_text()])

    def without_temperature(self) -> str:
        """The label with the temperature left out: names a line of the return-vs-temperature plot."""
        return ", ".join([self.selector, *self._extras_text()])


def _selector_text(config: Mapping[str, Any]) -> str:
    name = option_name(str(config.get("selector._target_", "unknown")))
    if "selector.hard" in config:
        name += " (hard)" if config["selector.hard"] else " (soft)"
    return name


def _temperature_text(config: Mapping[str, Any]) -> str:
    start, end = config.get("schedule.start"), config.get("schedule.end", _MISSING)
    if start is None:
        return ""
    if end is _MISSING:
        return f"τ={_format_value(start)}"
    return f"τ {_format_value(start)}→{_format_value(end)}"


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys beyond those the label shows that tell the given group configs apart.

    A key counts when the groups that have it disagree on its value, or when groups with one
    readable label disagree on whether they have it (so that no two labels coincide).
    Selector- or schedule-specific keys that are constant where present (argmax's ε schedule)
    stay out of the labels.
    """
    keys = sorted({key for config in configs for key in config} - LABELLED_KEYS - RUN_MANAGEMENT_KEYS)
    by_label: dict[Label, list[Mapping[str, Any]]] = {}
    for config in configs:
        by_label.setdefault(make_label(config, ()), []).append(config)
    chosen = []
    for key in keys:
        values = {config[key] for config in configs if key in config}
        presence_differs = any(len({key in config for config in same}) > 1 for same in by_label.values())
        if len(values) > 1 or presence_differs:
            chosen.append(key)
    return chosen


def make_label(config: Mapping[str, Any], extra_keys: Sequence[str]) -> Label:
    """The readable label of a group's config, with `extra_keys` as `key=value`."""
    extras = tuple((key, config[key]) for key in extra_keys if key in config)
    schedule = option_name(str(config.get("schedule._target_", "unknown")))
    return Label(_selector_text(config), schedule, _temperature_text(config), extras)


@dataclass
class Group:
    """Runs that differ only by seed (and run management).

    Attributes:
        env: the env id of the group's runs.
        label: the readable label.
        config: the config of the group's first run (seed included).
        runs: every run of the group, whatever its status.
        ident: short name in tables, "G1", "G2", … per env.
    """

    env: str
    label: Label
    config: dict[str, Any]
    runs: list[Run]
    ident: str = ""

    def runs_with(self, status: str) -> list[Run]:
        return [run for run in self.runs if run.status == status]


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, _format_value(value))


def _group_order(group: Group) -> tuple:
    config = group.config
    return (
        group.env,
        group.label.selector,
        group.label.schedule,
        _sortable(config.get("schedule.start")),
        _sortable(config.get("schedule.end")),
        tuple((key, _sortable(value)) for key, value in group.label.extras),
    )


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Split runs into groups, labelled per env, sorted by env, selector, schedule, temperatures.

    Args:
        runs: the runs of a sweep.
    Returns:
        The groups; their `ident` numbers restart at G1 in each env.
    """
    by_key: dict[tuple, list[Run]] = {}
    for run in runs:
        by_key.setdefault(group_key(run.config), []).append(run)
    by_env: dict[str, list[list[Run]]] = {}
    for members in by_key.values():
        by_env.setdefault(members[0].env, []).append(members)
    groups = []
    for env, env_groups in by_env.items():
        extra_keys = differing_keys([group_config(members) for members in env_groups])
        groups += [
            Group(env, make_label(members[0].config, extra_keys), members[0].config, members) for members in env_groups
        ]
    groups.sort(key=_group_order)
    for env in {group.env for group in groups}:
        for number, group in enumerate((g for g in groups if g.env == env), start=1):
            group.ident = f"G{number}"
    return groups


def group_config(members: Sequence[Run]) -> dict[str, Any]:
    """The config shared by a group's runs (run-management keys removed)."""
    return dict(group_key(members[0].config))


# --------------------------------------------------------------------------- statistics


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the 25% trimmed mean along `axis` (Agarwal et al. 2021)."""
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_ci(values: np.ndarray, statistic: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap confidence interval of `statistic` over seeds (axis 0).

    Args:
        values: [S] or [S, T] values of S seeds (at T steps).
        statistic: vectorised statistic `f(x, axis)`, e.g. `iqm` or `np.mean`.
        seed: seeds a fresh numpy Generator, so every interval is reproducible on its own.
    Returns:
        (low, high), each of shape values.shape[1:]; NaN with fewer than two seeds.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] < 2:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan
    result = stats.bootstrap(
        (values,),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        batch=BOOTSTRAP_BATCH,
        vectorized=True,
        axis=0,
        confidence_level=CONFIDENCE_LEVEL,
        method=BOOTSTRAP_METHOD,
        rng=np.random.default_rng(seed),
    )
    return result.confidence_interval.low, result.confidence_interval.high


def steps_to_threshold(series: Series, threshold: float) -> int | None:
    """The first env step at which the series reaches `threshold` (None if it never does)."""
    reached = np.flatnonzero(series.values >= threshold)
    return int(series.steps[reached[0]]) if len(reached) else None


def median_steps(steps: Sequence[int | None]) -> float:
    """Median over seeds, a seed that never reached the threshold (None) counting as +∞."""
    if not steps:
        return math.nan
    return float(np.median([math.inf if s is None else s for s in steps]))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over all pairs of a seed of X and a seed of Y, ties counting 1/2.

    Args:
        x: [N] final returns of one group; y: [M] of another.
    Returns:
        The Mann-Whitney U statistic of x divided by N·M.
    """
    x, y = np.asarray(x)[:, None], np.asarray(y)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def final_value(series: Series) -> float:
    """The last value logged (at the largest step; the later one if logged twice there)."""
    last = np.flatnonzero(series.steps == series.steps.max())[-1]
    return float(series.values[last])


@dataclass
class GroupSummary:
    """The statistics of one group's completed runs (the rows of the report's table).

    Attributes:
        group: the group.
        finals: [S] final metric value per completed seed with data, in run order.
        mean, iqm, ci_low, ci_high: of `finals` (NaN when empty; CI NaN under two seeds).
        threshold: the steps-to-threshold level (None: no threshold known).
        steps: per completed seed, the first step reaching the threshold, or None.
        median_steps: median of `steps`, not-reached counting +∞.
    """

    group: Group
    finals: np.ndarray
    mean: float
    iqm: float
    ci_low: float
    ci_high: float
    threshold: float | None
    steps: list[int | None] = field(default_factory=list)
    median_steps: float = math.nan

    @property
    def reached(self) -> int:
        return sum(s is not None for s in self.steps)


def threshold_of(group: Group, threshold: float | None) -> float | None:
    """The given threshold, else the group's `env.solved_return` (None if neither is set)."""
    if threshold is not None:
        return threshold
    solved = group.config.get("env.solved_return")
    if solved is None or (isinstance(solved, float) and math.isnan(solved)):
        return None
    return float(solved)


def summarize_group(group: Group, metric: str, threshold: float | None, seed: int) -> GroupSummary:
    """Final-return statistics and steps to threshold of a group's completed runs.

    Args:
        group: the group.
        metric: the scalar tag whose last value is a run's final return.
        threshold: the level for steps-to-threshold (None: the group's env.solved_return).
        seed: bootstrap seed.
    Returns:
        The summary.
    """
    series = [run.scalars[metric] for run in group.runs_with(COMPLETED) if metric in run.scalars]
    finals = np.array([final_value(s) for s in series], dtype=np.float64)
    level = threshold_of(group, threshold)
    steps = [steps_to_threshold(s, level) for s in series] if level is not None else []
    if len(finals) == 0:
        return GroupSummary(group, finals, math.nan, math.nan, math.nan, math.nan, level, steps)
    low, high = bootstrap_ci(finals, iqm, seed)
    return GroupSummary(
        group,
        finals,
        float(finals.mean()),
        float(iqm(finals)),
        float(low),
        float(high),
        level,
        steps,
        median_steps(steps) if level is not None else math.nan,
    )


# --------------------------------------------------------------------------- tables


def _number(value: float, digits: int = 1) -> str:
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
        return f"{_number(summary.iqm)} (one seed: no CI)"
    return f"{_number(summary.iqm)} [{_number(summary.ci_low)}, {_number(summary.ci_high)}]"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    separator = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def _threshold_header(summaries: Sequence[GroupSummary]) -> str:
    levels = {s.threshold for s in summaries if s.threshold is not None}
    if len(levels) == 1:
        return f"median env steps to ≥ {_format_value(levels.pop())}"
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
            _number(s.mean),
            _iqm_cell(s),
            _steps_cell(s),
            *(str(len(s.group.runs_with(status))) for status in excluded),
        ]
        for s in summaries
    ]
    return _markdown_table(header, rows, "ll" + "r" * (len(header) - 2))


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
    return _markdown_table(header, rows, "l" + "r" * len(present))


RUN_LIST_TITLES = {
    FAILED: "Failed runs (crashed: STATUS_FAILURE; excluded from the statistics)",
    INCOMPLETE: "Incomplete runs (no session end: still running, interrupted or killed; excluded from the statistics)",
    SHARED: (
        "Run folders shared by several runs (more than one HParams session in one tb/ folder: Hydra gave "
        "runs of the sweep the same output folder, so scalars are mixed and .hydra/config.yaml is the last "
        "run's; excluded from the statistics)"
    ),
}


def _run_list(title: str, runs: Sequence[Run]) -> str:
    lines = [f"**{title}**", ""]
    for run in runs:
        last = run.last_step
        where = f"last logged env step {last:,}" if last is not None else "nothing logged"
        lines.append(f"- `{run.name}` (seed {run.seed}, {where})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


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


def _new_figure(width: float = 8.0, height: float = 5.0) -> Any:
    # A Figure with an explicit Agg canvas: no pyplot, so no global backend state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _line_style(index: int) -> dict[str, str]:
    """Colour and dash of the index-th line: ten colours, then the same ten dashed, dotted, …"""
    dashes = ("-", "--", ":", "-.")
    return {"color": f"C{index % 10}", "linestyle": dashes[(index // 10) % len(dashes)]}


def _legend_outside(axes: Any) -> None:
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def plot_learning_curves(groups: Sequence[Group], metric: str, env: str, path: Path, seed: int) -> bool:
    """Metric vs env steps, one line per group: mean over completed seeds with a 95% bootstrap
    band. Returns False (and writes nothing) when no group has data."""
    figure = _new_figure(width=12.0, height=6.0)
    axes = figure.add_subplot()
    drawn = 0
    for group in groups:
        series = [run.scalars[metric] for run in group.runs_with(COMPLETED) if metric in run.scalars]
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
    _legend_outside(axes)
    figure.savefig(path, dpi=110)
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
    figure = _new_figure(width=10.0, height=5.5)
    axes = figure.add_subplot()
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
    _legend_outside(axes)
    figure.savefig(path, dpi=110)
    return True


# --------------------------------------------------------------------------- tidy data


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


# --------------------------------------------------------------------------- the report


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
            parts += [_run_list(title, listed), ""]
    return "\n".join(parts)


def method_name(label: Label) -> str:
    """A group's label without the keys that only tell its env's groups apart: what the same
    method is called in every env (selector, schedule and temperatures)."""
    return f"{label.selector}, {label.schedule} {label.temperature}".rstrip()


def _random_and_solved(group: Group) -> tuple[float, float] | None:
    random_return, solved = group.config.get("env.random_return"), group.config.get("env.solved_return")
    if random_return is None or solved is None or float(random_return) == float(solved):
        return None
    return float(random_return), float(solved)


def across_envs_section(
    summaries: dict[str, list[GroupSummary]], metric: str, out_dir: Path, seed: int, files: list[Path]
) -> str:
    """The Markdown section that aggregates each method over the envs (at least two) whose
    groups ran it: normalised final returns, IQM with a stratified bootstrap interval, and
    performance profiles. Empty when fewer than two envs have normalisable groups."""
    by_method: dict[str, dict[str, np.ndarray]] = {}
    skipped = []
    for env, env_summaries in summaries.items():
        for summary in env_summaries:
            scale = _random_and_solved(summary.group)
            if scale is None:
                skipped.append(env)
                continue
            if len(summary.finals):
                scores = aggregate.normalised_scores(summary.finals, *scale)
                by_method.setdefault(method_name(summary.group.label), {})[env] = scores
    methods = {name: strata for name, strata in by_method.items() if len(strata) >= 2}
    if not methods:
        return ""
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
                f"{_number(float(aggregate.pooled_iqm(pooled)), 2)} [{_number(low, 2)}, {_number(high, 2)}]",
                _number(float(pooled.mean()), 2),
            ]
        )
    parts = [
        "## Across envs",
        "",
        f"Normalised score: (final `{metric}` − `env.random_return`) / (`env.solved_return` − "
        "`env.random_return`), so 0 is the uniformly random policy and 1 the solved return. IQM over "
        "the pooled runs of every env a method ran in; 95% CI: percentile bootstrap resampling runs "
        f"within each env (stratified; {aggregate.RESAMPLES:,} resamples, seed {seed}). Agarwal et al. (2021).",
        "",
        _markdown_table(header, rows, "lrrrr"),
        "",
    ]
    if skipped:
        parts += [f"Left out (no `env.random_return` to normalise by): {', '.join(sorted(set(skipped)))}.", ""]
    path = out_dir / "performance_profiles.png"
    plot_performance_profiles(methods, path, seed)
    files.append(path)
    parts += [f"![performance profiles]({path.name})", ""]
    return "\n".join(parts)


def plot_performance_profiles(methods: Mapping[str, Mapping[str, np.ndarray]], path: Path, seed: int) -> None:
    """Fraction of runs with normalised score > τ against τ, one line per method, with 95%
    stratified bootstrap bands."""
    pooled = np.concatenate([s for strata in methods.values() for s in strata.values()])
    thresholds = np.linspace(min(0.0, float(pooled.min())), max(1.0, float(pooled.max())), 101)
    figure = _new_figure(width=10.0, height=5.5)
    axes = figure.add_subplot()
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
    _legend_outside(axes)
    figure.savefig(path, dpi=110)


def _check_metric(runs: Sequence[Run], metric: str) -> None:
    if not any(metric in run.scalars for run in runs):
        tags = sorted({tag for run in runs for tag in run.scalars})
        raise ReportError(f"no run logged the metric {metric!r}; logged tags: {', '.join(tags) or 'none'}")


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
    counts = ", ".join(
        f"{sum(run.status == status for run in runs)} {status}"
        for status in STATUSES
        if status != SHARED or any(run.status == SHARED for run in runs)
    )
    overview = f"{_count(len(runs), 'run')} in {_count(len(groups), 'group')}: {counts}."
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
