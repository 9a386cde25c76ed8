"""From a composed config to a ready Trainer: validation with clear errors, then building."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rlgumbel import layout
from rlgumbel.agents import ActorCritic
from rlgumbel.buffer import ReplayBuffer
from rlgumbel.diagnostics import check_enumerable
from rlgumbel.envs import EnvConfigError, action_mask, env_shape, make_vector_env
from rlgumbel.hparams import hparams
from rlgumbel.logger import Logger
from rlgumbel.names import option_name, run_name
from rlgumbel.schedules import Schedule
from rlgumbel.schema import ConfigError, TrainerSettings, register_schema, validate
from rlgumbel.selectors import ActionSelector
from rlgumbel.trainer import Member, Trainer
from rlgumbel.video import RENDER_KWARGS, check_renders


def register_with_hydra() -> None:
    """The schema (rlgumbel/schema.py) and the resolvers the config tree uses: `resume` decides
    where a run's output goes."""
    register_schema()
    if not OmegaConf.has_resolver("rlgumbel.run_dir"):
        OmegaConf.register_new_resolver("rlgumbel.run_dir", lambda resume, fresh: resume_path(resume) or fresh)
        OmegaConf.register_new_resolver(
            "rlgumbel.output_subdir", lambda resume: None if resume_path(resume) else layout.HYDRA_DIR
        )
        OmegaConf.register_new_resolver("rlgumbel.run_name", run_name)


def resume_path(resume: Any) -> str | None:
    """The run folder `resume=<run dir>` names; None for `resume=null|false|true`."""
    if resume is None or isinstance(resume, bool) or str(resume).lower() in ("true", "false", "none", "null", ""):
        return None
    return str(resume)


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys whose values differ between two plain config dicts, as `key: saved → current`,
    leaving out the keys a resumed run may change (`layout.RESUME_FREE_KEYS`)."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        path = f"{prefix}{key}"
        if path in layout.RESUME_FREE_KEYS:
            continue
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{path}.")
        elif old != new:
            differences.append(f"{path}: {old!r} → {new!r}")
    return differences


def check_resumable(checkpoint: dict[str, Any], cfg: DictConfig, run_dir: Path) -> None:
    """Raise `ConfigError` if `checkpoint` was made with a config other than `cfg`."""
    current = OmegaConf.to_container(cfg, resolve=True)
    differences = config_differences(checkpoint["config"], current)
    if differences:
        raise ConfigError(
            f"resume: the checkpoint in {run_dir} was made with another config; "
            f"keys that differ: {'; '.join(differences)}"
        )


def _instantiate(key: str, node: DictConfig, **build_kwargs: Any) -> Any:
    try:
        return instantiate(node, _convert_="all", **build_kwargs)
    except InstantiationException as error:
        cause = error.__cause__ or error
        message = str(cause)
        if isinstance(cause, TypeError) and "argument" in message:
            message = f"{message} (check the keys under {key}:)"
        raise ConfigError(f"{key}: {message}") from None


def build_temperature(cfg: DictConfig) -> Schedule:
    """The temperature schedule; every temperature it takes must be > 0."""
    schedule = _instantiate("schedule", cfg.schedule)
    low, _ = schedule.bounds()
    if not low > 0:
        raise ConfigError(
            f"schedule: temperatures must be > 0, but this schedule reaches {low} "
            "(check schedule.start and schedule.end)"
        )
    return schedule


def build_envs(
    cfg: DictConfig, copies: int, env_id: str | None = None, render_for: str | None = None
) -> gym.vector.VectorEnv:
    """`copies` copies of the config's env (or of `env_id` with the config's env kwargs); with
    `render_for` (the option that asks for videos), rendering `rgb_array` frames, checked by one."""
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True) | (RENDER_KWARGS if render_for else {})
    env_id = env_id or cfg.env.id
    try:
        envs = make_vector_env(env_id, copies, kwargs)
    except EnvConfigError as error:
        raise ConfigError(str(error)) from None
    if render_for:
        check_renders(envs, f"{render_for}: env.id={env_id!r}")
    return envs


