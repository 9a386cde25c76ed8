"""The gradient-estimator laboratory: straight-through, Gumbel-Rao, ReinMax and the exact
all-actions gradient, the conditional Gumbel sampler behind Gumbel-Rao, and the diagnostics
that measure an estimator's bias and variance.

Sampling tests use fixed generator seeds, so they are deterministic; tolerances are derived in
comments (a 5-standard-error band is missed by a correct implementation with probability
< 6e-7 per coordinate; a KS or chi-square criterion p > 1e-3 with probability 1e-3 per test).
The invariants every selector keeps (finite, on the simplex, masks respected) reuse the
helpers of test_selectors.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from test_selectors import (
    EXTREME_CASES,
    HAND_LOGITS,
    HAND_Q,
    MASKED_LOGITS,
    NUM_SAMPLES,
    SEED_NOTE_DISTRIBUTIONS,
    LinearCritic,
    all_outputs_backward,
    assert_categorical,
    assert_valid_selection,
    exact_policy_gradient,
    hand_probabilities,
)
from torch import nn
from torch.nn import functional as F

from rlgumbel.diagnostics import estimator_statistics, gradient_diagnostics, logit_gradients, policy_gradients
from rlgumbel.names import option_name
from rlgumbel.selectors import (
    ActionSelector,
    ExpectedSelector,
    GappedStraightThroughSelector,
    GumbelRaoSelector,
    GumbelSoftmaxSelector,
    ReinmaxSelector,
    SampleSelector,
    StraightThroughSelector,
    conditional_perturbed_logits,
    gumbel_max_sample,
    perturbed_logits,
)

NEW_SELECTORS = {
    "straight_through": StraightThroughSelector,
    "gumbel_rao": lambda: GumbelRaoSelector(samples=4),
    "reinmax": ReinmaxSelector,
    "expected": ExpectedSelector,
    "gapped_straight_through": lambda: GappedStraightThroughSelector(gap=1.0),
}


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def softmax_list(values: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def jacobian_times(pi: list[float], upstream: list[float]) -> list[float]:
    """(diag(π) − π πᵀ) u, by hand."""
    dot = sum(p * u for p, u in zip(pi, upstream))
    return [p * (u - dot) for p, u in zip(pi, upstream)]


def hand_gradient(selector: ActionSelector, temperature: float, seed: int, dtype=torch.float64):
    """Gradient w.r.t. HAND_LOGITS of the selector's objective with the linear critic HAND_Q
    (one state, one component: [1, 1, A])."""
    logits = torch.tensor([[HAND_LOGITS]], dtype=dtype, requires_grad=True)
    critic_q = torch.tensor([[HAND_Q]], dtype=dtype, requires_grad=True)
    selection = selector.select(logits, temperature, rng(seed))
    objective = selector.actor_objective(selection, LinearCritic(critic_q))
    assert objective.shape == (1,)
    objective.sum().backward()
    return selection, logits.grad[0, 0].tolist(), critic_q.grad


# --------------------------------------------------------------------------------------------
# Conditional Gumbel draws (Gumbel-Rao)


def rejection_draws(logits: torch.Tensor, action: int, n: int, seed: int) -> torch.Tensor:
    """Unconditional `logits + g` [n, A] kept where their argmax is `action`: the reference."""
    perturbed = perturbed_logits(logits.expand(n, -1), rng(seed))
    return perturbed[perturbed.argmax(-1) == action]


def test_conditional_draws_have_their_argmax_at_the_conditioning_action():
    logits = torch.cat([torch.randn(400, 6, generator=rng(0)) * scale for scale in (0.1, 1.0, 10.0)])
    logits[::7, 2] = -math.inf
    logits[::11, 4] = -math.inf
    logits[5, :] = torch.tensor([1e30, 1e30, -1e30, 0.0, 5.0, 1e30])  # ties at float32's edge
    action = gumbel_max_sample(logits, rng(1))
    draws = conditional_perturbed_logits(logits, action, 16, rng(2))
    assert draws.shape == (16, 1200, 6) and not draws.requires_grad
    assert (draws.argmax(-1) == action).all()
    masked = torch.isneginf(logits).expand_as(draws)
    assert torch.isneginf(draws[masked]).all() and torch.isfinite(draws[~masked]).all()


FLOAT32_OR_MASKED = st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False), st.just(-math.inf))


@settings(max_examples=60, deadline=None)
@given(st.lists(FLOAT32_OR_MASKED, min_size=2, max_size=6), st.integers(0, 2**31 - 1))
def test_conditional_draws_argmax_property(row, seed):
    # Any float32 logits with at least one legal action, conditioned on a Gumbel-max sample.
    logits = torch.tensor(row, dtype=torch.float32)
    if torch.isneginf(logits).all():
        logits[0] = 0.0
    logits = logits.expand(8, -1)
    action = gumbel_max_sample(logits, rng(seed))
    draws = conditional_perturbed_logits(logits, action, 4, rng(seed + 1))
    assert (draws.argmax(-1) == action).all()
    assert not torch.isnan(draws).any()


@pytest.mark.parametrize("action", [1, 3], ids=["p0.1", "p0.5"])
def test_conditional_draws_match_rejection_sampling(action):
    # The seed note's distribution [0.3, 0.1, 0.1, 0.5]; rejection from 200k unconditional draws
    # keeps ~20k (action 1) or ~100k (action 3). Two-sample KS per coordinate against as many
    # conditional draws: p > 1e-3 for each of the 4 coordinates (a correct sampler fails one of
    # them with probability < 4e-3). The swap construction (unconditional draws with the
    # maximum swapped into `action`) has the right maximum but wrong other coordinates; the
    # test's sample size rejects it at p < 1e-10, which shows the test has power.
    logits = torch.tensor(SEED_NOTE_DISTRIBUTIONS["seed004_4_actions"]).log()
    reference = rejection_draws(logits, action, NUM_SAMPLES, seed=0)
    n = reference.shape[0]
    conditional = conditional_perturbed_logits(logits.expand(n, -1), torch.full((n,), action), 1, rng(1))[0]
    for coordinate in range(4):
        pvalue = stats.ks_2samp(reference[:, coordinate].numpy(), conditional[:, coordinate].numpy()).pvalue
        assert pvalue > 1e-3, (coordinate, pvalue)
    unconditional = perturbed_logits(logits.expand(n, -1), rng(2))
    rows, top = torch.arange(n), unconditional.argmax(-1)
    swapped = unconditional.clone()
    swapped[rows, action], swapped[rows, top] = unconditional[rows, top], unconditional[rows, action]
    worst = min(stats.ks_2samp(reference[:, c].numpy(), swapped[:, c].numpy()).pvalue for c in range(4))
    assert worst < 1e-10


def test_conditional_maximum_is_gumbel_at_logsumexp():
    # Step 1 of the construction: z_D ~ Gumbel(logsumexp θ) whatever D; KS against scipy, 50k draws.
    logits = torch.tensor([0.7, -1.2, 2.0, 0.1], dtype=torch.float64)
    action = torch.full((50_000,), 1)  # the least likely action: its draw is still Gumbel(L)
    top = conditional_perturbed_logits(logits.expand(50_000, -1), action, 1, rng(0))[0, :, 1]
    location = logits.logsumexp(-1).item()
    assert stats.kstest(top.numpy(), "gumbel_r", args=(location,)).pvalue > 1e-3


# --------------------------------------------------------------------------------------------
# Hand-worked gradients: 3 actions, linear critic Q(s, y) = y·HAND_Q


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_straight_through_gradient_is_the_tempered_softmax_jacobian(temperature):
    # ∂/∂l_b [one_hot(D)·Q] backpropagated through s = softmax(l/τ): (1/τ)·s_b (Q_b − s·Q),
    # whatever D was drawn.
    s = softmax_list(HAND_LOGITS, temperature)
    expected = [g / temperature for g in jacobian_times(s, HAND_Q)]
    seen = set()
    for seed in range(30):
        selection, gradient, _critic_grad = hand_gradient(StraightThroughSelector(), temperature, seed)
        assert selection.action.tolist() == [F.one_hot(selection.env_action, 3)[0].double().tolist()]
        assert gradient == pytest.approx(expected, rel=1e-12, abs=1e-15)
        seen.add(selection.env_action.item())
    assert seen == {0, 1, 2}


def test_straight_through_at_temperature_one_is_exact_for_a_linear_critic():
    # With τ = 1, J(softmax(l))·Q = p ⊙ (Q − p·Q), the exact gradient: a linear critic (Q-head)
    # makes straight-through unbiased and noiseless.
    _, gradient, _ = hand_gradient(StraightThroughSelector(), 1.0, seed=0)
    assert gradient == pytest.approx(exact_policy_gradient(), rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_reinmax_gradient_matches_the_published_formula(temperature):
    # Liu et al. (2023), Algorithm 2: 2·J(π_D)Q − ½·J(π0)Q, π_D = (softmax(l/τ) + one_hot(D))/2.
    p = hand_probabilities()
    seen = set()
    for seed in range(30):
        selection, gradient, _ = hand_gradient(ReinmaxSelector(), temperature, seed)
        drawn = selection.env_action.item()
        seen.add(drawn)
        shifted = [(s + (1.0 if a == drawn else 0.0)) / 2 for a, s in enumerate(softmax_list(HAND_LOGITS, temperature))]
        expected = [2 * x - 0.5 * y for x, y in zip(jacobian_times(shifted, HAND_Q), jacobian_times(p, HAND_Q))]
        assert gradient == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert selection.action.tolist() == [F.one_hot(selection.env_action, 3)[0].double().tolist()]
    assert seen == {0, 1, 2}


def per_row_gradients(
    selector: ActionSelector, logits: list[float], q: list[float], temperature: float, n: int, seed: int
) -> torch.Tensor:
    """[n, A] i.i.d. draws of the selector's gradient for one state (n rows of the same logits)."""
    leaf = torch.tensor(logits, dtype=torch.float64).repeat(n, 1).requires_grad_()
    critic = LinearCritic(torch.tensor(q, dtype=torch.float64).repeat(n, 1))
    selector.actor_objective(selector.select(leaf, temperature, rng(seed)), critic).sum().backward()
    return leaf.grad


