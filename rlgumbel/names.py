"""Names derived from config values: option names of classes and readable run folder names."""

from __future__ import annotations

import re


def option_name(target: str) -> str:
    """Config option name of a class path: `rlgumbel.selectors.GumbelSoftmaxSelector` → `gumbel_softmax`."""
    name = re.sub(r"(Selector|Schedule)$", "", target.rsplit(".", 1)[-1])
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def run_name(selector: str, hard: bool, schedule: str, start: float, seed: int) -> str:
    """A run's folder name: selector (`-hard` for straight-through), schedule, starting
    temperature and seed, e.g. `gumbel_softmax-hard_exponential_T1.0_seed3`."""
    hard_suffix = "-hard" if hard is True or str(hard).lower() == "true" else ""
    return f"{selector}{hard_suffix}_{schedule}_T{start}_seed{seed}"
