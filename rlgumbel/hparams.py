"""Which hyperparameter columns TensorBoard's HParams dashboard shows when it opens a sweep.

The dashboard (the hparams plugin's query pane, `tf-hparams-query-pane`) ticks the first five
hparams of the experiment, after moving those flagged `differs` to the top; the plugin's backend
(`backend_context`) takes the experiment summary a run wrote as is and orders its hparams by
`(not differs, name)`. Unflagged, the dashboard opens on the alphabetically first five columns
(actor_lr … critic_lr), whatever the study varies. So each run flags, in the experiment summary
it writes, the hparams its Hydra multirun sweeps, then the columns every study here compares
(selector, schedule, temperatures) while there is room among the five.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlgumbel.names import option_name

# How many hparam columns the dashboard ticks when it opens (its kNumHParamsToDisplayByDefault).
COLUMNS_SHOWN = 5
# What the studies of this project compare: shown whenever the sweep's own columns leave room.
STUDY_COLUMNS = ("selector", "schedule", "temperature_start", "temperature_end")
HParamValue = float | int | str | bool
Reader = Callable[[DictConfig], HParamValue]


def _value(key: str, cast: Callable[[Any], HParamValue], default: Any = None) -> Reader:
    """Read `key` from a run's config as `cast`, `default` when it is absent or null."""

    def read(cfg: DictConfig) -> HParamValue:
        value = OmegaConf.select(cfg, key, default=None)
        return cast(default if value is None else value)

    return read


def _option(group: str) -> Reader:
    """The option name of a config group's class (`selector` → `gumbel_softmax`)."""
    return lambda cfg: option_name(cfg[group]._target_)


def _temperature_end(cfg: DictConfig) -> float:
    return float(cfg.schedule.get("end", cfg.schedule.start))  # a constant schedule ends where it starts


# Every hparam of a run: the config keys (or config groups) a sweep varies it through, and how it
# is read. One fixed set for every run, whatever its selector or schedule, so that a sweep's
# HParams table has the same columns.
HPARAMS: dict[str, tuple[tuple[str, ...], Reader]] = {
    "selector": (("selector",), _option("selector")),
    "selector_hard": (("selector.hard",), _value("selector.hard", bool, False)),
    "selector_samples": (("selector.samples",), _value("selector.samples", int, 1)),
    "schedule": (("schedule",), _option("schedule")),
    "temperature_start": (("schedule.start",), _value("schedule.start", float)),
    "temperature_end": (("schedule.end",), _temperature_end),
    "env": (("env", "env.id"), _value("env.id", str)),
    "num_envs": (("env.num_envs",), _value("env.num_envs", int)),
    "seed": (("seed",), _value("seed", int)),
    "critic_kind": (("agent.critic.kind",), _value("agent.critic.kind", str)),
    "critic_target": (("agent.critic_target",), _value("agent.critic_target", str)),
    "entropy_coef": (("agent.entropy_coef",), _value("agent.entropy_coef", float)),
    "target_entropy_fraction": (
        ("agent.target_entropy_fraction",),
        _value("agent.target_entropy_fraction", float, 0.0),
    ),
    "actor_lr": (("agent.actor.lr",), _value("agent.actor.lr", float)),
    "critic_lr": (("agent.critic.lr",), _value("agent.critic.lr", float)),
    "actor_update_every": (("agent.actor_update_every",), _value("agent.actor_update_every", int, 1)),
    "target_update_rate": (("agent.target_update_rate",), _value("agent.target_update_rate", float)),
    "gamma": (("agent.gamma",), _value("agent.gamma", float)),
    "batch_size": (("trainer.batch_size",), _value("trainer.batch_size", int)),
    "updates_per_round": (("trainer.updates_per_round",), _value("trainer.updates_per_round", int)),
    "update_every": (("trainer.update_every",), _value("trainer.update_every", int)),
    "total_steps": (("trainer.total_steps",), _value("trainer.total_steps", int)),
}
CONFIG_KEYS = {name: keys for name, (keys, _) in HPARAMS.items()}


def hparams(cfg: DictConfig) -> dict[str, HParamValue]:
    """The run's hyperparameters for the HParams dashboard, read from its composed config."""
    return {name: read(cfg) for name, (_, read) in HPARAMS.items()}


def swept_keys(overrides: Iterable[str]) -> list[str]:
    """The config keys that `overrides` sweep (`schedule.start=0.1,0.3`, `seed=range(5)`, …).

    `overrides` are in the order Hydra's basic sweeper reads them (the sweeper's `params`, then
    the command line), and the last override of a key wins, as in the sweeper: a fixed
    `schedule.start=0.5` on the command line replaces a preset's sweep over it.
    """
    sweeping = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        sweeping[override.key_or_group] = override.is_sweep_override()
    return [key for key, swept in sweeping.items() if swept]


def multirun_overrides() -> list[str]:
    """The overrides that define the current Hydra multirun: its sweeper's `params` (set by an
    experiment preset), then the command line's.

    A job's own config holds only its own values (`schedule.start=0.5`), so they are read from
    the `multirun.yaml` that Hydra writes into the sweep folder before it starts any job. Empty
    outside a multirun (a single run, a test) and when that file cannot be read: the columns a
    dashboard opens on are no reason to stop a run.
    """
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    try:
        hydra = yaml.safe_load((Path(HydraConfig.get().sweep.dir) / "multirun.yaml").read_text())["hydra"]
        params = hydra["sweeper"].get("params") or {}
        return [f"{key}={value}" for key, value in params.items()] + list(hydra["overrides"]["task"])
    except (OSError, OmegaConfBaseException, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return []


def columns_to_show(names: Iterable[str], swept: Iterable[str]) -> list[str]:
    """The hparams among `names` to flag `differs`, so that the dashboard shows them first.

    Those a sweep over the config keys `swept` varies, all of them, then the study columns while
    fewer than COLUMNS_SHOWN are flagged: a swept hparam is never pushed out of the first five.
    """
    names, swept = list(names), set(swept)
    varied = [name for name in names if swept.intersection(CONFIG_KEYS.get(name, ()))]
    study = [name for name in STUDY_COLUMNS if name in names and name not in varied]
    return varied + study[: max(0, COLUMNS_SHOWN - len(varied))]


def columns_to_show_in_this_run(names: Iterable[str]) -> list[str]:
    """`columns_to_show` for the current Hydra job: the keys its multirun sweeps, or none."""
    return columns_to_show(names, swept_keys(multirun_overrides()))