def test_reinmax_is_unbiased_at_temperature_one_for_a_linear_critic():
    # By hand, τ = 1: π_D = (p + e_D)/2, π_D·Q = (V + Q_D)/2, so 2·J(π_D)Q has component
    # (p_i + δ_iD)(Q_i − (V + Q_D)/2), whose mean over D ~ p is 1.5·p_i(Q_i − V); minus
    # ½·J(p)Q = ½·p_i(Q_i − V) leaves p_i(Q_i − V), the exact gradient. 200k draws, 5 SE.
    # At τ = 2.5 the estimator is biased (the mean sits > 50 SE off), so the band has power.
    exact = torch.tensor(exact_policy_gradient(), dtype=torch.float64)
    for temperature, unbiased in ((1.0, True), (2.5, False)):
        draws = per_row_gradients(ReinmaxSelector(), HAND_LOGITS, HAND_Q, temperature, NUM_SAMPLES, seed=0)
        standard_error = draws.std(0) / math.sqrt(NUM_SAMPLES)
        off = ((draws.mean(0) - exact).abs() / standard_error).max().item()
        assert (off < 5) if unbiased else (off > 50), (temperature, off)


def test_reinmax_at_temperature_one_is_half_exact_half_score_function():
    # Expanding the line above: component i of ReinMax at τ = 1 is
    # ½·p_i(Q_i − V) + ½·(δ_iD − p_i)(Q_D − V), the mean of the exact gradient and the
    # score-function estimate with baseline V, for every draw D (so a quarter of its variance).
    exact = exact_policy_gradient()
    seen = set()
    for seed in range(30):
        selection, reinmax, _ = hand_gradient(ReinmaxSelector(), 1.0, seed)
        _, score_function, _ = hand_gradient(SampleSelector(), 1.0, seed)  # same seed, same D
        seen.add(selection.env_action.item())
        assert reinmax == pytest.approx([(e + s) / 2 for e, s in zip(exact, score_function)], rel=1e-12, abs=1e-15)
    assert seen == {0, 1, 2}


