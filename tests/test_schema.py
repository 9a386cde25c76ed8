"""The config schema (rlgumbel/schema.py): defaults in one place, every bad value refused with its key path."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from rlgumbel.agents import ActorCritic
from rlgumbel.cli.preflight import check_command_line
from rlgumbel.configs import CONFIG_DIR
from rlgumbel.schema import OPTIONS, ActorCriticConfig, ConfigError, TrainConfig, TrainerSettings, typed, validate


def error_of(*overrides: str) -> str | None:
    """The one line `rlgumbel-train` prints for these overrides (composition, types, ranges), or None."""
    return check_command_line(list(overrides), CONFIG_DIR, "train")


BAD = [
    # types, refused while composing
    (["schedule=constant", "schedule.start=warm"], "schedule.start", "converted to Float"),
    (["schedule=constant", "schedule.start=null"], "schedule.start", "not Optional"),
    (["schedule=linear", "schedule.duration=2.5"], "schedule.duration", "converted to Integer"),
    (["schedule=cosine", "schedule.duration=null"], "schedule.duration", "not Optional"),
    (["selector.hard=maybe"], "selector.hard", "not a valid bool"),
    (["trainer.total_steps=1.5"], "trainer.total_steps", "converted to Integer"),
    (["agent.actor.hidden_sizes=[64,1.5]"], "agent.actor.hidden_sizes", "converted to Integer"),
    (["selector=gumbel_rao", "selector.samples=four"], "selector.samples", "converted to Integer"),
    # unknown keys, also through `+`
    (["+trainer.no_such_key=1"], "trainer.no_such_key is not a key of trainer", "total_steps"),
    (["+agent.actor.depth=3"], "agent.actor.depth is not a key of agent.actor", "hidden_sizes"),
    (["+device=cuda"], "device is not a key of the config", "seed"),
    (["selector=argmax", "+selector.epsilon.rate=1"], "selector.epsilon.rate is not a key", "duration"),
    (["+selector.samples=3"], "selector.samples is not a key of selector", "hard"),
    # ranges
    (["schedule=constant", "schedule.start=-0.5"], "schedule.start", ">= 0.0"),
    (["schedule=linear", "schedule.end=nan"], "schedule.end", "finite"),
    (["schedule=cosine", "schedule.start=inf"], "schedule.start", "finite"),
    (["schedule=exponential", "schedule.rate=-inf"], "schedule.rate", ">= 0.0"),
    (["schedule=linear", "schedule.duration=0"], "schedule.duration", "> 0"),
    (["schedule=cosine", "schedule.duration=-5"], "schedule.duration", "> 0"),
    (["selector=gumbel_rao", "selector.samples=0"], "selector.samples", ">= 1"),
    (["selector=argmax", "selector.epsilon.start=-1"], "selector.epsilon.start", ">= 0.0"),
    (["trainer.total_steps=0"], "trainer.total_steps", "> 0"),
    (["trainer.learning_starts=-1"], "trainer.learning_starts", ">= 0"),
    (["trainer.diagnostics_samples=1"], "trainer.diagnostics_samples", ">= 2"),
    (["env.num_envs=0"], "env.num_envs", ">= 1"),
    (["seed=-1"], "seed", ">= 0"),
    (["num_threads=0"], "num_threads", ">= 1"),
    (["agent.gamma=1.5"], "agent.gamma", "<= 1.0"),
    (["agent.target_update_rate=0"], "agent.target_update_rate", "> 0.0"),
    (["agent.entropy_lr=0"], "agent.entropy_lr", "> 0.0"),
    (["agent.actor_update_every=0"], "agent.actor_update_every", ">= 1"),
    (["agent.target_entropy_fraction=1.0", "agent.entropy_coef=0.1"], "agent.target_entropy_fraction", "< 1.0"),
    (["agent.target_entropy_fraction=-0.1", "agent.entropy_coef=0.1"], "agent.target_entropy_fraction", ">= 0.0"),
    (["agent.actor.hidden_sizes=[64,0]"], "agent.actor.hidden_sizes", ">= 1"),
    (["agent.critic.lr=0"], "agent.critic.lr", "> 0.0"),
    # choices
    (["agent.critic.kind=transformer"], "agent.critic.kind", "q_head"),
    (["agent.critic_target=max"], "agent.critic_target", "sampled"),
    (["agent.encoder=rnn"], "agent.encoder", "cnn"),
    # relations between keys
    (["schedule=exponential", "schedule.start=0.5", "schedule.end=2"], "schedule.end", "decays"),
    (["selector=argmax", "selector.epsilon.start=1.5"], "selector.epsilon.start", "<= 1"),
    (["trainer.batch_size=512", "trainer.buffer_size=100"], "trainer.batch_size", "trainer.buffer_size"),
    (["agent.target_entropy_fraction=0.3", "agent.entropy_coef=0"], "agent.entropy_coef", "> 0"),
    (["agent.target_entropy_end_fraction=0.1"], "agent.target_entropy_end_fraction", "needs target_entropy_fraction"),
    (["agent.target_entropy_decay_steps=[5,5]"], "agent.target_entropy_decay_steps", "first < last"),
    (["agent.target_entropy_decay_steps=[5]"], "agent.target_entropy_decay_steps", "first < last"),
    (["agent.target_entropy_decay_steps=[-1,5]"], "agent.target_entropy_decay_steps", ">= 0"),
]


@pytest.mark.parametrize("overrides,key,words", BAD, ids=[" ".join(o) for o, _, _ in BAD])
def test_bad_values_are_one_line_naming_the_full_key(overrides, key, words):
    message = error_of(*overrides)
    assert message is not None and message.startswith(f"error: {key}") and words in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["schedule=exponential", "schedule.start=0.5", "schedule.end=0.5"],  # equal ends: a constant, allowed
        ["selector=argmax", "selector.epsilon.start=1", "selector.epsilon.end=0"],
        ["schedule=constant", "schedule.start=2"],  # whole numbers where floats go
        ["agent.target_entropy_fraction=0", "agent.entropy_coef=0.1"],
        ["trainer.batch_size=100", "trainer.buffer_size=100"],
        ["agent.critic.pessimism=-1"],
        ["env=minatar_breakout"],
    ],
)
def test_edge_values_are_accepted(overrides):
    assert error_of(*overrides) is None


@pytest.mark.parametrize("env", ["cartpole", "acrobot", "mountain_car", "lunar_lander", "taxi", "cliff_walking"])
@pytest.mark.parametrize("group,option", [(g, o) for g, options in OPTIONS.items() for o in options])
def test_every_shipped_option_composes_typed_by_its_schema(group, option, env, compose_config):
    cfg = validate(compose_config(f"{group}={option}", f"env={env}"))
    assert OmegaConf.get_type(cfg[group]) is OPTIONS[group][option]
    assert OmegaConf.get_type(cfg) is TrainConfig


def test_defaults_come_from_the_schema(compose_config):
    # the agent YAML sets nothing and the Taxi preset no agent key: every agent value is the schema's
    expected = OmegaConf.to_container(OmegaConf.structured(ActorCriticConfig))
    assert OmegaConf.to_container(compose_config("env=taxi").agent) == expected
    cfg = compose_config("env=cartpole")  # the CartPole preset sets no trainer key
    assert OmegaConf.to_container(cfg.trainer) == dataclasses.asdict(TrainerSettings())
    assert cfg.selector.hard is False and compose_config("selector=gumbel_rao").selector.samples == 10


def test_the_agent_takes_every_schema_key_and_has_no_defaults_of_its_own():
    parameters = inspect.signature(ActorCritic).parameters
    keys = {spec.name for spec in dataclasses.fields(ActorCriticConfig)} - {"_target_"}
    assert keys == set(parameters) - {"obs_shape", "action_sizes", "agents", "selector", "seeds"}
    assert all(parameters[name].default is inspect.Parameter.empty for name in keys)


def test_a_saved_config_is_typed_on_load():
    # what resume reads back from .hydra/config.yaml is plain YAML: the schema types it again
    saved = OmegaConf.create(
        {
            "env": {"id": "CartPole-v1"},
            "agent": {"_target_": "rlgumbel.agents.ActorCritic", "critic": {"ensemble": "2"}},
            "selector": {"_target_": "rlgumbel.selectors.GumbelRaoSelector", "samples": 3},
            "schedule": {"_target_": "rlgumbel.schedules.ConstantSchedule", "start": 1},
        }
    )
    cfg = validate(saved)
    assert cfg.agent.critic.ensemble == 2 and cfg.schedule.start == 1.0 and isinstance(cfg.schedule.start, float)
    saved.selector.samples = "many"
    with pytest.raises(ConfigError, match=r"^selector\.samples: .*converted to Integer"):
        typed(saved)
    saved.selector.samples = 3
    saved.agent.critic.width = 3
    with pytest.raises(ConfigError, match=r"^agent\.critic\.width is not a key of agent\.critic"):
        typed(saved)
