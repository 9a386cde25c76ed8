"""Reading a sweep: its run folders, each run's config, scalars and how it ended."""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from google.protobuf.message import DecodeError
from omegaconf import OmegaConf
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.metadata import SESSION_END_INFO_TAG, SESSION_START_INFO_TAG
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from tensorboard.util import tensor_util

from rlgumbel import layout, schema

COMPLETED, FAILED, INCOMPLETE = "completed", "failed", "incomplete"
SHARED = "shared"  # several runs logged into one folder (more than one HParams session start)
STATUSES = (COMPLETED, FAILED, INCOMPLETE, SHARED)
_RECORD_HEADER = struct.Struct("<Q")


class ReportError(ValueError):
    """The sweep cannot be reported on (no runs, unknown metric); the message says why."""


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
    config_depth = len(Path(layout.CONFIG_FILE).parts)
    patterns = (layout.CONFIG_FILE, f"*/{layout.CONFIG_FILE}", f"*/*/{layout.CONFIG_FILE}")
    found = {path.parents[config_depth - 1] for pattern in patterns for path in Path(sweep_dir).glob(pattern)}
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
    text = (run_dir / layout.CONFIG_FILE).read_text(encoding="utf-8")
    container = yaml.load(text, Loader=_ConfigLoader) or {}
    if "${" in text:
        container = OmegaConf.to_container(OmegaConf.create(container), resolve=True)
    return {**_defaults_of_present_nodes(container), **flatten(container)}


@functools.cache
def _schema_defaults() -> dict[str, dict[str, Any]]:
    """The dotted defaults of the nodes that have one schema each, by node name."""
    return {
        "agent": flatten(asdict(schema.ActorCriticConfig()), "agent."),
        "trainer": flatten(asdict(schema.TrainerSettings()), "trainer."),
    }


def _defaults_of_present_nodes(container: Mapping[str, Any]) -> dict[str, Any]:
    """Schema defaults for the keys a config saved by an earlier version lacks.

    A key added later defaults to the behaviour from before it existed (resuming such a run types
    its config the same way), so an old run groups with new runs that leave the key at its default.
    """
    return {
        key: value
        for node, defaults in _schema_defaults().items()
        if node in container
        for key, value in defaults.items()
    }


def read_records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file (an event file) as serialized `Event` protos.

    Used instead of TensorBoard's `EventAccumulator`, which without TensorFlow checks CRCs in
    pure Python and made the report ~7x slower on a 100-run sweep (benchmarks/report_speed.py).
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


def load_run(run_dir: Path, sweep_dir: Path) -> Run:
    """Read one run folder: its config and its event files. A run that left an `error.txt`
    failed, even if it failed before writing any event."""
    events = read_events(run_dir / layout.TB_DIR)
    name = run_dir.relative_to(sweep_dir).as_posix() if run_dir != sweep_dir else run_dir.name
    status = FAILED if (run_dir / layout.FAILURE_FILE).is_file() else events.status
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
        raise ReportError(f"{sweep_dir}: no runs found (no <run>/{layout.CONFIG_FILE} up to two levels down)")
    return [load_run(run_dir, sweep_dir) for run_dir in run_dirs]