def test_expected_gradient_is_the_exact_gradient_and_leaves_the_critic_alone():
    for seed in range(5):
        _, gradient, critic_grad = hand_gradient(ExpectedSelector(), 0.3, seed)
        assert gradient == pytest.approx(exact_policy_gradient(), rel=1e-12)
        assert critic_grad is None, "the exact objective must not train the critic"


@pytest.mark.parametrize("temperature, gap", [(1.0, 1.0), (0.5, 0.3)])
def test_gapped_straight_through_gradient_is_the_jacobian_at_the_moved_logits(temperature, gap):
    # Fan et al. 2022: with the sample D, the backward pass differentiates softmax((θ + m)/τ),
    # m fixed: θ_D + m_D = max θ, and θ_i + m_i = min(θ_i, max θ − gap) for i ≠ D. Its gradient
    # for the linear critic u = HAND_Q is J(s)·u / τ, s = softmax((θ + m)/τ), J = diag(s) − s sᵀ.
    # By hand for each D (HAND_LOGITS = [0.2, −0.5, 1.0]: max 1.0).
    seen = set()
    for seed in range(30):
        selection, gradient, _ = hand_gradient(GappedStraightThroughSelector(gap=gap), temperature, seed)
        sampled = selection.env_action.item()
        seen.add(sampled)
        top = max(HAND_LOGITS)
        moved = [top if i == sampled else min(v, top - gap) for i, v in enumerate(HAND_LOGITS)]
        soft = softmax_list(moved, temperature)
        assert selection.action.tolist() == [[[1.0 if i == sampled else 0.0 for i in range(3)]]]
        assert gradient == pytest.approx([g / temperature for g in jacobian_times(soft, HAND_Q)], rel=1e-12)
    assert seen == {0, 1, 2}


