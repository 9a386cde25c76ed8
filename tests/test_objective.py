"""One objective for every selector: with twin critics, every selector's actor gradient estimates
the gradient of E_{a~π}[Q̂(s, a)], Q̂(s, a) = min_j Q_j(s, a), the objective whose exact gradient
the diagnostics compute.

The critics here are real twin critics (rlgumbel.networks) whose members disagree on which of
them is lower from one action to the next, so that `y · min_j Q_j` and `min_j (y · Q_j)` differ:
an estimator that values action vectors by the latter fails these tests. Actions have one
component (D = 1): logits and action vectors are [S, 1, A].
"""

from __future__ import annotations

import pytest
import torch

from rlgumbel.agents.actor_critic import MemberCritic
from rlgumbel.diagnostics import logit_gradients
from rlgumbel.networks import ConcatCritic, QHeadCritic
from rlgumbel.schedules import ConstantSchedule
from rlgumbel.selectors import (
    ArgmaxSelector,
    ExpectedSelector,
    GumbelSoftmaxSelector,
    ReinmaxSelector,
    SampleSelector,
    StraightThroughSelector,
)

STATES, FEATURES, ACTIONS = 5, 3, 4


def twin_critic(kind: type, seed: int = 0) -> QHeadCritic | ConcatCritic:
    """A float64 twin critic of a population of one, with weights drawn from `seed` (not the
    global generator)."""
    generator = torch.Generator().manual_seed(seed)
    critic = kind(1, FEATURES, ACTIONS, [16], ensemble=2, pessimism=1.0).double()
    with torch.no_grad():
        for param in critic.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float64))
    return critic


def problem(kind: type) -> tuple[torch.Tensor, torch.Tensor, QHeadCritic | ConcatCritic]:
    generator = torch.Generator().manual_seed(1)
    obs = torch.randn(STATES, FEATURES, generator=generator, dtype=torch.float64)
    logits = torch.randn(STATES, 1, ACTIONS, generator=generator, dtype=torch.float64)
    critic = twin_critic(kind)
    with torch.no_grad():
        each = critic.bind(obs[None]).components_each(torch.softmax(logits, -1)[None])[0, :, :, 0]  # [2, S, A]
    lower = each.argmin(0)  # which member is lower, per state and action
    # The premise: some actions are valued lower by critic 0 and others by critic 1 (for the
    # q_head critic, within every state, where the two ways of valuing y differ).
    mixed = (lower == 0).any(-1) & (lower == 1).any(-1)
    assert mixed.all() if kind is QHeadCritic else mixed.any()
    return obs, logits, critic


def test_q_head_values_action_vectors_by_the_per_action_minimum():
    obs, _, critic = problem(QHeadCritic)
    values = critic.bind(obs[None])  # the one member's values: [1, …] below
    relaxed = torch.softmax(
        torch.randn(STATES, 1, ACTIONS, generator=torch.Generator().manual_seed(2), dtype=torch.float64), -1
    )
    minimum = values.components_each(relaxed[None])[0, :, :, 0].amin(0)  # [S, A]
    torch.testing.assert_close(values.of(relaxed[None])[0], (relaxed[:, 0] * minimum).sum(-1), rtol=1e-12, atol=1e-12)
    # they differ here
    assert (values.of_each(relaxed[None])[0, ..., 0].amin(0) > values.of(relaxed[None])[0] + 1e-6).any()
    for action in range(ACTIONS):  # at the vertices every critic kind agrees with Q̂
        one_hot = torch.nn.functional.one_hot(torch.full((STATES, 1), action), ACTIONS).double()
        torch.testing.assert_close(values.of(one_hot[None])[0], minimum[:, action])


