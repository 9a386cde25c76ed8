"""Value-level tests of the actor-critic's learning rule: the critic target on hand-made
batches, the direction of an actor step, the Polyak update, both critic targets and critic
kinds, observation normalisation and the convolutional encoder.

The networks are set by hand where a value is checked: a last layer with zero weights makes
the actor's logits and each critic's Q-values constants that the test knows.

The agents are populations of one with one categorical action (D = 1): observations and batches
are [1, B, …], actions [1, B, 1], targets [1, B, 1] (one critic head), metrics [1], and a skipped
step is reported in the failures that `update` returns.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from scipy import stats
from torch.nn import functional as F

from rlgumbel.agents import ActorCritic
from rlgumbel.buffer import Batch, one_step_batch
from rlgumbel.networks import Actor, EnsembleEncoder, EnsembleMLP, QHeadCritic
from rlgumbel.schedules import ConstantSchedule
from rlgumbel.selectors import ArgmaxSelector, GumbelSoftmaxSelector

OBS_DIM, ACTIONS = 3, 3
GAMMA = 0.9
LOGITS = torch.tensor([0.5, -1.0, 1.5])
# Q'_j(s', a) of the two target critics; which one is lower changes from action to action.
TARGET_Q = torch.tensor([[1.0, 4.0, 2.0], [3.0, -2.0, 5.0]])
Q_HAT = TARGET_Q.amin(0)  # per-action minimum: [1, -2, 2]
ALL_MEMBERS = torch.ones(1, dtype=torch.bool)  # the members that take an actor step: the one


def set_actor_logits(actor: Actor, logits: torch.Tensor) -> None:
    """The actor outputs `logits` [A] for every state."""
    with torch.no_grad():
        actor.net.weights[-1].zero_()
        actor.net.biases[-1].copy_(logits.expand_as(actor.net.biases[-1]))


def set_critic_values(critic: QHeadCritic, values: torch.Tensor) -> None:
    """Critic j outputs `values[j]` [A] for every state."""
    with torch.no_grad():
        critic.net.weights[-1].zero_()
        critic.net.biases[-1].copy_(values.view(values.shape[0], 1, -1))


def hand_agent(make_agent, selector=None, **overrides) -> ActorCritic:
    agent = make_agent(
        OBS_DIM,
        ACTIONS,
        selector or GumbelSoftmaxSelector(hard=False),
        gamma=GAMMA,
        target_entropy_fraction=None,
        **{"entropy_coef": 0.0, **overrides},
    )
    set_actor_logits(agent.actor, LOGITS)
    set_critic_values(agent.target_critic, TARGET_Q)
    return agent


def hand_batch(
    rewards: list[list[float]], steps: list[int], terminated: list[float], next_mask: torch.Tensor | None = None
) -> Batch:
    """The one member's batch [1, B, …]; `next_mask` [B, A]."""
    size = len(steps)
    return Batch(
        obs=torch.zeros(1, size, OBS_DIM),
        action=torch.zeros(1, size, 1, dtype=torch.int64),
        reward=torch.tensor([rewards]),
        next_obs=torch.randn(1, size, OBS_DIM, generator=torch.Generator().manual_seed(0)),
        terminated=torch.tensor([terminated]),
        steps=torch.tensor([steps]),
        mask=None if next_mask is None else torch.ones(1, size, 1, ACTIONS, dtype=torch.bool),
        next_mask=None if next_mask is None else next_mask[None, :, None],
    )


def td_target(agent: ActorCritic, batch: Batch, generator: torch.Generator | None) -> torch.Tensor:
    """The one member's critic target at temperature 1: [B]."""
    target = agent.td_target(batch, 1.0, generator)
    assert target.shape == (*batch.steps.shape, 1)
    return target[0, :, 0]


def expected_value(probs: torch.Tensor) -> float:
    return float((probs * Q_HAT).sum())