def test_gapped_straight_through_keeps_masked_logits_masked_and_refuses_a_bad_gap():
    logits = torch.tensor([[[0.3, -math.inf, 1.2, 0.0]]], requires_grad=True)
    selection = GappedStraightThroughSelector(gap=2.0).select(logits, 1.0, rng(0))
    (gradient,) = torch.autograd.grad((selection.action * torch.tensor([1.0, 5.0, -1.0, 2.0])).sum(), logits)
    assert torch.isfinite(gradient).all() and gradient[0, 0, 1] == 0
    for gap in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="selector.gap must be a finite number > 0"):
            GappedStraightThroughSelector(gap=gap)


# Five actions, τ = 0.5: where straight-through Gumbel-softmax is biased and noisy.
GR_LOGITS = [0.5, -0.3, 1.2, 0.0, -1.0]
GR_Q = [1.0, -0.5, 0.2, 2.0, -1.5]


def test_gumbel_rao_has_the_expectation_of_straight_through_gumbel_and_less_variance():
    # Given D, GR(K=1)'s noise is the conditional Gumbel, so (D, g) is distributed as for
    # straight-through Gumbel-softmax: same gradient distribution. For every K the mean is
    # E[ST-GS | D] averaged over D, the same expectation (Rao-Blackwell). 100k draws each; the
    # means must agree within 5 SE of their difference, sqrt(var_a/n + var_b/n).
    # Variance: Var_K = Var(E[·|D]) + E[Var(·|D)]/K, so Var_1/K <= Var_K <= Var_1. Measured
    # Var_10/Var_1 = 0.31 here; with 100k draws the variance estimates are within ~1%, so
    # asserting < 0.5 leaves a wide margin while still failing for an estimator that ignores K.
    n = 100_000
    reference = per_row_gradients(GumbelSoftmaxSelector(hard=True), GR_LOGITS, GR_Q, 0.5, n, seed=3)
    variances = {}
    for samples in (1, 10):
        draws = per_row_gradients(GumbelRaoSelector(samples=samples), GR_LOGITS, GR_Q, 0.5, n, seed=4)
        standard_error = ((draws.var(0) + reference.var(0)) / n).sqrt()
        off = ((draws.mean(0) - reference.mean(0)).abs() / standard_error).max().item()
        assert off < 5, (samples, off)
        variances[samples] = draws.var(0).sum().item()
    reference_variance = reference.var(0).sum().item()
    assert variances[1] == pytest.approx(reference_variance, rel=0.05)
    assert variances[1] / 10 <= variances[10] < 0.5 * variances[1], variances


