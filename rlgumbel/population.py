"""Which jobs of a multirun can train together in one process, as one population of agents.

Members of a population share everything that shapes the computation (env, networks, batch
size, selector, budget) and may differ only in `MEMBER_KEYS`: seeds, temperature schedules and
scalar hyperparameters of the learning rule, which a batched trainer holds per member. The
launcher `hydra/launcher=population` (hydra_plugins/rlgumbel_population_launcher/) groups a
sweep's jobs with `group_jobs` and trains each group with `rlgumbel.cli.train.train_population`,
which returns one `MemberOutcome` per member.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rlgumbel.checkpoint import checkpoint_step, list_checkpoints
from rlgumbel.config import resume_path
from rlgumbel.layout import CHECKPOINT_DIR, RUN_MANAGEMENT_KEYS

# Config keys in which the members of one population may differ.
MEMBER_KEYS: tuple[str, ...] = (
    "seed",
    "schedule",  # the whole node: each member anneals its own temperature
    "agent.actor.lr",
    "agent.critic.lr",
    "agent.entropy_lr",
    "agent.entropy_coef",
    "agent.gamma",
    "agent.target_update_rate",
    "agent.max_grad_norm",
    "agent.actor.init_scale",
    "agent.target_entropy_fraction",
    "agent.target_entropy_end_fraction",
    "agent.target_entropy_decay_steps",
)
# Keys whose value may differ but whose null-ness may not: null means α fixed (or a target
# entropy that stays), a number adds a tuned α (or a falling target) to the computation.
NULLABLE_MEMBER_KEYS: tuple[str, ...] = ("agent.target_entropy_fraction", "agent.target_entropy_end_fraction")


@dataclass(frozen=True)
class MemberOutcome:
    """What training did for one member of a population.

    Attributes:
        value: the run's objective (the mean of its greedy evaluations) when it trained, else None.
        error: a one-line message when it could not train (a config error, divergence), else None.
    """

    value: float | None = None
    error: str | None = None


def _select(config: dict[str, Any], dotted_key: str) -> Any:
    node: Any = config
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _remove(config: dict[str, Any], dotted_key: str) -> None:
    *parents, last = dotted_key.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def group_key(config: dict[str, Any], resume_step: int | None) -> str:
    """The canonical text that jobs of one population share.

    Args:
        config: a job's resolved task config as plain containers (`OmegaConf.to_container(cfg, resolve=True)`).
        resume_step: the env step the job would continue from (`resume_step`), None for a fresh run.

    Returns:
        JSON with sorted keys: the config less `MEMBER_KEYS` and `layout.RUN_MANAGEMENT_KEYS`, which
        of `NULLABLE_MEMBER_KEYS` are null, and `resume_step`. A job with `resume=<run dir>` trains
        that run's saved config, not the composed one, so its key keeps the whole config and the folder.
    """
    resume_dir = resume_path(config.get("resume"))
    if resume_dir is not None:
        return json.dumps({"resume_dir": resume_dir, "config": config, "resume_step": resume_step}, sort_keys=True)
    shared = copy.deepcopy(config)
    for dotted_key in (*MEMBER_KEYS, *RUN_MANAGEMENT_KEYS):
        _remove(shared, dotted_key)
    null = {dotted_key: _select(config, dotted_key) is None for dotted_key in NULLABLE_MEMBER_KEYS}
    return json.dumps({"config": shared, "null": null, "resume_step": resume_step}, sort_keys=True)


def resume_step(cfg: DictConfig, run_dir: Path) -> int | None:
    """The env step of the newest checkpoint a job would continue from, or None for a fresh run.

    Args:
        cfg: the job's composed config.
        run_dir: the job's output folder.

    Returns:
        With `resume=true`, the step of the newest checkpoint in `run_dir`; with `resume=<run dir>`,
        the newest in that folder; None when there is none or the job does not resume.
    """
    resume = cfg.get("resume")
    resume_dir = resume_path(resume)
    if resume_dir is not None:
        run_dir = Path(resume_dir)
    elif resume is not True:
        return None
    checkpoints = list_checkpoints(run_dir / CHECKPOINT_DIR)
    return checkpoint_step(checkpoints[-1]) if checkpoints else None


def split_evenly(indices: list[int], max_members: int) -> list[list[int]]:
    """`indices` in order, cut into the fewest chunks of at most `max_members`, their sizes
    differing by at most one (40 at 16: 14, 13, 13)."""
    if max_members < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members}")
    count = math.ceil(len(indices) / max_members)
    size, larger = divmod(len(indices), count) if count else (0, 0)
    chunks, start = [], 0
    for chunk in range(count):
        end = start + size + (chunk < larger)
        chunks.append(indices[start:end])
        start = end
    return chunks


def group_jobs(configs: list[dict[str, Any]], resume_steps: list[int | None], max_members: int) -> list[list[int]]:
    """The jobs' indices, grouped into populations that can train in one process.

    Args:
        configs: each job's resolved task config as plain containers.
        resume_steps: each job's `resume_step`.
        max_members: most members of one population.

    Returns:
        Groups of job indices in the order of their first job, each in job order; the jobs of one
        `group_key` split by `split_evenly`.
    """
    by_key: dict[str, list[int]] = {}
    for index, (config, step) in enumerate(zip(configs, resume_steps)):
        by_key.setdefault(group_key(config, step), []).append(index)
    return [chunk for indices in by_key.values() for chunk in split_evenly(indices, max_members)]
