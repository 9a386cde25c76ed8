"""The shipped config tree: every option of every group composes and builds; bad values fail
before anything is written, with the key in the message."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONFIG_DIR, TINY

from rlgumbel.config import ConfigError, build_trainer, hparams
from rlgumbel.names import option_name

GROUPS = {
    group: sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    for group in ("env", "selector", "schedule", "agent")
}


def test_every_group_has_its_options():
    assert GROUPS["selector"] == [
        "argmax",
        "expected",
        "gapped_straight_through",
        "gumbel_rao",
        "gumbel_softmax",
        "reinmax",
        "sample",
        "straight_through",
    ]
    assert GROUPS["schedule"] == ["constant", "cosine", "exponential", "linear"]
    assert {"cartpole", "acrobot", "mountain_car", "lunar_lander", "taxi"} <= set(GROUPS["env"])
    assert GROUPS["agent"] == ["actor_critic"]


@pytest.mark.parametrize("group,option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_option_composes_and_builds(group, option, compose_config, tmp_path: Path):
    # reinmax is meant for temperatures >= 1: pair it with a constant temperature of 1
    schedule = ["schedule=constant"] if option == "reinmax" else []
    cfg = compose_config(f"{group}={option}", *schedule, *TINY)
    trainer = build_trainer(cfg, tmp_path)
    try:
        if group in ("selector", "schedule"):
            # the option's file name is its class in snake_case
            assert option_name(cfg[group]._target_) == option
        assert trainer.settings.total_steps == 400
    finally:
        trainer.members[0].logger.close(None)


def test_hparams_have_one_key_set_whatever_the_options(compose_config):
    keys = {
        frozenset(hparams(compose_config(f"selector={s}", f"schedule={t}")))
        for s in GROUPS["selector"]
        for t in GROUPS["schedule"]
    }
    assert len(keys) == 1


BAD = [
    (["schedule=constant", "schedule.start=0"], "temperatures must be > 0"),
    (["schedule=constant", "schedule.start=-1"], "schedule.start"),
    (["schedule=exponential", "schedule.start=0.5", "schedule.end=2"], "schedule.end"),
    (["schedule=linear", "schedule.duration=0"], "schedule.duration"),
    (["trainer.total_steps=0"], "trainer.total_steps"),
    (["trainer.batch_size=512", "trainer.buffer_size=100"], "trainer.batch_size"),
    (["+trainer.no_such_key=1"], "trainer.no_such_key is not a key of trainer"),
    (["env.id=NoSuchEnv-v0"], "env.id"),
    (["env.id=Pendulum-v1"], "Discrete action space"),
    (["env.num_envs=0"], "env.num_envs"),
    (["agent.critic.kind=transformer"], "agent.critic.kind"),
    (["agent.critic_target=max"], "agent.critic_target"),
    (["agent.gamma=1.5"], "agent.gamma"),
    (["+agent.actor.depth=3"], "agent.actor.depth is not a key of agent.actor"),
    (["selector=argmax", "selector.epsilon.start=2"], "selector.epsilon"),
    (["seed=-1"], "seed"),
    (["selector=reinmax"], "selector=reinmax needs temperatures >= 1.0"),
    (["selector=gumbel_rao", "selector.samples=0"], "selector.samples"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_values_fail_before_anything_is_written(overrides, message, compose_config, tmp_path: Path):
    cfg = compose_config(*TINY, *overrides)
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build_trainer(cfg, run_dir)
    assert not run_dir.exists()