def test_gumbel_rao_without_gradient_skips_the_conditional_draws_but_acts_the_same():
    # Critic targets call select() under no_grad: the same env actions (the conditional draws
    # come after the Gumbel-max sample), the same one-hot action vector.
    logits = torch.randn(64, 5, generator=rng(0))
    with torch.no_grad():
        fast = GumbelRaoSelector(samples=8).select(logits, 0.5, rng(1))
    full = GumbelRaoSelector(samples=8).select(logits.clone().requires_grad_(), 0.5, rng(1))
    assert torch.equal(fast.env_action, full.env_action)
    assert torch.equal(fast.action, full.action.detach()) and not fast.action.requires_grad


# --------------------------------------------------------------------------------------------
# Invariants shared with the existing selectors


def temperatures_for(kind: str, candidates: list[float]) -> list[float]:
    return [t for t in candidates if t >= NEW_SELECTORS[kind]().min_temperature]


@pytest.mark.parametrize("case", list(EXTREME_CASES), ids=list(EXTREME_CASES))
@pytest.mark.parametrize("kind", list(NEW_SELECTORS), ids=list(NEW_SELECTORS))
def test_new_selectors_are_finite_and_on_the_simplex_for_extreme_inputs(kind, case):
    dtype, rows, atol = EXTREME_CASES[case]
    for temperature in temperatures_for(kind, [1e-8, 1.0, 1e4]):
        logits = torch.tensor(rows, dtype=dtype).repeat(64, 1)
        leaf = logits.clone().requires_grad_()
        selection = NEW_SELECTORS[kind]().select(leaf, temperature, rng(0))
        assert_valid_selection(selection, logits, atol)
        assert torch.equal(selection.action, F.one_hot(selection.env_action, logits.shape[1]).to(dtype))
        gradient = all_outputs_backward(selection, leaf, torch.randn(logits.shape, generator=rng(1)).to(dtype))
        assert not torch.isnan(gradient).any()
        # float16 may round a tie's 1/τ-sized gradient to ±inf at tiny τ (as in test_selectors)
        if not (dtype == torch.float16 and temperature < 1e-4):
            assert torch.isfinite(gradient).all(), (temperature, gradient)


@pytest.mark.parametrize("kind", list(NEW_SELECTORS), ids=list(NEW_SELECTORS))
def test_new_selectors_never_choose_masked_actions_and_give_them_no_gradient(kind):
    logits = torch.tensor(MASKED_LOGITS).repeat(2000, 1)
    masked = torch.isneginf(logits)
    selector = NEW_SELECTORS[kind]()
    for temperature in temperatures_for(kind, [1e-8, 0.5, 1.0, 1e4]):
        leaf = logits.clone().requires_grad_()
        selection = selector.select(leaf, temperature, rng(0))
        assert not masked.gather(-1, selection.env_action.unsqueeze(-1)).any()
        assert (selection.action[masked] == 0).all() and (selection.probs[masked] == 0).all()
        assert_valid_selection(selection, logits, 1e-5)
        gradient = all_outputs_backward(selection, leaf, torch.randn(logits.shape, generator=rng(1)))
        assert not torch.isnan(gradient).any() and (gradient[masked] == 0).all()
        # the actor objective too, with a critic that has finite values at masked actions
        leaf = logits.clone().requires_grad_()
        selection = selector.select(leaf, temperature, rng(2))
        critic = LinearCritic(torch.randn(logits.shape, generator=rng(3)))
        (gradient,) = torch.autograd.grad(selector.actor_objective(selection, critic).sum(), leaf)
        assert torch.isfinite(gradient).all() and (gradient[masked] == 0).all()
    actions = selector.act(logits, max(1.0, selector.min_temperature), rng(4), step=0)
    assert not masked.gather(-1, actions.unsqueeze(-1)).any()