def test_concat_values_agree_with_the_per_action_minimum_at_one_hot_actions():
    obs, _, critic = problem(ConcatCritic)
    values = critic.bind(obs[None])  # the one member's values: [1, …] below
    for action in range(ACTIONS):
        one_hot = torch.nn.functional.one_hot(torch.full((STATES, 1), action), ACTIONS).double()
        every = values.components(one_hot[None])[0, :, 0, action]
        torch.testing.assert_close(values.of(one_hot[None])[0], every, rtol=1e-12, atol=1e-12)


# Deterministic estimators that equal the exact gradient for a critic linear in the action
# vector: straight-through at τ = 1 backpropagates J(softmax(θ))·∇_y Q̂ = J(softmax(θ))·Q̂(s, ·).
EXACT = {
    "expected": (ExpectedSelector, QHeadCritic),
    "expected_concat": (ExpectedSelector, ConcatCritic),
    "straight_through": (StraightThroughSelector, QHeadCritic),
    "argmax": (lambda: ArgmaxSelector(epsilon=ConstantSchedule(0.0)), QHeadCritic),
}
# Unbiased stochastic estimators: the score function (any critic), and ReinMax at τ = 1 for a
# critic linear in the action vector (E_D[2·J(π_D)u − ½·J(π0)u] = J(π0)u, Liu et al. 2023).
UNBIASED = {
    "sample": (SampleSelector, QHeadCritic),
    "sample_concat": (SampleSelector, ConcatCritic),
    "reinmax": (ReinmaxSelector, QHeadCritic),
}
ESTIMATES = 20_000


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_estimators_equal_the_gradient_of_the_shared_objective(name):
    make, kind = EXACT[name]
    obs, logits, critic = problem(kind)
    exact, estimates = logit_gradients(
        logits, obs, MemberCritic(critic, 0).bind, make(), 1.0, torch.Generator().manual_seed(3), samples=4
    )
    for estimate in estimates:
        torch.testing.assert_close(estimate, exact, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(UNBIASED))
def test_unbiased_estimators_average_to_the_gradient_of_the_shared_objective(name):
    # Each coordinate of the mean of M = 20,000 independent estimates lies within 5 standard
    # errors (sd / sqrt(M), the sample sd) of the exact gradient: by the central limit theorem
    # a correct estimator misses with probability < 6e-7 per coordinate, 20 coordinates here.
    # Valuing action vectors by min_j (y · Q_j) instead moves ReinMax's mean by up to 80
    # standard errors on this problem, far outside the band.
    make, kind = UNBIASED[name]
    obs, logits, critic = problem(kind)
    exact, estimates = logit_gradients(
        logits, obs, MemberCritic(critic, 0).bind, make(), 1.0, torch.Generator().manual_seed(4), samples=ESTIMATES
    )
    mean, standard_error = estimates.mean(0), estimates.std(0) / ESTIMATES**0.5
    assert (standard_error > 0).any()
    assert ((mean - exact).abs() <= 5 * standard_error + 1e-12).all(), (mean - exact) / standard_error


@pytest.mark.parametrize("kind", [QHeadCritic, ConcatCritic])
def test_hard_gumbel_softmax_differs_from_soft_only_through_a_nonlinear_critic(kind):
    """Hard forwards one-hot(argmax y), soft forwards y; both backpropagate through y. A q_head
    critic is linear in the action vector, so its gradient ignores the forward value and the two
    coincide (to rounding); the concat critic's does not."""
    obs, logits, critic = problem(kind)
    gradients = []
    for hard in (False, True):
        leaf = logits.clone().requires_grad_(True)
        selector = GumbelSoftmaxSelector(hard=hard)
        selection = selector.select(leaf, 0.5, torch.Generator().manual_seed(3))
        objective = selector.actor_objective(selection, MemberCritic(critic, 0).bind(obs)).sum()
        gradients.append(torch.autograd.grad(objective, leaf)[0])
    if kind is QHeadCritic:
        torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-12, atol=1e-12)
    else:
        assert (gradients[0] - gradients[1]).abs().max() > 1e-3