def test_expected_target_bootstraps_unless_terminated_and_sums_the_reward_window(make_agent):
    agent = hand_agent(make_agent, n_step=3)
    value = expected_value(torch.softmax(LOGITS, -1))
    batch = hand_batch(
        rewards=[[1.0, 0, 0], [1.0, 0, 0], [1.0, 2.0, 3.0], [1.0, 2.0, 0]],
        steps=[1, 1, 3, 2],
        terminated=[1.0, 0.0, 0.0, 1.0],
    )
    target = td_target(agent, batch, torch.Generator().manual_seed(0))
    by_hand = [
        1.0,  # terminated: the reward alone
        1.0 + GAMMA * value,  # truncated or running: bootstrap
        1.0 + GAMMA * 2.0 + GAMMA**2 * 3.0 + GAMMA**3 * value,  # a full 3-step window
        1.0 + GAMMA * 2.0,
    ]  # terminated on its 2nd step
    torch.testing.assert_close(target, torch.tensor(by_hand), rtol=1e-6, atol=1e-6)


def test_expected_target_averages_over_allowed_next_actions_only(make_agent):
    agent = hand_agent(make_agent)
    next_mask = torch.tensor([[True, True, False], [True, True, True]])  # action 2, the best, forbidden
    batch = hand_batch(rewards=[[0.0], [0.0]], steps=[1, 1], terminated=[0.0, 0.0], next_mask=next_mask)
    target = td_target(agent, batch, None)
    allowed = torch.softmax(LOGITS[:2], -1)
    by_hand = [GAMMA * float((allowed * Q_HAT[:2]).sum()), GAMMA * expected_value(torch.softmax(LOGITS, -1))]
    torch.testing.assert_close(target, torch.tensor(by_hand), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "pessimism, combined", [(1.0, TARGET_Q.amin(0)), (0.0, TARGET_Q.mean(0)), (-1.0, TARGET_Q.amax(0))]
)
def test_the_configured_pessimism_combines_the_target_twins(pessimism, combined, make_agent):
    # Q̂' = mean_j Q'_j − pessimism · mean_j |Q'_j − mean|: with two critics the minimum, the mean
    # and the maximum per action (rlgumbel.networks.ensemble_value).
    agent = hand_agent(make_agent, critic={"pessimism": pessimism})
    target = td_target(agent, hand_batch([[0.0]], [1], [0.0]), None)
    by_hand = GAMMA * float((torch.softmax(LOGITS, -1) * combined).sum())
    assert float(target) == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("kind", ["q_head", "concat"])
def test_the_configured_ensemble_size_builds_that_many_critics(kind, make_agent):
    agent = make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), critic={"kind": kind, "ensemble": 3})
    values = agent.critic.values(torch.zeros(1, 5, OBS_DIM), torch.eye(ACTIONS)[[0, 1, 2, 0, 1]][None, :, None])
    assert values.shape == (1, 3, 5, 1) and agent.target_critic.ensemble == 3


def test_argmax_targets_value_the_greedy_policy(make_agent):
    # argmax acts greedily (ε aside), so its expected target averages over the greedy action,
    # argmax LOGITS = 2, not over softmax(LOGITS)
    agent = hand_agent(make_agent, ArgmaxSelector(epsilon=ConstantSchedule(0.3)))
    target = td_target(agent, hand_batch([[0.0]], [1], [0.0]), None)
    assert float(target) == pytest.approx(GAMMA * float(Q_HAT[2]), rel=1e-6)


def test_entropy_bonus_enters_the_soft_target(make_agent):
    agent = hand_agent(make_agent, entropy_coef=0.5)
    probs = torch.softmax(LOGITS, -1)
    entropy = float(-(probs * probs.log()).sum())
    target = td_target(agent, hand_batch([[0.0]], [1], [0.0]), None)
    assert float(target) == pytest.approx(GAMMA * (expected_value(probs) + 0.5 * entropy), rel=1e-6)


def test_without_entropy_backup_the_target_is_the_plain_expected_value(make_agent):
    agent = hand_agent(make_agent, entropy_coef=0.5, entropy_backup=False)
    probs = torch.softmax(LOGITS, -1)
    target = td_target(agent, hand_batch([[0.0]], [1], [0.0]), None)
    assert float(target) == pytest.approx(GAMMA * expected_value(probs), rel=1e-6)