@pytest.mark.parametrize("kind", list(NEW_SELECTORS), ids=list(NEW_SELECTORS))
@pytest.mark.parametrize("distribution", list(SEED_NOTE_DISTRIBUTIONS), ids=list(SEED_NOTE_DISTRIBUTIONS))
def test_new_selectors_sample_softmax_of_the_logits(kind, distribution):
    probs = torch.tensor(SEED_NOTE_DISTRIBUTIONS[distribution])
    logits = probs.log().expand(NUM_SAMPLES, -1)
    actions = NEW_SELECTORS[kind]().select(logits, 1.0, rng(0)).env_action
    assert_categorical(actions, torch.softmax(probs.log().double(), -1))


@pytest.mark.parametrize("kind", list(NEW_SELECTORS), ids=list(NEW_SELECTORS))
def test_new_selectors_statistics_describe_softmax_of_the_logits(kind):
    logits = torch.randn(100, 3, generator=rng(0))
    selection = NEW_SELECTORS[kind]().select(logits.clone().requires_grad_(), 1.5, rng(1))
    log_probs = torch.log_softmax(logits, -1)
    torch.testing.assert_close(selection.probs, log_probs.exp())
    torch.testing.assert_close(selection.entropy.detach(), -(log_probs.exp() * log_probs).sum(-1))
    assert not selection.probs.requires_grad
    assert selection.log_prob.requires_grad and selection.entropy.requires_grad


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf, 0])
@pytest.mark.parametrize("kind", list(NEW_SELECTORS), ids=list(NEW_SELECTORS))
def test_new_selectors_refuse_bad_temperatures(kind, temperature):
    with pytest.raises(ValueError, match="temperature"):
        NEW_SELECTORS[kind]().select(torch.zeros(2, 3), temperature, None)


# --------------------------------------------------------------------------------------------
# Refused configurations


@pytest.mark.parametrize("temperature", [0.999, 0.5, 1e-3])
def test_reinmax_refuses_temperatures_below_one(temperature):
    assert ReinmaxSelector.min_temperature == 1.0
    with pytest.raises(ValueError, match=r"selector=reinmax needs temperature >= 1\.0"):
        ReinmaxSelector().select(torch.zeros(2, 3), temperature, None)
    ReinmaxSelector().select(torch.zeros(2, 3), 1.0, None)  # the boundary is allowed


def test_other_selectors_accept_any_positive_temperature():
    for kind in ("straight_through", "gumbel_rao", "expected"):
        assert NEW_SELECTORS[kind]().min_temperature == 0.0


# --------------------------------------------------------------------------------------------
# Shipped configs


@pytest.mark.parametrize(
    "option,cls",
    [
        ("straight_through", StraightThroughSelector),
        ("gumbel_rao", GumbelRaoSelector),
        ("reinmax", ReinmaxSelector),
        ("expected", ExpectedSelector),
        ("gapped_straight_through", GappedStraightThroughSelector),
    ],
)
def test_new_selectors_compose_and_instantiate(option, cls, compose_config):
    cfg = compose_config(f"selector={option}")
    assert option_name(cfg.selector._target_) == option
    selector = instantiate(cfg.selector, _convert_="all")
    assert type(selector) is cls
    selection = selector.select(torch.zeros(4, 3), max(1.0, selector.min_temperature), rng(0))
    assert selection.env_action.shape == (4,)


