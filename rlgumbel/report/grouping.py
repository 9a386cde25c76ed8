"""Grouping runs: the seeds of one config form a group, named by a readable label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlgumbel import layout
from rlgumbel.names import option_name
from rlgumbel.report.runs import COMPLETED, Run, Series

# Keys that the readable part of a group's label already shows.
LABELLED_KEYS = frozenset(
    {"selector._target_", "selector.hard", "schedule._target_", "schedule.start", "schedule.end", "env.id"}
)
_MISSING = object()


def group_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What makes runs seeds of one group: the config without seed and run-management keys."""
    return tuple(sorted((key, value) for key, value in config.items() if key not in layout.RUN_MANAGEMENT_KEYS))


def format_value(value: Any) -> str:
    """A config value as the labels and tables show it: `true`, `0.001`, `CartPole-v1`."""
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
        return [f"{key}={format_value(value)}" for key, value in self.extras]

    def text(self) -> str:
        return ", ".join([self.selector, f"{self.schedule} {self.temperature}", *self._extras_text()])

    def without_temperature(self) -> str:
        """The label with the temperature left out: names a line of the return-vs-temperature plot."""
        return ", ".join([self.selector, *self._extras_text()])


def method_name(label: Label) -> str:
    """A group's label without the keys that only tell its env's groups apart: what the same
    method is called in every env (selector, schedule and temperatures)."""
    return f"{label.selector}, {label.schedule} {label.temperature}".rstrip()


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
        return f"τ={format_value(start)}"
    return f"τ {format_value(start)}→{format_value(end)}"


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys beyond those the label shows that tell the given group configs apart.

    A key counts when the groups that have it disagree on its value, or when groups with one
    readable label disagree on whether they have it (so that no two labels coincide).
    Selector- or schedule-specific keys that are constant where present (argmax's ε schedule)
    stay out of the labels.
    """
    keys = sorted({key for config in configs for key in config} - LABELLED_KEYS - layout.RUN_MANAGEMENT_KEYS)
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

    def completed_series(self, metric: str) -> list[Series]:
        """The metric of each completed run that logged it, in run order."""
        return [run.scalars[metric] for run in self.runs_with(COMPLETED) if metric in run.scalars]


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, format_value(value))


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