def test_sampled_target_values_the_selectors_action_by_the_per_action_minimum(make_agent):
    # The argmax selector's action is the greedy one, action 2: Q̂' = min(2, 5) = 2.
    greedy = ArgmaxSelector(epsilon=ConstantSchedule(0.0))
    agent = hand_agent(make_agent, greedy, critic_target="sampled")
    target = td_target(agent, hand_batch([[1.0]], [1], [0.0]), None)
    assert float(target) == pytest.approx(1.0 + GAMMA * float(Q_HAT[2]), rel=1e-6)
    # A relaxed Gumbel-softmax vector y is valued y · Q̂', a mix of per-action minima.
    agent = hand_agent(make_agent, critic_target="sampled")
    generator = torch.Generator().manual_seed(3)
    target = td_target(agent, hand_batch([[0.0]] * 4, [1] * 4, [0.0] * 4), generator)
    relaxed = (
        GumbelSoftmaxSelector(hard=False).select(LOGITS.repeat(4, 1), 1.0, torch.Generator().manual_seed(3)).action
    )
    torch.testing.assert_close(target, GAMMA * (relaxed * Q_HAT).sum(-1), rtol=1e-6, atol=1e-6)


def test_concat_critic_target_takes_the_minimum_of_the_twins(make_agent):
    agent = make_agent(
        OBS_DIM,
        ACTIONS,
        GumbelSoftmaxSelector(hard=False),
        critic={"kind": "concat"},
        gamma=GAMMA,
        entropy_coef=0.0,
        target_entropy_fraction=None,
    )
    with torch.no_grad():  # Q'_j(s, y) = b_j whatever the input: b = (4, −1)
        agent.target_critic.net.weights[-1].zero_()
        agent.target_critic.net.biases[-1].copy_(torch.tensor([4.0, -1.0]).view(2, 1, 1))
    for kind in ("expected", "sampled"):
        agent.critic_target = kind
        target = td_target(agent, hand_batch([[1.0]], [1], [0.0]), torch.Generator().manual_seed(0))
        assert float(target) == pytest.approx(1.0 + GAMMA * -1.0, rel=1e-6)


def policy_value(agent: ActorCritic, actor: Actor, obs: torch.Tensor) -> float:
    """mean_s Σ_a π(a|s) Q̂(s, a) under the agent's current critics, for obs [1, B, OBS_DIM]."""
    with torch.no_grad():
        probs = torch.softmax(actor(obs), -1)  # [1, B, 1, A]
        return float((probs * agent.critic.bind(obs).components(probs)).sum(-1).mean())


SELECTOR_OPTIONS = ("argmax", "sample", "gumbel_softmax", "straight_through", "gumbel_rao", "reinmax", "expected")


@pytest.mark.parametrize("option", SELECTOR_OPTIONS)
def test_one_actor_step_raises_the_critics_value_of_the_policy(option, make_agent, compose_config):
    # One small Adam step (lr 1e-3) on 2048 states moves the logits by ~1e-3 along the sign of
    # the selector's gradient estimate; J = E_π[Q̂] rises to first order by lr·Σ|g_i| ≈ 1e-3·|g|₁
    # unless the estimate points away from the exact gradient. An actor that minimises Q̂
    # lowers J by as much.
    selector = instantiate(compose_config(f"selector={option}").selector)
    agent = make_agent(
        OBS_DIM,
        ACTIONS,
        selector,
        actor={"lr": 1e-3},
        actor_update_every=1,
        entropy_coef=0.0,
        target_entropy_fraction=None,
    )
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(1, 2048, OBS_DIM, generator=generator)
    with torch.no_grad():  # critics with clear preferences between actions
        for weight in agent.critic.net.weights:
            weight.mul_(4.0)
    before = Actor(1, OBS_DIM, ACTIONS, [64, 64])
    before.load_state_dict(agent.actor.state_dict())
    agent._actor_step(obs, None, 1.0, generator, ALL_MEMBERS)
    gain = policy_value(agent, agent.actor, obs) - policy_value(agent, before, obs)
    assert gain > 0, gain


def test_the_entropy_bonus_moves_the_policy_towards_uniform(make_agent):
    # A critic that values every action alike leaves only the bonus α·H to move the actor.
    agent = hand_agent(make_agent, entropy_coef=1.0, actor_update_every=1, actor={"lr": 1e-2})
    set_critic_values(agent.critic, torch.zeros(2, ACTIONS))
    obs = torch.zeros(1, 64, OBS_DIM)

    def entropy() -> float:
        probs = torch.softmax(agent.logits(obs[:, :1]), -1)
        return float(-(probs * probs.log()).sum())

    before = entropy()
    agent._actor_step(obs, None, 1.0, torch.Generator().manual_seed(0), ALL_MEMBERS)
    assert entropy() > before + 1e-3


