"""Compose a command line's configs before Hydra runs it, so that a bad option is one line.

Hydra reports a config-group option that does not exist, an unknown key or a bad launcher with a
multi-line message and its own exit code. `check_command_line` composes the config the way
`rlgumbel-train` would (each value of a sweep once), checks it against the schema
(rlgumbel/schema.py), and turns the first error into one line naming the key.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from rlgumbel.schema import ConfigError, unknown_key, validate


def check_command_line(argv: list[str], config_dir: str, config_name: str) -> str | None:
    """The first composition error of `argv` as one line (`error: ...`), or None if every job
    of the command line composes. Flags Hydra handles itself (`--help`, `--cfg`, ...) are left
    to Hydra, except `--config-dir`, whose folder joins the search path as it would there."""
    overrides, extra_dirs = [], []
    arguments = iter(argv)
    for argument in arguments:
        if argument in ("--config-dir", "-cd"):
            extra_dirs.append(str(Path(next(arguments, ".")).resolve()))
        elif argument.startswith("--config-dir="):
            extra_dirs.append(str(Path(argument.partition("=")[2]).resolve()))
        elif argument in ("-m", "--multirun"):
            continue
        elif argument.startswith("-"):
            return None  # --help, --cfg, --info, ...: Hydra's own business
        else:
            overrides.append(argument)
    if extra_dirs:
        overrides.append("hydra.searchpath=[" + ",".join(f"file://{d}" for d in extra_dirs) + "]")
    try:
        jobs = _one_value_each(overrides)
    except OverrideParseException as error:
        return f"error: {_first_line(str(error))}"
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Hydra warns again when it runs the command
        for job in jobs:
            try:
                validate(compose(config_name, overrides=job, return_hydra_config=True))
            except MissingConfigException as error:
                return _missing_option(error, job)
            except HydraException as error:
                return f"error: {_composition_error(error)}"
            except ConfigError as error:
                return f"error: {error}"
    return None


def _one_value_each(overrides: list[str]) -> list[list[str]]:
    """Command lines without sweeps that together use every value of every sweep once: the
    first values of all sweeps, then one line per further value of each sweep."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    first, variants = [], []
    for index, override in enumerate(parsed):
        text = overrides[index]
        if not override.is_sweep_override():
            first.append(text)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # interval sweeps (a sweeper's search space) have no values to list
            continue
        key = override.get_key_element()
        first.append(f"{key}={values[0]}")
        variants += [(len(first) - 1, f"{key}={value}") for value in values[1:]]
    jobs = [first]
    for position, replacement in variants:
        jobs.append([*first[:position], replacement, *first[position + 1 :]])
    return jobs


def _missing_option(error: MissingConfigException, job: list[str]) -> str:
    """`group=option is not an option of group; allowed: ...` for a config that does not exist."""
    missing = error.missing_cfg_file or ""
    group, _, option = missing.rpartition("/")
    if group and error.options is not None:
        argument = next((a for a in job if a.lstrip("+~").partition("=")[0] == group), f"{group}={option}")
        allowed = ", ".join(sorted(error.options)) or "none"
        return f"error: {argument.lstrip('+~')} is not an option of {group}; allowed: {allowed}"
    return f"error: {_first_line(str(error))}"


def _composition_error(error: HydraException) -> str:
    """A wrong type in an override (`schedule.start=warm`) as `key: what is wrong`, else Hydra's sentence."""
    cause = error.__cause__
    full_key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and full_key:
        return unknown_key(full_key, cause.object_type)
    if isinstance(cause, OmegaConfBaseException) and full_key:
        return f"{full_key}: {_first_line(str(cause))}"
    return _first_line(str(error))


def _first_line(message: str) -> str:
    """The sentence of a Hydra message, without its hints and search-path listing."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    kept = [
        line
        for line in lines
        if not line.startswith(
            (
                "Set the environment",
                "full_key",
                "object_type",
                "reference_type",
                "Config search path",
                "provider=",
                "Available options",
            )
        )
    ]
    return " ".join(kept[:2]) if kept else message.strip()
