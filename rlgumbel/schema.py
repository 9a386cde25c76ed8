"""The config schema: every key's type, default, allowed values and meaning, in one place.

Hydra composes configs/ on top of these dataclasses (registered in its ConfigStore by
`register_schema`), so a wrong type, an unknown key or a `+new.key` is refused while composing;
the YAML files only select options and override values. `validate` then checks what types cannot
say (ranges, choices, relations between keys) and names the full key path of what is wrong.
Defaults below were chosen by measurement on CartPole-v1 (benchmarks/suite.py --envs cartpole;
2-seed 30k-step grids, then 5 seeds per selector), the same for every selector; the env presets
(configs/env/) say what each env changes and why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException


class ConfigError(ValueError):
    """A config value the framework cannot run with; the message names the key."""


def key(
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A schema field: its default and what `validate` allows (bounds apply to every item of a list)."""
    bounds = {name: bound for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if bound is not None}
    metadata = {"bounds": bounds, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# ----------------------------------------------------------------------------------- schedules


@dataclass
class ConstantScheduleConfig:
    """`start` at every step."""

    _target_: str = "rlgumbel.schedules.ConstantSchedule"
    start: float = key(1.0, ge=0.0)


@dataclass
class LinearScheduleConfig:
    """From `start` to `end` in a straight line over `duration` env steps, then `end`."""

    _target_: str = "rlgumbel.schedules.LinearSchedule"
    start: float = key(1.0, ge=0.0)
    end: float = key(0.1, ge=0.0)
    duration: int = key(30000, gt=0)


@dataclass
class ExponentialScheduleConfig:
    """`max(end, start · exp(−rate · step))` (Jang et al. 2017); it decays, so end <= start."""

    _target_: str = "rlgumbel.schedules.ExponentialSchedule"
    start: float = key(1.0, ge=0.0)
    # kept: on CartPole exponential 1 → 0.1 solved by 6k steps (2 seeds); constant 1.0 by 6k/14k, less steady after
    end: float = key(0.1, ge=0.0)
    rate: float = key(1.0e-4, ge=0.0)

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if node.end > node.start:
            yield "end", f"must be <= start ({node.start}): the exponential schedule decays, got {node.end}"


@dataclass
class CosineScheduleConfig(LinearScheduleConfig):
    """Half a cosine from `start` to `end` over `duration` env steps, then `end`."""

    _target_: str = "rlgumbel.schedules.CosineSchedule"


# ----------------------------------------------------------------------------------- selectors


@dataclass
class ArgmaxSelectorConfig:
    """Greedy actions with ε-greedy exploration; straight-through softmax(logits/temperature) gradient."""

    _target_: str = "rlgumbel.selectors.ArgmaxSelector"
    # exploration probability over env steps, a schedule whose values stay in [0, 1]
    epsilon: Any = field(default_factory=lambda: LinearScheduleConfig(start=1.0, end=0.05, duration=10000))

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        for end in ("start", "end"):
            if end in node.epsilon and node.epsilon[end] > 1:
                yield f"epsilon.{end}", f"must be <= 1 (a probability), got {node.epsilon[end]}"


@dataclass
class SampleSelectorConfig:
    """Actions sampled from softmax(logits); score-function (REINFORCE) actor gradient with baseline."""

    _target_: str = "rlgumbel.selectors.SampleSelector"


@dataclass
class GumbelSoftmaxSelectorConfig:
    """Gumbel-max actions, Gumbel-softmax relaxation fed to the critic (Jang et al. 2017)."""

    _target_: str = "rlgumbel.selectors.GumbelSoftmaxSelector"
    hard: bool = False  # true: straight-through Gumbel-softmax (one-hot forward)


@dataclass
class StraightThroughSelectorConfig:
    """Sampled actions; one-hot forward, softmax(logits/temperature) backward (Bengio et al. 2013)."""

    _target_: str = "rlgumbel.selectors.StraightThroughSelector"


@dataclass
class GumbelRaoSelectorConfig:
    """Straight-through Gumbel-softmax averaged over conditional Gumbel draws (Paulus et al. 2021)."""

    _target_: str = "rlgumbel.selectors.GumbelRaoSelector"
    samples: int = key(10, ge=1)  # K conditional Gumbel draws per state; K = 1 is straight-through Gumbel-softmax


@dataclass
class ReinmaxSelectorConfig:
    """ReinMax second-order straight-through gradient (Liu et al. 2023); temperatures >= 1."""

    _target_: str = "rlgumbel.selectors.ReinmaxSelector"


@dataclass
class ExpectedSelectorConfig:
    """Sampled actions; exact all-actions gradient of Σ_a π(a|s) Q(s,a) (zero-variance reference)."""

    _target_: str = "rlgumbel.selectors.ExpectedSelector"


@dataclass
class GappedStraightThroughSelectorConfig:
    """Sampled actions; one-hot forward, backward through softmax((logits + m)/temperature), m the
    deterministic move that puts the sampled logit on top, `gap` above the others (Fan et al. 2022)."""

    _target_: str = "rlgumbel.selectors.GappedStraightThroughSelector"
    gap: float = key(1.0, gt=0.0)  # margin of the sampled logit over every other in the backward pass


# ----------------------------------------------------------------------------------- agent


@dataclass
class ActorConfig:
    """agent.actor: the policy network."""

    hidden_sizes: list[int] = key([64, 64], ge=1)  # 64x64 solves CartPole
    init_scale: float = key(1.0, ge=0.0)  # scales the output layer's initial weights: the initial logits' spread
    # slow actor: at 1e-3/3e-4 logits saturate (entropy 0.15 by 2k steps), gradients vanish and
    # policies stall at ~200 (the cart drifts off the track)
    lr: float = key(1.0e-4, gt=0.0)


@dataclass
class CriticConfig:
    """agent.critic: the Q networks."""

    # q_head: Q-values of all actions, Q(s, y) = y·Q(s,·); concat: action as input. q_head was as
    # good or better than concat, and takes one pass for expected targets
    kind: str = key("q_head", choices=("q_head", "concat"))
    ensemble: int = key(2, ge=1)  # critics trained side by side (2: twin critics)
    # Q̂ = mean_j Q_j − pessimism · mean_j |Q_j − mean|: with 2 critics 1 is their minimum
    # (Fujimoto et al. 2018), 0 the mean, −1 the maximum
    pessimism: float = 1.0
    hidden_sizes: list[int] = key([64, 64], ge=1)  # a 128-wide critic was no better and ~1.5x slower per update
    lr: float = key(3.0e-3, gt=0.0)  # Q must track the value of a policy that keeps improving; 1e-3 lagged
    # multi-agent envs: true, one critic reads every agent's observation and action vector (MADDPG,
    # Lowe et al. 2017); false, each agent's critic reads only its own (independent learners)
    centralised: bool = True


@dataclass
class ActorCriticConfig:
    """agent: the off-policy actor-critic (rlgumbel.agents.ActorCritic), one rule for every selector."""

    _target_: str = "rlgumbel.agents.ActorCritic"
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    # 0.95/0.98 learned to balance but not to stop the cart drifting out (x = ±2.4): plateau ~200
    gamma: float = key(0.99, ge=0.0, le=1.0)
    # Polyak rate of the target critics. 0.005: Q grew ~1 per 1000 steps (Polyak-limited); 0.1
    # overestimated (Q ~150 > 1/(1−γ))
    target_update_rate: float = key(0.05, gt=0.0, le=1.0)
    # α of the entropy bonus α·H(π) in actor loss and critic target (its start when tuned);
    # 0.01-0.1 gave no gain (the slow actor keeps H ≈ 0.3 on its own)
    entropy_coef: float = key(0.0, ge=0.0)
    # expected: Σ_a π(a|s') Q'(s',a); sampled: Q'(s', selector's action vector). expected solved
    # sooner and more often
    critic_target: str = key("expected", choices=("expected", "sampled"))
    max_grad_norm: float = key(10.0, gt=0.0)  # gradient clipping of actor and critics
    # null: α fixed; else tune log α so that H(π) ≈ this fraction of log(num_actions) (Haarnoja et
    # al. 2018). Tuning (0.3, 0.5) gave no gain over α = 0 here
    target_entropy_fraction: float | None = key(None, ge=0.0, lt=1.0)
    # null: the target entropy stays; else it falls linearly to this fraction of log(num_actions)
    # between the env steps target_entropy_decay_steps: explore first, then commit
    target_entropy_end_fraction: float | None = key(None, ge=0.0, lt=1.0)
    target_entropy_decay_steps: list[int] = key([0, 100000], ge=0)  # [first, last] env step of the fall
    entropy_lr: float = key(3.0e-4, gt=0.0)  # Adam learning rate of log α (only when tuned)
    # true: α·H(π(·|s')) joins the critic target (soft values); false: α regularises the actor only
    entropy_backup: bool = True
    # one actor (and α) step per this many critic steps (TD3-style delay): at actor lr 1e-4, 4
    # solved 3/3 seeds within 30k steps, 1 solved 0/2; also cheaper
    actor_update_every: int = key(4, ge=1)
    n_step: int = key(1, ge=1)  # reward window of the critic target: Σ_i γ^i r_i + γ^k V'(s_k), k <= n_step
    normalize_observations: bool = False  # standardise the networks' inputs by running mean and variance
    # mlp: flattened observations; cnn: one 3x3 convolution for image observations [C, H, W]
    encoder: str = key("mlp", choices=("mlp", "cnn"))
    conv_channels: int = key(16, ge=1)  # channels of the cnn encoder (MinAtar's DQN uses 16)
    # multi-agent envs: one actor (and per-agent critic) network for all agents, with a one-hot
    # agent id as input, instead of one per agent
    share_parameters: bool = False

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if node.target_entropy_fraction is not None and not node.entropy_coef > 0:
            start = node.entropy_coef
            yield (
                "entropy_coef",
                f"must be > 0 when target_entropy_fraction is set (the tuned α starts there), got {start}",
            )
        if node.target_entropy_end_fraction is not None and node.target_entropy_fraction is None:
            yield "target_entropy_end_fraction", "needs target_entropy_fraction (the target it falls from)"
        first_last = list(node.target_entropy_decay_steps)
        if len(first_last) != 2 or first_last[0] >= first_last[1]:
            yield "target_entropy_decay_steps", f"must be [first, last] env steps with first < last, got {first_last}"


# ----------------------------------------------------------------------------------- env, trainer, root


@dataclass
class EnvConfig:
    """env: which Gymnasium environment, how many copies, and what counts as solved."""

    id: str = MISSING  # a Gymnasium id (MinAtar/... ids are registered when asked for)
    num_envs: int = key(1, ge=1)  # copies stepped side by side in one vector env
    solved_return: float | None = None  # greedy eval return that counts as solved (report, benchmarks)
    random_return: float | None = None  # mean return of uniformly random actions (score normalisation)
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of gymnasium.make


@dataclass
class TrainerSettings:
    """trainer: the loop's budget and rhythm. All counts are env steps summed over the env copies."""

    # CartPole solves at a median 12.5k (7.5k-32.5k, 10 seeds, experiments/suite); the rest shows it stays solved
    total_steps: int = key(50000, gt=0)
    learning_starts: int = key(1000, ge=0)  # steps of uniformly random actions before the first update
    # steps between rounds of updates (below env.num_envs, several rounds per vector step)
    update_every: int = key(4, gt=0)
    # gradient updates per round: 2 per 4 env steps solved seeds 0-3 at 6-14k steps, 1 per 4 at 10-28k
    updates_per_round: int = key(2, gt=0)
    batch_size: int = key(128, gt=0)  # 128 solved as fast as 256 at ~25% less time per update
    buffer_size: int = key(100000, gt=0)
    eval_every: int = key(2500, gt=0)  # steps between evaluations
    eval_episodes: int = key(10, gt=0)  # episodes per evaluation, run side by side in one vector env
    log_every: int = key(1000, gt=0)  # steps between scalar logs of losses and policy statistics
    checkpoint_every: int = key(10000, gt=0)  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = key(3, gt=0)  # the newest checkpoints kept; older ones are deleted
    progress: bool = True  # progress bar (shown only on a terminal)
    # a NaN/inf loss stops the run (its last good state checkpointed); false: skip the batch, count it
    strict: bool = True
    # env steps between videos of one greedy evaluation episode (TensorBoard's Images dashboard
    # plays them, as GIFs); null: no videos
    video_every: int | None = key(None, gt=0)
    diagnostics: bool = False  # log the actor gradient's bias/variance vs the exact one under estimator/
    diagnostics_every: int = key(5000, gt=0)  # steps between diagnostics (when on)
    diagnostics_samples: int = key(32, ge=2)  # independent gradient estimates per diagnostic

    @staticmethod
    def relations(node: DictConfig) -> Iterator[tuple[str, str]]:
        if node.batch_size > node.buffer_size:
            yield "batch_size", f"({node.batch_size}) must not exceed trainer.buffer_size ({node.buffer_size})"


@dataclass
class TrainConfig:
    """The root of `rlgumbel-train`'s config (configs/train.yaml selects the groups)."""

    experiment_name: str = "default"  # first folder level under runs/ (experiment presets set it)
    seed: int = key(0, ge=0)  # seeds torch, the envs' resets and action spaces
    num_threads: int = key(1, ge=1)  # torch.set_num_threads per run; small nets are fastest single-threaded
    # <run dir>: continue that run from its last checkpoint; true: continue this run's own output
    # dir if it holds one (a requeued cluster job)
    resume: Any = None
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: Any = MISSING  # configs/agent/
    selector: Any = MISSING  # configs/selector/
    schedule: Any = MISSING  # the temperature schedule, configs/schedule/


# Option schemas of the groups whose options are different classes, by the class they build.
OPTIONS: dict[str, dict[str, type]] = {
    "agent": {"actor_critic": ActorCriticConfig},
    "selector": {
        "argmax": ArgmaxSelectorConfig,
        "sample": SampleSelectorConfig,
        "gumbel_softmax": GumbelSoftmaxSelectorConfig,
        "straight_through": StraightThroughSelectorConfig,
        "gumbel_rao": GumbelRaoSelectorConfig,
        "reinmax": ReinmaxSelectorConfig,
        "expected": ExpectedSelectorConfig,
        "gapped_straight_through": GappedStraightThroughSelectorConfig,
    },
    "schedule": {
        "constant": ConstantScheduleConfig,
        "linear": LinearScheduleConfig,
        "exponential": ExponentialScheduleConfig,
        "cosine": CosineScheduleConfig,
    },
}
BY_TARGET: dict[str, type] = {cls._target_: cls for options in OPTIONS.values() for cls in options.values()}


def register_schema() -> None:
    """Put the schema in Hydra's ConfigStore: `train_schema` (the root), and `schema/<group>/<option>`,
    which each option's YAML file names first in its defaults list."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for group, options in OPTIONS.items():
        for name, cls in options.items():
            store.store(group=f"schema/{group}", name=name, node=cls)


def typed(cfg: DictConfig) -> DictConfig:
    """`cfg` (composed, or loaded from a run's .hydra/config.yaml) merged onto the schema: types
    checked and unknown keys refused, with the full key path in the `ConfigError`."""
    plain = OmegaConf.to_container(cfg, resolve=False)  # keys added by `+key=` are refused only by a merge
    plain.pop("hydra", None)
    return _typed(TrainConfig, OmegaConf.create(plain), "")


def _typed(schema: type, node: DictConfig, prefix: str) -> DictConfig:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as error:
        raise ConfigError(unknown_key(f"{prefix}{error.full_key}", error.object_type or schema)) from None
    except OmegaConfBaseException as error:
        message = str(error).strip().splitlines()[0]
        raise ConfigError(f"{prefix}{getattr(error, 'full_key', '')}: {message}") from None
    for spec in dataclasses.fields(schema):
        value = None if OmegaConf.is_missing(merged, spec.name) else merged[spec.name]
        if isinstance(value, DictConfig) and value.get("_target_") in BY_TARGET:
            merged[spec.name] = _typed(BY_TARGET[value._target_], value, f"{prefix}{spec.name}.")
    return merged


def unknown_key(path: str, schema: type) -> str:
    """The message for a key the schema does not have, listing the keys it does."""
    parent = path.rpartition(".")[0]
    allowed = [spec.name for spec in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
    return f"{path} is not a key of {parent or 'the config'}; its keys: {allowed}"


def validate(cfg: DictConfig) -> DictConfig:
    """The typed config (`typed`), every value in its allowed range and every relation between
    keys kept; else `ConfigError` naming the first key that is not."""
    cfg = typed(cfg)
    problem = next(_problems(cfg, ""), None)
    if problem is not None:
        path, message = problem
        raise ConfigError(f"{path} {message}")
    return cfg


def _problems(node: DictConfig, prefix: str) -> Iterator[tuple[str, str]]:
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return
    for spec in dataclasses.fields(schema):
        value = node[spec.name]
        path = f"{prefix}{spec.name}"
        if isinstance(value, DictConfig):
            yield from _problems(value, f"{path}.")
        elif spec.metadata:
            yield from _out_of_range(path, value, spec.metadata)
    relations = getattr(schema, "relations", None)
    if relations is not None:
        for name, message in relations(node):
            yield f"{prefix}{name}", message


_BOUNDS = {"ge": (">=", float.__ge__), "gt": (">", float.__gt__), "le": ("<=", float.__le__), "lt": ("<", float.__lt__)}


def _out_of_range(path: str, value: Any, metadata: Any) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    choices = metadata["choices"]
    if choices is not None and value not in choices:
        yield path, f"must be one of {list(choices)}, got {value!r}"
    items = list(value) if isinstance(value, ListConfig) else [value]
    for sign, bound in metadata["bounds"].items():
        symbol, holds = _BOUNDS[sign]
        if not all(math.isfinite(item) and holds(float(item), float(bound)) for item in items):
            shown = list(items) if isinstance(value, ListConfig) else value
            yield path, f"must be a finite number {symbol} {bound}, got {shown!r}"
            return