def test_gumbel_rao_samples_override(compose_config):
    assert instantiate(compose_config("selector=gumbel_rao", "selector.samples=3").selector).samples == 3
    assert instantiate(compose_config("selector=gumbel_rao").selector).samples == 10


# --------------------------------------------------------------------------------------------
# Diagnostics


class FixedCritic:
    """A critic with one fixed Q-vector per state, linear in the action vector; `bind(obs)`
    looks each state up by its first feature (an index), so repeated batches find their Q."""

    def __init__(self, q: torch.Tensor) -> None:
        self.q = q  # [S, A]

    def bind(self, obs: torch.Tensor) -> LinearCritic:
        return LinearCritic(self.q[obs[:, 0].long()].unsqueeze(1))  # [B, 1, A]: one component


def small_problem(dtype=torch.float64):
    """A tiny MLP actor over 6 states (first feature = state index), logits [S, 1, A] of one
    categorical, and a fixed critic."""
    states, features, actions = 6, 3, 4
    obs = torch.cat(
        [torch.arange(states, dtype=dtype)[:, None], torch.randn(states, features - 1, generator=rng(0), dtype=dtype)],
        1,
    )
    actor = nn.Sequential(nn.Linear(features, 5), nn.Tanh(), nn.Linear(5, actions), nn.Unflatten(-1, (1, actions)))
    actor = actor.to(dtype)
    with torch.no_grad():  # initialised from a generator, not the global seed
        for index, param in enumerate(actor.parameters()):
            param.copy_(0.7 * torch.randn(param.shape, generator=rng(10 + index), dtype=dtype))
    critic = FixedCritic(torch.randn(states, actions, generator=rng(1), dtype=dtype))
    return actor, obs, critic