def test_target_critics_follow_the_polyak_average(make_agent):
    agent = make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), target_update_rate=0.25)
    with torch.no_grad():
        for param in agent.target_critic.parameters():
            param.add_(1.0)  # targets apart from the critics
    old_target = [p.detach().clone() for p in agent.target_critic.parameters()]
    batch = one_step_batch(
        torch.randn(1, 16, OBS_DIM),
        torch.zeros(1, 16, 1, dtype=torch.int64),
        torch.ones(1, 16),
        torch.randn(1, 16, OBS_DIM),
        torch.zeros(1, 16),
    )
    _, failures = agent.update(batch, 1.0, torch.Generator().manual_seed(0))
    assert failures == {}
    for old, new, critic in zip(old_target, agent.target_critic.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * critic.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kind, target", [("q_head", "expected"), ("q_head", "sampled"), ("concat", "expected"), ("concat", "sampled")]
)
def test_every_critic_form_and_target_learns_a_fixed_regression(kind, target, make_agent):
    # With the discount 0 the target is the reward itself. An update reports the loss
    # Σ_j mean_b (Q_j(s_b, a_b) − r_b)² of the critics before its step, and 200 critic steps on one
    # batch must bring each critic's squared error on the taken actions below 5% of where it
    # started (errors of order 1). The errors are read off the critics, not off the reported loss.
    agent = make_agent(
        OBS_DIM,
        ACTIONS,
        GumbelSoftmaxSelector(hard=False),
        critic={"kind": kind, "lr": 1e-2},
        gamma=0.0,
        critic_target=target,
    )
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(1, 32, OBS_DIM, generator=generator)
    action = torch.randint(ACTIONS, (1, 32, 1), generator=generator)
    reward = obs[..., 0] + action[..., 0].float()
    batch = one_step_batch(obs, action, reward, torch.randn(1, 32, OBS_DIM, generator=generator), torch.zeros(1, 32))

    def squared_errors() -> torch.Tensor:  # [E]
        with torch.no_grad():
            values = agent.critic.values(agent.network_inputs(obs), F.one_hot(action, ACTIONS).float())[0, ..., 0]
        return (values - reward[0]).square().mean(-1)

    before = squared_errors()
    metrics, failures = agent.update(batch, 1.0, generator)
    assert failures == {}
    torch.testing.assert_close(metrics["losses/critic"][0], before.sum())
    for _ in range(200):
        assert agent.update(batch, 1.0, generator)[1] == {}
    assert before.min() > 0.5 and (squared_errors() < 0.05 * before).all(), (before, squared_errors())


def test_normaliser_tracks_the_mean_and_variance_of_what_it_observed(make_agent):
    agent = make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), normalize_observations=True)
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randn(1, n, OBS_DIM, generator=generator) * torch.tensor([1.0, 10.0, 0.01]) + 5.0 for n in (1, 4, 7, 4)
    ]
    for batch in batches:
        agent.observe(batch)
    seen = torch.cat(batches, dim=1)[0].double().numpy()
    np.testing.assert_allclose(agent.normalizer.mean[0].numpy(), seen.mean(0), rtol=1e-5)
    np.testing.assert_allclose(agent.normalizer.var[0].numpy(), seen.var(0), rtol=1e-4)
    # the networks see standardised inputs
    obs = torch.tensor(seen[:5], dtype=torch.float32)
    standardised = (obs - torch.tensor(seen.mean(0), dtype=torch.float32)) / torch.tensor(
        seen.std(0), dtype=torch.float32
    )
    torch.testing.assert_close(agent.logits(obs[None]), agent.actor(standardised[None]), rtol=1e-4, atol=1e-4)
    # and the statistics travel with the agent's state
    restored = make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), normalize_observations=True)
    restored.load_state_dict(agent.state_dict())
    assert torch.equal(restored.normalizer.var, agent.normalizer.var)