def _member_values(nodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The members' config nodes as one: a value all share stays a value, one that differs
    becomes the list of the members' values (nested nodes key by key)."""
    merged = {}
    for key, value in nodes[0].items():
        values = [node[key] for node in nodes]
        if isinstance(value, dict):
            merged[key] = _member_values(values)
        else:
            merged[key] = value if all(v == value for v in values) else values
    return merged


def build_agent(cfgs: Sequence[DictConfig], envs: gym.vector.VectorEnv) -> ActorCritic:
    """The agent of the members `cfgs` (one config per member, alike but in the per-member
    hyperparameters) and their selector, for `envs`' spaces; member k's networks are drawn
    from its `seed`."""
    selector = _instantiate("selector", cfgs[0].selector)
    shape = env_shape(envs)
    agent = OmegaConf.create(_member_values([OmegaConf.to_container(cfg.agent, resolve=True) for cfg in cfgs]))
    return _instantiate(
        "agent",
        agent,
        obs_shape=shape.obs_shape,
        action_sizes=shape.action_sizes,
        agents=shape.agents,
        selector=selector,
        seeds=[cfg.seed for cfg in cfgs],
    )


def _check_temperatures(cfg: DictConfig, temperature: Schedule, selector: ActionSelector) -> None:
    low, _ = temperature.bounds()
    if low < selector.min_temperature:
        raise ConfigError(
            f"selector={option_name(cfg.selector._target_)} needs temperatures >= "
            f"{selector.min_temperature}, but the schedule reaches {low} "
            "(check schedule.start and schedule.end)"
        )


def _build_member(
    cfg: DictConfig, run_dir: Path, settings: TrainerSettings, checkpoint: dict[str, Any] | None
) -> Member:
    """One run of a population: its envs, schedule and logger (nothing is written yet)."""
    solved = cfg.env.solved_return
    return Member(
        run_dir=run_dir,
        seed=cfg.seed,
        envs=build_envs(cfg, cfg.env.num_envs),
        eval_envs=build_envs(cfg, settings.eval_episodes),
        temperature=build_temperature(cfg),
        logger=None,
        solved_return=None if solved is None or math.isnan(solved) else float(solved),
        config=OmegaConf.to_container(cfg, resolve=True),
        video_envs=build_envs(cfg, 1, render_for="trainer.video_every") if settings.video_every else None,
    )


def build_trainer(cfg: DictConfig, run_dir: Path, checkpoint: dict[str, Any] | None = None) -> Trainer:
    """Validate `cfg` and build the trainer of one run, a population of one (`build_population`).

    Args:
        cfg: the composed config (configs/train.yaml and its groups).
        run_dir: the run's folder (from Hydra's runtime output dir).
        checkpoint: a checkpoint of this run to continue from.
    Raises:
        ConfigError: a value is invalid; the message names the key.
    """
    return build_population([cfg], [run_dir], [checkpoint])


def build_population(
    cfgs: Sequence[DictConfig], run_dirs: Sequence[Path], checkpoints: Sequence[dict[str, Any] | None]
) -> Trainer:
    """Validate the members' configs and build the trainer of their population; nothing is
    written until all is valid.

    Args:
        cfgs: the composed configs (configs/train.yaml and its groups), one per member,
            alike in everything but the per-member keys (rlgumbel/population.py).
        run_dirs: the members' run folders (from Hydra's runtime output dirs).
        checkpoints: per member, a checkpoint of its run to continue from, or None; all from
            one env step.
    Raises:
        ConfigError: a value is invalid; the message names the key.
    """
    cfgs = [validate(cfg) for cfg in cfgs]
    torch.set_num_threads(cfgs[0].num_threads)
    settings: TrainerSettings = OmegaConf.to_object(cfgs[0].trainer)
    members = [_build_member(cfg, run_dir, settings, None) for cfg, run_dir in zip(cfgs, run_dirs)]
    envs = members[0].envs
    shape = env_shape(envs)
    if settings.diagnostics:
        try:
            check_enumerable(shape.components, shape.num_actions)
        except ValueError as error:
            raise ConfigError(f"trainer.diagnostics=true: {error}; set trainer.diagnostics=false") from None
    agent = build_agent(cfgs, envs)
    for cfg, member in zip(cfgs, members):
        _check_temperatures(cfg, member.temperature, agent.selector)
    steps = {checkpoint["step"] for checkpoint in checkpoints if checkpoint is not None}
    if len(steps) > 1 or (steps and None in checkpoints):
        raise ConfigError(f"resume: the members' checkpoints are from different env steps {sorted(steps)}")
    # Does the env give action masks? Asked of a copy of its own: some envs' resets depend on the
    # episode before (lbforaging places agents around where they stood), so a member's own envs
    # are reset only by the trainer, as they would be in a population of any size.
    probe = build_envs(cfgs[0], 1)
    _, info = probe.reset(seed=cfgs[0].seed)
    masked = action_mask(info, 1, shape.num_actions) is not None
    probe.close()
    buffer = ReplayBuffer(
        settings.buffer_size,
        shape.obs_shape,
        envs.num_envs,
        num_actions=shape.num_actions if masked else None,
        members=len(cfgs),
        action_shape=(shape.components,),
    )
    for cfg, member, checkpoint in zip(cfgs, members, checkpoints):
        member.logger = Logger(
            member.run_dir / layout.TB_DIR,
            hparams(cfg),
            OmegaConf.to_yaml(cfg, resolve=True),
            purge_step=None if checkpoint is None else checkpoint["step"] + 1,
        )
    trainer = Trainer(settings, members, agent, buffer)
    for k, checkpoint in enumerate(checkpoints):
        if checkpoint is not None:
            trainer.load_member_state(k, checkpoint)
    return trainer


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config a run was started with (`<run_dir>/.hydra/config.yaml`)."""
    path = Path(run_dir) / layout.CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no run there ({path} does not exist)")
    return OmegaConf.load(path)


def resume_config(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Path | None]:
    """The config to run and the folder to continue, for `cfg.resume`.

    `resume=<run dir>`: that run's saved config, with the command line's `key=value`
    overrides applied on top (e.g. a larger `trainer.total_steps`). `resume=true`: the
    composed config itself, continuing its own output folder if that holds a checkpoint
    (what a requeued cluster job does). Otherwise: `cfg`, no folder.
    """
    path = resume_path(cfg.get("resume"))
    if path is None:
        return cfg, None
    try:
        saved = load_run_config(Path(path))
    except ConfigError as error:
        raise ConfigError(f"resume={error}") from None
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == "resume":
            continue
        if isinstance(OmegaConf.select(saved, key, default=None), DictConfig):
            raise ConfigError(
                f"resume={path}: `{override}` would replace the config group `{key}`; a resumed run keeps its own"
            )
        OmegaConf.update(saved, key, yaml_value(value), force_add=True)
    saved.resume = path
    return saved, Path(path)


def yaml_value(text: str) -> Any:
    """A command-line value as YAML reads it (`3` → 3, `true` → True, `[64,64]` → list)."""
    return yaml.safe_load(text) if text else None