def test_exact_gradient_matches_finite_differences():
    # J(φ) = mean_s Σ_a softmax(actor_φ(s))_a Q(s, a). Central differences with step 1e-6 in
    # float64 have truncation error O(h²·J''') ~ 1e-12 and rounding ~1e-16/h = 1e-10.
    actor, obs, critic = small_problem()
    exact, _ = policy_gradients(actor, obs, critic.bind, ExpectedSelector(), 1.0, rng(0), samples=2)
    q = critic.q.unsqueeze(1)  # [S, 1, A]

    def objective() -> float:
        with torch.no_grad():
            return (torch.softmax(actor(obs), -1) * q).sum(-1).mean().item()

    numeric = []
    step = 1e-6
    with torch.no_grad():
        for param in actor.parameters():
            flat = param.view(-1)
            for index in range(flat.numel()):
                original = flat[index].item()
                flat[index] = original + step
                up = objective()
                flat[index] = original - step
                down = objective()
                flat[index] = original
                numeric.append((up - down) / (2 * step))
    torch.testing.assert_close(exact, torch.tensor(numeric, dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_batched_parameter_gradients_equal_a_loop_of_backward_passes():
    # Reference: the same logit gradients (same generator seed), mapped to the parameters one
    # estimate at a time with a plain backward pass each.
    actor, obs, critic = small_problem()
    selector, samples = GumbelSoftmaxSelector(hard=False), 8
    exact, estimates = policy_gradients(actor, obs, critic.bind, selector, 0.7, rng(5), samples)
    logits = actor(obs)
    exact_logits, logit_estimates = logit_gradients(logits, obs, critic.bind, selector, 0.7, rng(5), samples)
    params = list(actor.parameters())

    def to_params(cotangent: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(actor(obs), params, grad_outputs=cotangent)
        return torch.cat([g.flatten() for g in grads])

    torch.testing.assert_close(exact, to_params(exact_logits), rtol=1e-12, atol=1e-15)
    for m in range(samples):
        torch.testing.assert_close(estimates[m], to_params(logit_estimates[m]), rtol=1e-12, atol=1e-15)
    assert not torch.equal(estimates[0], estimates[1])  # independent noise per estimate


@pytest.mark.parametrize(
    "selector", [ExpectedSelector(), StraightThroughSelector()], ids=["expected", "straight_through"]
)
def test_exact_estimators_have_no_bias_and_no_variance(selector):
    # Expected is exact by construction; straight-through at τ = 1 with a linear critic is
    # J(softmax)·Q = the exact gradient. Every estimate must equal g*, which also checks that
    # the batched computation pairs each replica's rows with the right states.
    actor, obs, critic = small_problem()
    exact, estimates = policy_gradients(actor, obs, critic.bind, selector, 1.0, rng(0), samples=6)
    for estimate in estimates:
        torch.testing.assert_close(estimate, exact, rtol=1e-10, atol=1e-14)
    stats_ = gradient_diagnostics(actor, obs, critic.bind, selector, 1.0, rng(0), samples=6)
    assert stats_["estimator/cosine"] == pytest.approx(1.0, abs=1e-10)
    assert stats_["estimator/relative_bias"] < 1e-10 and stats_["estimator/variance"] < 1e-20
    assert stats_["estimator/grad_norm"] == pytest.approx(stats_["estimator/exact_norm"], rel=1e-10)


def test_diagnostics_tell_an_unbiased_estimator_from_a_biased_one():
    # Score function (sample) and ReinMax at τ = 1 on a linear critic are unbiased: their
    # relative bias is Monte-Carlo error, |mean − g*| ≈ sqrt(variance/M), asserted < 4 times
    # that floor (for a 1-d Gaussian the chance of exceeding 4 is 6e-5, less with more
    # effective dimensions). The soft Gumbel-softmax at τ = 2 is biased (it measured 0.57 of
    # |g*|, ~270 times its floor): it must come out above 10 times the floor.
    actor, obs, critic = small_problem()
    for selector, temperature, unbiased in (
        (SampleSelector(), 1.0, True),
        (ReinmaxSelector(), 1.0, True),
        (GumbelSoftmaxSelector(hard=False), 2.0, False),
    ):
        result = gradient_diagnostics(actor, obs, critic.bind, selector, temperature, rng(1), samples=4000)
        ratio = result["estimator/relative_bias"] / result["estimator/relative_standard_error"]
        assert (ratio < 4) if unbiased else (ratio > 10), (type(selector).__name__, ratio)
        assert result["estimator/variance"] > 0 and math.isfinite(result["estimator/snr"])
        if unbiased:
            assert result["estimator/cosine"] > 0.99


def test_diagnostics_leave_parameter_grads_alone_and_check_samples():
    actor, obs, critic = small_problem()
    result = gradient_diagnostics(actor, obs, critic.bind, GumbelRaoSelector(3), 0.5, rng(0), samples=16)
    assert set(result) == {
        "estimator/cosine",
        "estimator/relative_bias",
        "estimator/relative_standard_error",
        "estimator/variance",
        "estimator/snr",
        "estimator/grad_norm",
        "estimator/exact_norm",
    }
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert all(p.grad is None for p in actor.parameters())
    for samples in (1, 0):
        with pytest.raises(ValueError, match="samples must be >= 2"):
            gradient_diagnostics(actor, obs, critic.bind, GumbelRaoSelector(3), 0.5, rng(0), samples=samples)


def test_estimator_statistics_by_hand():
    # Two estimates (1, 0) and (3, 0) of g* = (2, 2): mean (2, 0), variance ((1)² + (1)²)/(2−1) = 2.
    result = estimator_statistics(torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([2.0, 2.0]))
    assert result["estimator/cosine"] == pytest.approx(1 / math.sqrt(2))
    assert result["estimator/relative_bias"] == pytest.approx(2 / math.sqrt(8))
    assert result["estimator/variance"] == pytest.approx(2.0)
    assert result["estimator/snr"] == pytest.approx(2 / math.sqrt(2))
    assert result["estimator/grad_norm"] == pytest.approx(2.0)
    assert result["estimator/exact_norm"] == pytest.approx(math.sqrt(8))
    assert result["estimator/relative_standard_error"] == pytest.approx(math.sqrt(2 / 2) / math.sqrt(8))