@pytest.mark.parametrize("members, repeats", [(1, 3), (2, 3)])
def test_batched_convolution_equals_each_networks_own_convolution(members, repeats):
    # Reference: network n's filters (member n // repeats's network n % repeats) applied to its
    # member's images by a plain conv2d, one network at a time; features position by position.
    networks = members * repeats
    encoder = EnsembleEncoder(members, repeats, (4, 6, 5), "cnn", channels=2)
    images = torch.randn(members, 7, 4, 6, 5, generator=torch.Generator().manual_seed(0))
    out = encoder(images)
    assert out.shape == (networks, 7, 2 * 4 * 3)
    for network in range(networks):
        weight = encoder.filters[network].t().reshape(2, 4, 3, 3)  # [channels, C, 3, 3]
        conv = torch.relu(F.conv2d(images[network // repeats], weight, encoder.bias[network, 0]))
        expected = conv.flatten(2).transpose(1, 2).flatten(1)  # [B, positions · channels]
        torch.testing.assert_close(out[network], expected, rtol=1e-5, atol=1e-6)


def test_ensemble_mlp_equals_each_networks_own_layers_drawn_like_nn_linear():
    # Reference: network n alone, F.linear and relu layer by layer with its own weights.
    mlp = EnsembleMLP(3, 5, [8, 6], 2)
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    out = mlp(x)
    for network in range(3):
        h = x[network]
        for index, (weight, bias) in enumerate(zip(mlp.weights, mlp.biases)):
            h = F.linear(h, weight[network].t(), bias[network, 0])
            h = torch.relu(h) if index < 2 else h
        torch.testing.assert_close(out[network], h, rtol=1e-5, atol=1e-6)
    # nn.Linear's initialisation: weights and biases uniform within ±1/sqrt(fan_in). Scaled by
    # that bound, the 348 draws are uniform on [-1, 1]: Kolmogorov-Smirnov at the 1% level.
    mlp.init_rows_(slice(None), torch.Generator().manual_seed(1))
    scaled = torch.cat([(p.detach() * math.sqrt(w.shape[1])).flatten() for w, b in mlp._layers for p in (w, b)])
    assert float(scaled.abs().max()) <= 1.0
    assert stats.kstest(scaled.double().numpy(), stats.uniform(-1, 2).cdf).pvalue > 0.01


def test_cnn_agent_updates_on_image_observations(make_agent):
    agent = make_agent((4, 10, 10), ACTIONS, GumbelSoftmaxSelector(hard=False), encoder="cnn", actor_update_every=1)
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(1, 8, 4, 10, 10, generator=generator) < 0.1).float()
    before = [p.detach().clone() for p in agent.actor.parameters()]
    batch = one_step_batch(images, torch.zeros(1, 8, 1, dtype=torch.int64), torch.ones(1, 8), images, torch.zeros(1, 8))
    metrics, failures = agent.update(batch, 1.0, generator)
    assert failures == {}
    assert all(math.isfinite(float(v)) for v in metrics.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters()))
    assert agent.logits(images).shape == (1, 8, 1, ACTIONS)
    with pytest.raises(ValueError, match="agent.encoder=cnn needs image observations"):
        make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), encoder="cnn")
    with pytest.raises(ValueError, match="agent.encoder must be one of"):
        make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), encoder="rnn")


# --------------------------------------------------------------------------------------------
# Randomness and masks reach every part of an update


def _random_batch(size: int = 16, mask: torch.Tensor | None = None) -> Batch:
    """The one member's batch [1, size, …]; `mask` [1, size, 1, A]."""
    generator = torch.Generator().manual_seed(3)
    return Batch(
        obs=torch.randn(1, size, OBS_DIM, generator=generator),
        action=torch.randint(ACTIONS, (1, size, 1), generator=generator),
        reward=torch.randn(1, size, 1, generator=generator),
        next_obs=torch.randn(1, size, OBS_DIM, generator=generator),
        terminated=torch.zeros(1, size),
        steps=torch.ones(1, size, dtype=torch.int64),
        mask=mask,
        next_mask=mask,
    )


