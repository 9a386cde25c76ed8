"""Tests of the actor-critic's optional learning-rule features: automatic entropy tuning (the
direction of the α update, a falling target entropy) and delayed actor updates (the delay,
checkpoint round trip). The agents are populations of one: batches are [1, B, …] and the
metrics [1]."""

from __future__ import annotations

import math

import pytest
import torch

from rlgumbel.agents import ActorCritic
from rlgumbel.buffer import Batch, one_step_batch
from rlgumbel.config import build_trainer
from rlgumbel.selectors import GumbelSoftmaxSelector

OBS_DIM, NUM_ACTIONS, BATCH = 4, 2, 32


@pytest.fixture
def make_agent(make_agent):
    """Small networks, the gumbel_softmax selector, the shipped values otherwise."""

    def make(**kwargs) -> ActorCritic:
        return make_agent(
            OBS_DIM,
            NUM_ACTIONS,
            GumbelSoftmaxSelector(hard=False),
            actor={"hidden_sizes": [16]},
            critic={"hidden_sizes": [16]},
            **kwargs,
        )

    return make


def make_batch(seed: int = 0) -> Batch:
    """A batch [1, BATCH, …] of the one member (actions of one component: [1, BATCH, 1])."""
    generator = torch.Generator().manual_seed(seed)
    return one_step_batch(
        obs=torch.randn(1, BATCH, OBS_DIM, generator=generator),
        action=torch.randint(NUM_ACTIONS, (1, BATCH, 1), generator=generator),
        reward=torch.ones(1, BATCH),
        next_obs=torch.randn(1, BATCH, OBS_DIM, generator=generator),
        terminated=torch.zeros(1, BATCH),
    )


def update(agent: ActorCritic, batch: Batch, generator: torch.Generator) -> dict[str, float]:
    """One update at temperature 1 that must not be skipped; the one member's metrics."""
    metrics, failures = agent.update(batch, 1.0, generator)
    assert failures == {}
    assert all(value.shape == (1,) for value in metrics.values())
    return {tag: float(value[0]) for tag, value in metrics.items()}


@pytest.mark.parametrize("fraction, grows", [(0.99, True), (0.0, False)])
def test_entropy_coef_moves_towards_the_target(fraction, grows, make_agent):
    # A fresh policy's entropy lies strictly between 0 and log 2: a target near the maximum
    # must raise α, a target of 0 must lower it.
    agent = make_agent(entropy_coef=0.1, target_entropy_fraction=fraction, entropy_lr=1e-2, actor_update_every=1)
    generator = torch.Generator().manual_seed(1)
    for seed in range(5):
        metrics = update(agent, make_batch(seed), generator)
    assert 0.0 < metrics["policy/entropy"] < math.log(NUM_ACTIONS)
    assert (metrics["policy/entropy_coef"] > 0.1) == grows


def test_target_entropy_falls_linearly_between_the_decay_steps(make_agent):
    agent = make_agent(
        entropy_coef=0.1,
        target_entropy_fraction=0.9,
        target_entropy_end_fraction=0.1,
        target_entropy_decay_steps=[1000, 3000],
    )
    log_actions = math.log(NUM_ACTIONS)
    for step, fraction in [(0, 0.9), (1000, 0.9), (1500, 0.7), (2000, 0.5), (3000, 0.1), (10_000, 0.1)]:
        agent.set_step(step)
        assert agent.target_entropy.shape == (1,)
        assert agent.target_entropy == pytest.approx(fraction * log_actions, rel=1e-12), step


def test_training_lowers_a_falling_target_entropy_to_its_end(compose_config, tmp_path):
    cfg = compose_config(
        "trainer.total_steps=1200",
        "trainer.learning_starts=400",
        "trainer.eval_episodes=1",
        "trainer.progress=false",
        "agent.entropy_coef=0.1",
        "agent.target_entropy_fraction=0.9",
        "agent.target_entropy_end_fraction=0.2",
        "agent.target_entropy_decay_steps=[400,1000]",
    )
    trainer = build_trainer(cfg, tmp_path)
    assert trainer.run()[0] is not None, trainer.failures[0]
    assert trainer.agent.target_entropy == pytest.approx(0.2 * math.log(2), rel=1e-12)


def test_a_target_without_an_end_fraction_stays(make_agent):
    agent = make_agent(entropy_coef=0.1, target_entropy_fraction=0.5, target_entropy_decay_steps=[0, 10])
    agent.set_step(1000)
    assert agent.target_entropy == pytest.approx(0.5 * math.log(NUM_ACTIONS))


def test_fixed_entropy_coef_stays_fixed(make_agent):
    agent = make_agent(entropy_coef=0.05, target_entropy_fraction=None)
    metrics = update(agent, make_batch(), torch.Generator().manual_seed(1))
    assert metrics["policy/entropy_coef"] == pytest.approx(0.05)
    assert agent.log_entropy_coef is None


def test_actor_steps_only_every_nth_update(make_agent):
    agent = make_agent(actor_update_every=3)
    generator = torch.Generator().manual_seed(1)
    changed = []
    for seed in range(6):
        before = [p.detach().clone() for p in agent.actor.parameters()]
        update(agent, make_batch(seed), generator)
        changed.append(any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters())))
    assert changed == [True, False, False, True, False, False]


def test_state_dict_round_trip_continues_identically(make_agent):
    kwargs = {"entropy_coef": 0.1, "target_entropy_fraction": 0.5, "entropy_lr": 1e-2, "actor_update_every": 2}
    agent = make_agent(**kwargs)
    generator = torch.Generator().manual_seed(1)
    for seed in range(3):
        update(agent, make_batch(seed), generator)
    restored = make_agent(**kwargs)
    restored.load_state_dict(agent.state_dict())
    state = generator.get_state()
    expected = update(agent, make_batch(7), generator)
    generator.set_state(state)
    got = update(restored, make_batch(7), generator)
    assert got["policy/entropy_coef"] == expected["policy/entropy_coef"]
    assert got["losses/critic"] == expected["losses/critic"]
    # The 4th update is not an actor step: both report the 3rd update's actor metrics.
    assert got["losses/actor"] == expected["losses/actor"]
    for a, b in zip(agent.actor.parameters(), restored.actor.parameters()):
        assert torch.equal(a, b)