@pytest.mark.parametrize("option", ["gumbel_softmax", "sample", "gumbel_rao", "straight_through", "argmax"])
def test_an_update_draws_only_from_the_generator_it_is_given(option, make_agent, compose_config):
    # Two identical agents, two generators in the same state, and the global generator in
    # different states: any draw from the global one (a generator dropped on the way to the
    # critic target or the actor step) makes the updates differ.
    selector = instantiate(compose_config(f"selector={option}").selector, _convert_="all")
    results = []
    for global_seed in (11, 12):
        agent = make_agent(OBS_DIM, ACTIONS, selector, actor_update_every=1, critic_target="sampled")
        torch.manual_seed(global_seed)
        generator = torch.Generator().manual_seed(5)
        for _ in range(3):
            assert agent.update(_random_batch(), 0.5, generator)[1] == {}
        results.append(
            torch.cat([p.detach().flatten() for p in [*agent.actor.parameters(), *agent.critic.parameters()]])
        )
    assert torch.equal(results[0], results[1])


def test_the_actor_step_keeps_to_the_allowed_actions(make_agent):
    # Only action 0 is allowed in every state: the policy is certain, its entropy 0, and the
    # actor's gradient is zero however the critic values the masked actions.
    agent = make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), actor_update_every=1)
    set_critic_values(agent.critic, torch.tensor([[0.0, 9.0, 9.0], [0.0, 9.0, 9.0]]))
    mask = torch.zeros(1, 16, 1, ACTIONS, dtype=torch.bool)
    mask[..., 0] = True
    before = [p.detach().clone() for p in agent.actor.parameters()]
    metrics, failures = agent.update(_random_batch(mask=mask), 1.0, torch.Generator().manual_seed(0))
    assert failures == {}
    assert float(metrics["policy/entropy"]) == 0.0 and float(metrics["policy/grad_norm"]) == 0.0
    assert all(torch.equal(b, p) for b, p in zip(before, agent.actor.parameters()))


def _replace_gradients(params, value: float) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks that make every gradient of `params` equal `value` wherever autograd computes one."""
    return [param.register_hook(lambda grad: torch.full_like(grad, value)) for param in params]


def _snapshot(agent: ActorCritic, parts: tuple[str, ...]) -> list[torch.Tensor]:
    """Copies of the parameters and the optimizer state (moments, step counts) of `parts`."""
    tensors = []
    for part in parts:
        optimizer = getattr(agent, f"{part}_optimizer")
        tensors += [*getattr(agent, part).parameters(), *optimizer.exp_avg, *optimizer.exp_avg_sq, optimizer.steps]
        if part == "critic":
            tensors += list(agent.target_critic.parameters())
    return [tensor.detach().clone() for tensor in tensors]


LOSS_TEXT = {"nan": "nan", "inf": "-?inf", "finite": r"-?\d+(\.\d+)?(e[-+]\d+)?"}
GRADIENT_TEXT = {0.0: "0", math.inf: "inf", None: r"\S+"}


@pytest.mark.parametrize("part", ["critic", "actor"])
@pytest.mark.parametrize("loss, gradient", [("nan", 0.0), ("finite", math.inf), ("inf", None)])
def test_a_step_with_a_non_finite_loss_or_gradient_norm_is_refused(part, loss, gradient, make_agent):
    # A finite loss can still have an infinite gradient (a log or square root at 0); either one
    # alone must stop the step before the optimizer applies it, and `update` reports the part and
    # both values. The critic's loss is poisoned by the rewards; the actor's, with the critics'
    # target left finite, by the entropy coefficient α; `gradient` (None: autograd's own) replaces
    # every gradient of the part.
    poison = {"nan": math.nan, "inf": math.inf, "finite": 1.0}[loss]
    agent = make_agent(
        OBS_DIM,
        ACTIONS,
        GumbelSoftmaxSelector(hard=False),
        actor_update_every=1,
        entropy_backup=False,
        target_entropy_fraction=None,
        entropy_coef=poison if part == "actor" else 0.1,
    )
    batch = _random_batch()
    if part == "critic":
        batch = dataclasses.replace(batch, reward=batch.reward * poison)
    if gradient is not None:
        _replace_gradients(getattr(agent, part).parameters(), gradient)
    # A refused critic step skips the whole update (the actor step is not tried).
    unchanged = ("actor", "critic") if part == "critic" else ("actor",)
    before = _snapshot(agent, unchanged)
    _, failures = agent.update(batch, 1.0, torch.Generator().manual_seed(0))
    assert list(failures) == [0], failures
    message = f"{part} loss {LOSS_TEXT[loss]}, gradient norm {GRADIENT_TEXT[gradient]}"
    assert re.fullmatch(message, failures[0]), failures
    assert all(torch.equal(old, new) for old, new in zip(before, _snapshot(agent, unchanged)))


def test_a_non_finite_actor_step_names_the_actor_and_leaves_it_unchanged(make_agent):
    # After a good actor step, a gradient gone NaN: the actor, its optimizer and α stay where
    # the good step left them, and the metrics go on reporting that step.
    agent = make_agent(
        OBS_DIM,
        ACTIONS,
        GumbelSoftmaxSelector(hard=False),
        actor_update_every=1,
        entropy_coef=0.1,
        target_entropy_fraction=0.5,
        entropy_lr=1e-2,
    )
    generator = torch.Generator().manual_seed(0)
    good, failures = agent.update(_random_batch(), 1.0, generator)
    assert failures == {}

    def actor_state() -> list[torch.Tensor]:
        return [*_snapshot(agent, ("actor",)), agent.log_entropy_coef.clone()]

    before = actor_state()
    _replace_gradients(agent.actor.parameters(), math.nan)
    metrics, failures = agent.update(_random_batch(), 1.0, generator)
    assert list(failures) == [0], failures
    assert re.fullmatch(f"actor loss {LOSS_TEXT['finite']}, gradient norm nan", failures[0]), failures
    assert all(torch.equal(old, new) for old, new in zip(before, actor_state()))
    for tag in ("losses/actor", "policy/entropy", "policy/grad_norm", "policy/entropy_coef"):
        assert torch.equal(metrics[tag], good[tag]), tag


def test_a_skipped_update_still_counts_towards_the_actor_delay(make_agent):
    # With actor_update_every=2 the actor steps on updates 0, 2, 4, …; a refused update 0 (NaN
    # rewards) still counts, so update 1 leaves the actor and update 2 moves it.
    agent = make_agent(OBS_DIM, ACTIONS, GumbelSoftmaxSelector(hard=False), actor_update_every=2)
    generator = torch.Generator().manual_seed(0)
    good = _random_batch()
    bad = dataclasses.replace(good, reward=torch.full_like(good.reward, math.nan))
    assert agent.update(bad, 1.0, generator)[1][0].startswith("critic loss nan")
    changed = []
    for _ in range(2):
        before = [p.detach().clone() for p in agent.actor.parameters()]
        assert agent.update(good, 1.0, generator)[1] == {}
        changed.append(any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters())))
    assert changed == [False, True]


def test_the_configured_learning_rates_set_the_size_of_the_first_steps(make_agent):
    # Adam's first step moves each parameter by lr · g / (|g| + 1e-8): by the learning rate
    # itself wherever the gradient is far from 0, whatever clipping did to its scale.
    rates = {"actor": 2e-3, "critic": 5e-3, "entropy": 7e-3}
    agent = make_agent(
        OBS_DIM,
        ACTIONS,
        GumbelSoftmaxSelector(hard=False),
        actor={"lr": rates["actor"]},
        critic={"lr": rates["critic"]},
        entropy_lr=rates["entropy"],
        entropy_coef=0.1,
        target_entropy_fraction=0.5,
        actor_update_every=1,
    )
    parts = {"actor": agent.actor, "critic": agent.critic}
    before = {name: [p.detach().clone() for p in part.parameters()] for name, part in parts.items()}
    log_alpha = float(agent.log_entropy_coef[0])
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(1, 64, OBS_DIM, generator=generator)
    action = torch.randint(ACTIONS, (1, 64, 1), generator=generator)
    batch = one_step_batch(obs, action, torch.randn(1, 64, generator=generator), obs.flip(1), torch.zeros(1, 64))
    assert agent.update(batch, 1.0, generator)[1] == {}
    for name, part in parts.items():
        largest = max(float((p.detach() - old).abs().max()) for p, old in zip(part.parameters(), before[name]))
        assert largest == pytest.approx(rates[name], rel=1e-3), name
    assert abs(float(agent.log_entropy_coef[0]) - log_alpha) == pytest.approx(rates["entropy"], rel=1e-3)
