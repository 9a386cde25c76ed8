"""Statistical and exact tests of rlgumbel.selectors.

Sampling tests use fixed torch.Generator seeds, so they are deterministic. Their tolerances
are derived in comments; with another seed a correct implementation would fail a chi-square
criterion with probability 1e-3 per test and a 5-standard-error criterion with < 1e-5.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats
from torch.nn import functional as F

from rlgumbel.schedules import ConstantSchedule, LinearSchedule
from rlgumbel.selectors import (
    ArgmaxSelector,
    ExpectedSelector,
    GumbelRaoSelector,
    GumbelSoftmaxSelector,
    ReinmaxSelector,
    SampleSelector,
    Selection,
    StraightThroughSelector,
    gumbel_max_sample,
    gumbel_noise,
    policy_action,
)

# 200k draws: a frequency's standard error is sqrt(p(1-p)/n) <= 1.1e-3, so a 5-SE band is at
# most ±5.6e-3; the wrong variants below miss p by ~0.05 or more, i.e. tens of standard errors.
NUM_SAMPLES = 200_000
SEED_NOTE_DISTRIBUTIONS = {
    "seed004_4_actions": [0.3, 0.1, 0.1, 0.5],
    "seed004_5_actions": [0.02948882, 0.08015893, 0.21789455, 0.5922988, 0.08015893],
}
# Euler–Mascheroni constant: the mean of a standard Gumbel; its variance is π²/6.
EULER_GAMMA = 0.5772156649015329
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def policy_statistics(logits: torch.Tensor, env_action: torch.Tensor):
    """log π(env_action), probs and entropy as a `Selection` computes them."""
    selection = Selection(logits, logits, env_action=env_action)
    return selection.log_prob, selection.probs, selection.entropy


@pytest.fixture
def make_generator() -> Callable[[int], torch.Generator]:
    """A factory of seeded CPU generators: `make_generator(seed)`."""

    def make(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return make


class LinearCritic:
    """A fake critic, Q(s, a) = a · q: linear in the action vector, one q per state: q [B, A] or
    [B, D, A] (summed over the components); a row of logits [B, A] is then a state's one row."""

    def __init__(self, q: torch.Tensor) -> None:
        self.q = q  # [B, A] or [B, D, A]

    def of(self, action: torch.Tensor) -> torch.Tensor:
        return (action * self.q).flatten(1).sum(-1)

    def components(self, action: torch.Tensor) -> torch.Tensor:
        return self.q


def greedy_with_epsilon(epsilon: float) -> ArgmaxSelector:
    return ArgmaxSelector(epsilon=ConstantSchedule(epsilon))


SELECTORS: dict[str, Callable[[], object]] = {
    "argmax": lambda: greedy_with_epsilon(0.0),
    "sample": SampleSelector,
    "gumbel_soft": lambda: GumbelSoftmaxSelector(hard=False),
    "gumbel_hard": lambda: GumbelSoftmaxSelector(hard=True),
}

# Every path by which the library draws an exact sample of Categorical(softmax(logits)).
SAMPLERS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "gumbel_max_sample": gumbel_max_sample,
    "gumbel_soft.select": lambda x, g: GumbelSoftmaxSelector(hard=False).select(x, 0.5, g).env_action,
    "gumbel_hard.select": lambda x, g: GumbelSoftmaxSelector(hard=True).select(x, 0.5, g).env_action,
    "gumbel.act": lambda x, g: GumbelSoftmaxSelector(hard=False).act(x, 0.5, g, step=0),
    "sample.select": lambda x, g: SampleSelector().select(x, 1.0, g).env_action,
    "sample.act": lambda x, g: SampleSelector().act(x, 1.0, g, step=0),
}


def assert_categorical(actions: torch.Tensor, probs: torch.Tensor) -> None:
    """`actions` [n] are draws from Categorical(`probs` [A]).

    Two criteria: the chi-square goodness-of-fit p-value exceeds 1e-3 (a correct sampler fails
    this with probability 1e-3), and every frequency lies within 5 standard errors
    sqrt(p(1-p)/n) of p (probability < 6e-7 per action for a correct sampler). Zero-probability
    actions must never be drawn.
    """
    n = actions.numel()
    probs = probs.double()
    counts = torch.bincount(actions.flatten(), minlength=probs.numel()).double()
    assert counts.numel() == probs.numel(), "an action index out of range was drawn"
    support = probs > 0
    assert counts[~support].sum() == 0, f"masked actions drawn: {counts.tolist()}"
    frequencies = counts / n
    standard_errors = (probs * (1 - probs) / n).sqrt()
    worst = ((frequencies - probs).abs() / standard_errors.clamp(min=1e-300))[support].max().item()
    assert worst < 5, f"frequency {frequencies.tolist()} vs p {probs.tolist()}: {worst:.1f} SE off"
    pvalue = stats.chisquare(counts[support].numpy(), (n * probs[support]).numpy()).pvalue
    assert pvalue > 1e-3, f"chi-square p-value {pvalue:.3g}: {frequencies.tolist()} vs {probs.tolist()}"


# --------------------------------------------------------------------------------------------
# Gumbel-max sampling reproduces softmax(logits)


@pytest.mark.parametrize("sampler", list(SAMPLERS), ids=list(SAMPLERS))
@pytest.mark.parametrize("distribution", list(SEED_NOTE_DISTRIBUTIONS), ids=list(SEED_NOTE_DISTRIBUTIONS))
def test_samplers_reproduce_seed_note_distributions(sampler, distribution, make_generator):
    probs = torch.tensor(SEED_NOTE_DISTRIBUTIONS[distribution])
    logits = probs.log().expand(NUM_SAMPLES, -1)
    actions = SAMPLERS[sampler](logits, make_generator(0))
    assert actions.shape == (NUM_SAMPLES,) and actions.dtype == torch.int64
    assert_categorical(actions, torch.softmax(probs.log().double(), -1))


@pytest.mark.parametrize("sampler", list(SAMPLERS), ids=list(SAMPLERS))
def test_samplers_reproduce_random_logits_row_by_row(sampler, make_generator):
    # Two different rows interleaved in one batch: catches noise or argmax along the wrong dim.
    base = 1.5 * torch.randn(2, 6, generator=make_generator(1234))
    logits = base.repeat(NUM_SAMPLES // 2, 1)  # rows alternate base[0], base[1]
    actions = SAMPLERS[sampler](logits, make_generator(1)).view(-1, 2)
    for row in range(2):
        assert_categorical(actions[:, row], torch.softmax(base[row].double(), -1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_evaluation_samples_the_tempered_policy_from_its_generator_and_greedy_is_the_argmax(
    temperature, make_generator
):
    # Evaluation's sampled policy is softmax(logits / T), drawn from the generator it is given
    # (the global RNG is reseeded between the two draws and must not matter); greedy is argmax.
    base = torch.tensor([[0.3, -1.0, 1.2, 0.1], [2.0, 0.0, -0.5, 1.5]])  # two rows: argmax along -1
    logits = base.repeat(NUM_SAMPLES // 2, 1)
    torch.manual_seed(1)
    actions = policy_action(logits, greedy=False, temperature=temperature, generator=make_generator(3))
    torch.manual_seed(2)
    again = policy_action(logits, greedy=False, temperature=temperature, generator=make_generator(3))
    assert torch.equal(actions, again)
    for row in range(2):
        assert_categorical(actions.view(-1, 2)[:, row], torch.softmax(base[row].double() / temperature, -1))
    greedy = policy_action(base, greedy=True, temperature=temperature, generator=None)
    assert greedy.tolist() == [2, 0]


@pytest.mark.parametrize("distribution", list(SEED_NOTE_DISTRIBUTIONS), ids=list(SEED_NOTE_DISTRIBUTIONS))
def test_noise_on_probabilities_instead_of_log_probabilities_is_wrong(distribution, make_generator):
    # Seed 004's wrong variant, argmax(p + g), built from the library's noise. It flattens the
    # distribution (noise of scale 1 swamps differences of p < 1); at 200k draws its chi-square
    # p-value is astronomically small, which shows the sample size can tell the two apart.
    probs = torch.tensor(SEED_NOTE_DISTRIBUTIONS[distribution])
    noise = gumbel_noise(torch.Size([NUM_SAMPLES, probs.numel()]), make_generator(0), torch.float32)
    actions = (probs + noise).argmax(-1)
    counts = torch.bincount(actions, minlength=probs.numel()).double()
    expected = NUM_SAMPLES * probs.double() / probs.double().sum()  # the note's p sums to 1 + 3e-8
    pvalue = stats.chisquare(counts.numpy(), expected.numpy()).pvalue
    assert pvalue < 1e-10
    with pytest.raises(AssertionError):
        assert_categorical(actions, probs)


def test_same_seed_same_samples_other_seed_differs(make_generator):
    logits = torch.randn(1000, 5, generator=make_generator(0))
    selector = GumbelSoftmaxSelector(hard=False)
    first = selector.select(logits, 0.5, make_generator(7))
    again = selector.select(logits, 0.5, make_generator(7))
    other = selector.select(logits, 0.5, make_generator(8))
    assert torch.equal(first.env_action, again.env_action) and torch.equal(first.action, again.action)
    assert not torch.equal(first.env_action, other.env_action)


# Every selector that samples, with the arguments that make it draw all it can (Gumbel-Rao's
# conditional draws happen only when a gradient is wanted).
SAMPLING_SELECTORS: dict[str, Callable[[], object]] = {
    "sample": SampleSelector,
    "gumbel_soft": lambda: GumbelSoftmaxSelector(hard=False),
    "gumbel_hard": lambda: GumbelSoftmaxSelector(hard=True),
    "straight_through": StraightThroughSelector,
    "gumbel_rao": lambda: GumbelRaoSelector(samples=4),
    "reinmax": ReinmaxSelector,
    "expected": ExpectedSelector,
}


@pytest.mark.parametrize("kind", list(SAMPLING_SELECTORS), ids=list(SAMPLING_SELECTORS))
def test_draws_come_from_the_runs_generator_alone(kind, make_generator):
    """A run is reproducible from its own generator: the same generator seed gives the same
    actions, action vectors and gradients (Gumbel-Rao draws its conditional noise for the
    backward pass too) whatever the global generator did in between; another seed gives other
    actions."""
    logits = torch.randn(1000, 5, generator=make_generator(0)).requires_grad_(True)
    weights = torch.randn(5, generator=make_generator(1))
    selector = SAMPLING_SELECTORS[kind]()
    draws, gradients = [], []
    for global_seed, seed in ((1, 7), (2, 7), (1, 8)):
        with torch.random.fork_rng():
            torch.manual_seed(global_seed)
            draw = selector.select(logits, 1.0, make_generator(seed))
            pathwise = draw.action.requires_grad  # sample and expected: the gradient is not through y
            gradient = torch.autograd.grad((draw.action * weights).sum(), logits)[0] if pathwise else None
        draws.append(draw)
        gradients.append(gradient)
    first, again, other = draws
    assert torch.equal(first.env_action, again.env_action) and torch.equal(first.action, again.action)
    assert gradients[0] is None or torch.equal(gradients[0], gradients[1])
    assert not torch.equal(first.env_action, other.env_action)


def test_epsilon_exploration_draws_from_the_runs_generator_alone(make_generator):
    """argmax's ε-greedy acting (which actions explore, and what they pick) is reproducible from
    the run's generator whatever the global generator did in between."""
    logits = torch.randn(1000, 5, generator=make_generator(0))
    selector = greedy_with_epsilon(0.5)
    acted = []
    for global_seed, seed in ((1, 7), (2, 7), (1, 8)):
        with torch.random.fork_rng():
            torch.manual_seed(global_seed)
            acted.append(selector.act(logits, 1.0, make_generator(seed), step=0))
    first, again, other = acted
    assert torch.equal(first, again) and not torch.equal(first, other)


# --------------------------------------------------------------------------------------------
# Gumbel noise


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_gumbel_noise_finite_and_in_range_for_every_dtype(dtype, make_generator):
    # u is clamped to [tiny, 1 - ulp], so g = -log(-log u) lies in [-log(-log tiny), -log(ulp)]
    # of the draw dtype (float64 for float64, float32 otherwise): [-4.47, 16.64] for float32
    # draws and [-6.56, 36.74] for float64, both representable in every target dtype.
    noise = gumbel_noise(torch.Size([1_000_000]), make_generator(0), dtype)
    assert noise.dtype == dtype and noise.shape == (1_000_000,)
    assert torch.isfinite(noise).all()
    draw = torch.float64 if dtype == torch.float64 else torch.float32
    lowest = -math.log(-math.log(torch.finfo(draw).tiny))
    highest = -math.log(torch.finfo(draw).eps / 2)
    assert noise.double().min() >= lowest - 0.05 and noise.double().max() <= highest + 0.05


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_gumbel_noise_at_the_extreme_uniforms(dtype, monkeypatch):
    # A generator cannot be steered to its extreme raw draws r in [0, 1), so Tensor.uniform_ is
    # replaced by one mapping r = 0, the smallest subnormal, 1/2 and the largest r < 1 through
    # torch's own formula u = low + (high - low) * r, with the bounds the library asks for.
    draw = torch.float64 if dtype == torch.float64 else torch.float32
    finfo = torch.finfo(draw)
    largest_below_one = 1.0 - finfo.eps / 2
    raw = [0.0, 2.0 ** (-1074 if draw == torch.float64 else -149), 0.5, largest_below_one]
    requested = {}

    def fake_uniform(self, low=0.0, high=1.0, generator=None):
        requested.update(dtype=self.dtype, low=low, high=high)
        return self.copy_(torch.tensor([low + (high - low) * r for r in raw], dtype=torch.float64))

    monkeypatch.setattr(torch.Tensor, "uniform_", fake_uniform)
    noise = gumbel_noise(torch.Size([len(raw)]), None, dtype)
    assert requested == {"dtype": draw, "low": finfo.tiny, "high": 1.0}
    assert torch.isfinite(noise).all(), noise
    # u never reaches 0: the lowest raw draws give u = tiny, the finite lowest noise value.
    assert noise[0] == noise[1]
    expected = torch.tensor(
        [-math.log(-math.log(finfo.tiny)), -math.log(math.log(2)), -math.log(-math.log1p(-finfo.eps / 2))],
        dtype=torch.float64,
    )
    # one rounding to `dtype` apart at most (the library rounds a float32 value, we a float64)
    tolerance = 2 * torch.finfo(dtype).eps
    torch.testing.assert_close(noise[1:].double(), expected.to(dtype).double(), rtol=tolerance, atol=tolerance)


def test_gumbel_noise_is_standard_gumbel(make_generator):
    # 1e6 float64 draws: the mean's standard error is sqrt(π²/6 / n) = 1.3e-3 and the
    # variance's is sqrt((μ4 - σ⁴)/n) = sqrt((5.4 - 1) σ⁴ / n) ≈ 3.5e-3 (Gumbel excess
    # kurtosis 2.4); 5 SE each. The KS test against scipy's gumbel_r: p > 1e-3 on 1e5 draws.
    noise = gumbel_noise(torch.Size([1_000_000]), make_generator(3), torch.float64)
    variance = math.pi**2 / 6
    assert abs(noise.mean().item() - EULER_GAMMA) < 5 * math.sqrt(variance / noise.numel())
    assert abs(noise.var().item() - variance) < 5 * math.sqrt(4.4 * variance**2 / noise.numel())
    assert stats.kstest(noise[:100_000].numpy(), "gumbel_r").pvalue > 1e-3


# --------------------------------------------------------------------------------------------
# Limits of the relaxation


def test_small_temperature_gives_the_one_hot_of_the_env_action(make_generator):
    # A row of y = softmax((logits + g)/τ) differs from one-hot(argmax) by at most
    # (A - 1)·exp(-gap/τ), gap = top-two difference of logits + g. With τ = 1e-4, rows with
    # gap > 2e-3 must be one-hot within 4·e^-20 ≈ 8e-9 (checked at 1e-6); the gap density at 0
    # is below 1, so fewer than 1% of rows are excluded (asserted, so the test is not vacuous).
    logits = torch.randn(4096, 5, generator=make_generator(0))
    temperature = 1e-4
    selection = GumbelSoftmaxSelector(hard=False).select(logits, temperature, make_generator(1))
    one_hot = F.one_hot(selection.env_action, 5).to(logits.dtype)
    assert torch.equal(selection.action.argmax(-1), selection.env_action)
    perturbed = logits + gumbel_noise(logits.shape, make_generator(1), logits.dtype)  # same noise
    assert torch.equal(perturbed.argmax(-1), selection.env_action)
    top_two = perturbed.topk(2, -1).values
    clear = (top_two[:, 0] - top_two[:, 1]) > 2e-3
    assert clear.float().mean() > 0.99
    deviation = (selection.action - one_hot).abs().amax(-1)
    assert deviation[clear].max() < 1e-6
    assert torch.allclose(selection.action.sum(-1), torch.ones(4096))


def test_large_temperature_gives_near_uniform(make_generator):
    # y_i ∝ exp(s_i/τ): |y_i − 1/A| <= (exp(R/τ) − 1)/A, R = range of s = logits + g. Logits in
    # [−2, 2] and float32 Gumbel noise in [−4.47, 16.64] give R <= 25.2, so at τ = 1e4 the
    # bound is (e^0.00252 − 1)/A ≈ 5.1e-4 for A = 5.
    logits = torch.randn(4096, 5, generator=make_generator(0)).clamp(-2, 2)
    temperature = 1e4
    bound = (math.exp(25.2 / temperature) - 1) / 5
    action = GumbelSoftmaxSelector(hard=False).select(logits, temperature, make_generator(1)).action
    deviation = (action - 1 / 5).abs().max().item()
    assert 0 < deviation < bound
    # and not uniform at τ = 1: the bound above is a property of large τ only
    action = GumbelSoftmaxSelector(hard=False).select(logits, 1.0, make_generator(1)).action
    assert (action - 1 / 5).abs().max().item() > 0.5


def test_hard_forward_is_exactly_one_hot_and_backward_is_the_soft_gradient(make_generator):
    logits = torch.randn(512, 6, generator=make_generator(0))
    weights = torch.randn(512, 6, generator=make_generator(1))
    gradients, selections = {}, {}
    for hard in (False, True):
        leaf = logits.clone().requires_grad_()
        selection = GumbelSoftmaxSelector(hard=hard).select(leaf, 0.7, make_generator(2))
        (selection.action * weights).sum().backward()
        gradients[hard], selections[hard] = leaf.grad, selection
    hard = selections[True]
    assert torch.equal(hard.action, F.one_hot(hard.env_action, 6).to(logits.dtype))
    assert torch.equal(hard.env_action, selections[False].env_action)  # same noise
    assert not torch.equal(selections[False].action, hard.action)
    assert gradients[True].abs().sum() > 0
    torch.testing.assert_close(gradients[True], gradients[False], rtol=0, atol=0)


def test_soft_gradient_is_the_gradient_of_softmax_of_the_perturbed_logits(make_generator):
    # Reference computed with plain torch.softmax on the same noise, not the library's helper.
    logits = torch.randn(256, 4, generator=make_generator(0))
    weights = torch.randn(256, 4, generator=make_generator(1))
    temperature = 0.3
    leaf = logits.clone().requires_grad_()
    (GumbelSoftmaxSelector(hard=False).select(leaf, temperature, make_generator(2)).action * weights).sum().backward()
    reference = logits.clone().requires_grad_()
    noise = gumbel_noise(logits.shape, make_generator(2), logits.dtype)
    (torch.softmax((reference + noise) / temperature, -1) * weights).sum().backward()
    torch.testing.assert_close(leaf.grad, reference.grad)


def test_argmax_selector_ignores_noise_and_backpropagates_tempered_softmax(make_generator):
    logits = torch.randn(300, 5, generator=make_generator(0))
    weights = torch.randn(300, 5, generator=make_generator(1))
    selector = greedy_with_epsilon(0.0)
    temperature = 0.4
    actions = [selector.select(logits, temperature, g).env_action for g in (make_generator(0), make_generator(1), None)]
    for env_action in actions:
        assert torch.equal(env_action, logits.argmax(-1))
    leaf = logits.clone().requires_grad_()
    selection = selector.select(leaf, temperature, make_generator(5))
    assert torch.equal(selection.action, F.one_hot(logits.argmax(-1), 5).to(logits.dtype))
    (selection.action * weights).sum().backward()
    reference = logits.clone().requires_grad_()
    (torch.softmax(reference / temperature, -1) * weights).sum().backward()
    assert leaf.grad.abs().sum() > 0
    torch.testing.assert_close(leaf.grad, reference.grad)


def test_argmax_act_with_epsilon_one_is_uniform_over_unmasked_actions(make_generator):
    logits = torch.tensor([2.0, -math.inf, 0.5, 1.0, -math.inf, 3.0]).expand(NUM_SAMPLES, -1)
    actions = greedy_with_epsilon(1.0).act(logits, 1.0, make_generator(0), step=0)
    uniform = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.float64) / 4
    assert_categorical(actions, uniform)


def test_argmax_act_with_epsilon_zero_is_greedy(make_generator):
    logits = torch.randn(10_000, 7, generator=make_generator(0))
    for seed in range(3):
        assert torch.equal(greedy_with_epsilon(0.0).act(logits, 1.0, make_generator(seed), step=0), logits.argmax(-1))


def test_argmax_act_mixes_greedy_and_uniform_with_the_scheduled_epsilon(make_generator):
    # ε-greedy over K = 4 unmasked actions: the greedy action has probability 1 − ε + ε/K, the
    # others ε/K. The schedule is linear, so the step decides ε (0.3 at step 700 of 1000).
    schedule = LinearSchedule(start=1.0, end=0.0, duration=1000)
    selector = ArgmaxSelector(epsilon=schedule)
    assert selector.epsilon(700) == pytest.approx(0.3)
    logits = torch.tensor([0.1, 2.0, -math.inf, -1.0, 0.5]).expand(NUM_SAMPLES, -1)
    actions = selector.act(logits, 1.0, make_generator(0), step=700)
    expected = torch.tensor([0.3 / 4, 0.7 + 0.3 / 4, 0.0, 0.3 / 4, 0.3 / 4], dtype=torch.float64)
    assert_categorical(actions, expected)


# --------------------------------------------------------------------------------------------
# Numerics: extreme logits, temperatures, ties, masks


def all_outputs_backward(selection: Selection, leaf: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. `leaf` of a loss that touches every differentiable output."""
    loss = (selection.action * weights).sum() + selection.log_prob.sum() + selection.entropy.sum()
    (gradient,) = torch.autograd.grad(loss, leaf)
    return gradient


def assert_valid_selection(selection: Selection, logits: torch.Tensor, atol: float) -> None:
    batch, num_actions = logits.shape
    assert selection.env_action.shape == (batch,) and selection.env_action.dtype == torch.int64
    assert selection.action.shape == (batch, num_actions) and selection.action.dtype == logits.dtype
    for name in ("action", "log_prob", "probs", "entropy"):
        assert torch.isfinite(getattr(selection, name)).all(), name
    for vector in (selection.action, selection.probs):
        assert (vector >= 0).all()
        torch.testing.assert_close(vector.sum(-1).double(), torch.ones(batch, dtype=torch.float64), rtol=0, atol=atol)
    assert (selection.entropy >= -atol).all()


EXTREME_CASES = {
    # name: (dtype, rows of logits, atol for sums of probability vectors)
    "float32_huge": (
        torch.float32,
        [
            [1e30, -1e30, 0.0, 5.0],
            [-1e30, -1e30, -1e30, -1e30 + 1e24],
            [1e30, 1e30, -1e30, 0.0],
            [3e38, -3e38, 0.0, 1.0],
        ],
        1e-5,
    ),
    "float16_huge": (
        torch.float16,
        [[6e4, -6e4, 0.0, 5.0], [-6e4, -6e4, -6e4, -5.9e4], [6e4, 6e4, -6e4, 0.0], [6.5e4, 1.0, -6.5e4, 0.0]],
        4e-3,
    ),
    "bfloat16_huge": (torch.bfloat16, [[1e30, -1e30, 0.0, 5.0], [1e38, 1e38, -1e38, 0.0]], 3e-2),
    "ties": (torch.float32, [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, -1.0, 1.0]], 1e-5),
}


@pytest.mark.parametrize("temperature", [1e-8, 1.0, 1e4])
@pytest.mark.parametrize("case", list(EXTREME_CASES), ids=list(EXTREME_CASES))
@pytest.mark.parametrize("kind", list(SELECTORS), ids=list(SELECTORS))
def test_select_is_finite_and_on_the_simplex_for_extreme_inputs(kind, case, temperature, make_generator):
    dtype, rows, atol = EXTREME_CASES[case]
    logits = torch.tensor(rows, dtype=dtype).repeat(64, 1)
    leaf = logits.clone().requires_grad_()
    selection = SELECTORS[kind]().select(leaf, temperature, make_generator(0))
    assert_valid_selection(selection, logits, atol)
    weights = torch.randn(logits.shape, generator=make_generator(1)).to(dtype)
    gradient = all_outputs_backward(selection, leaf, weights)
    assert not torch.isnan(gradient).any()
    # At a tie the true gradient of softmax(s/τ) is |w|/(4τ) ≈ 2.5e7·|w| at τ = 1e-8, beyond
    # float16's range (65504): there it may round to ±inf, but it must never be NaN.
    if not (dtype == torch.float16 and temperature < 1e-4):
        assert torch.isfinite(gradient).all()


MASKED_LOGITS = [
    [0.3, -math.inf, 1.2, -math.inf, -0.5],
    [-math.inf, 2.0, -math.inf, -math.inf, -1.0],
    [-math.inf, -math.inf, -math.inf, 4.0, -math.inf],
]  # a single legal action


@pytest.mark.parametrize("temperature", [1e-8, 0.5, 1e4])
@pytest.mark.parametrize("kind", list(SELECTORS), ids=list(SELECTORS))
def test_masked_actions_are_never_chosen_and_carry_no_mass_or_nan(kind, temperature, make_generator):
    logits = torch.tensor(MASKED_LOGITS).repeat(2000, 1)
    masked = torch.isneginf(logits)
    leaf = logits.clone().requires_grad_()
    selection = SELECTORS[kind]().select(leaf, temperature, make_generator(0))
    assert not masked.gather(-1, selection.env_action.unsqueeze(-1)).any()
    assert (selection.action[masked] == 0).all() and (selection.probs[masked] == 0).all()
    assert_valid_selection(selection, logits, 1e-5)
    # entropy of the unmasked softmax, computed by hand per distinct row
    for row in range(3):
        legal = logits[row][~masked[row]]
        probs = torch.softmax(legal.double(), -1)
        entropy = -(probs * probs.log()).sum()
        torch.testing.assert_close(selection.entropy[row].double(), entropy, rtol=1e-5, atol=1e-6)
    gradient = all_outputs_backward(selection, leaf, torch.randn(logits.shape, generator=make_generator(1)))
    assert not torch.isnan(gradient).any()
    assert (gradient[masked] == 0).all()


@pytest.mark.parametrize(
    "make_selector",
    [
        lambda: greedy_with_epsilon(0.5),
        SampleSelector,
        lambda: GumbelSoftmaxSelector(hard=False),
        StraightThroughSelector,
        lambda: GumbelRaoSelector(samples=3),
        ReinmaxSelector,
        ExpectedSelector,
    ],
    ids=["argmax", "sample", "gumbel_softmax", "straight_through", "gumbel_rao", "reinmax", "expected"],
)
def test_act_draws_only_from_the_generator_it_is_given(make_selector, make_generator):
    # the global generator in two different states: a draw from it would change the actions
    logits = torch.randn(500, 4, generator=make_generator(0))
    actions = []
    for global_seed in (11, 12):
        torch.manual_seed(global_seed)
        actions.append(make_selector().act(logits, 1.0, make_generator(1), step=0))
    assert torch.equal(actions[0], actions[1])
    assert len(actions[0].unique()) == 4  # the actions are random, not the argmax


@pytest.mark.parametrize("make_selector", [SampleSelector, lambda: GumbelSoftmaxSelector(hard=False), ExpectedSelector])
def test_only_argmax_reports_an_exploration_epsilon(make_selector):
    assert make_selector().epsilon(12_345) == 0.0
    assert greedy_with_epsilon(0.25).epsilon(12_345) == 0.25


@pytest.mark.parametrize("kind", ["sample", "gumbel_soft"])
def test_act_never_chooses_masked_actions(kind, make_generator):
    logits = torch.tensor(MASKED_LOGITS).repeat(20_000, 1)
    actions = SELECTORS[kind]().act(logits, 1.0, make_generator(0), step=0)
    assert not torch.isneginf(logits.gather(-1, actions.unsqueeze(-1))).any()


def test_entropy_bonus_gradient_has_no_nan_with_masks():
    logits = torch.tensor(MASKED_LOGITS, requires_grad=True)
    _, _, entropy = policy_statistics(logits, torch.tensor([0, 1, 3]))
    entropy_coefficient = 2.0
    (entropy_coefficient * entropy.sum()).backward()
    assert not torch.isnan(logits.grad).any(), logits.grad


# Half-precision logits are perturbed in float32, so float16 6e4 and bfloat16 100 are exact.
# In float32 a common offset of 1e4 rounds the noise to 2^-10, which moves a tie's split by
# ~2.5e-4: far inside the 5-SE band (5.6e-3). (At offsets like 1e30 float32 itself cannot hold
# the noise; policies do not output such logits.)
@pytest.mark.parametrize(
    "dtype,offset",
    [(torch.float32, 1e4), (torch.float16, 6e4), (torch.bfloat16, 100.0)],
    ids=["float32_1e4", "float16_6e4", "bfloat16_100"],
)
def test_sampling_is_shift_invariant_at_large_offsets(dtype, offset, make_generator):
    logits = torch.tensor([offset, offset], dtype=dtype).expand(NUM_SAMPLES, -1)
    assert_categorical(gumbel_max_sample(logits, make_generator(0)), torch.tensor([0.5, 0.5]))


# Upstream gradients 128, 129, 130 are exact in both half dtypes, and u − π·u cancels to O(1):
# computed in bfloat16 (8 significant bits) π·u would be rounded by up to 0.5, so gradients of
# order 0.1 would be wrong in their leading digit. Computed in float32 and rounded once, each
# is the float32 gradient to the last bit of the half dtype.
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize(
    "make_selector",
    [lambda: GumbelRaoSelector(samples=4), ReinmaxSelector],
    ids=["gumbel_rao", "reinmax"],
)
def test_half_precision_gradient_is_the_float32_gradient_rounded_once(make_selector, dtype, make_generator):
    logits = [[0.5, -0.25, 1.0], [2.0, 0.0, -1.0]]
    upstream = [128.0, 129.0, 130.0]

    def gradient(dtype: torch.dtype) -> torch.Tensor:
        leaf = torch.tensor(logits, dtype=dtype, requires_grad=True)
        selection = make_selector().select(leaf, 1.5, make_generator(3))
        (selection.action * torch.tensor(upstream, dtype=dtype)).sum().backward()
        return leaf.grad

    expected = gradient(torch.float32)
    assert expected.abs().max() > 0.1  # the cancellation leaves gradients of order 0.1, not zeros
    assert torch.equal(gradient(dtype), expected.to(dtype))


# --------------------------------------------------------------------------------------------
# Policy statistics


def test_policy_statistics_match_a_naive_loop(make_generator):
    logits = torch.randn(20, 4, generator=make_generator(0), dtype=torch.float64)
    logits[3, 1] = -math.inf
    env_action = torch.arange(20) % 4  # row 3 takes action 3, never its masked action 1
    log_prob, probs, entropy = policy_statistics(logits, env_action)
    for row in range(20):
        exps = [math.exp(x) for x in logits[row].tolist()]
        total = sum(exps)
        p = [e / total for e in exps]
        assert probs[row].tolist() == pytest.approx(p, rel=1e-12)
        assert log_prob[row].item() == pytest.approx(math.log(p[env_action[row]]), rel=1e-12)
        assert entropy[row].item() == pytest.approx(-sum(q * math.log(q) for q in p if q > 0), rel=1e-12)


@pytest.mark.parametrize("kind", ["sample", "gumbel_soft", "gumbel_hard"])
def test_selection_statistics_describe_softmax_of_the_logits(kind, make_generator):
    logits = torch.randn(100, 3, generator=make_generator(0))
    selection = SELECTORS[kind]().select(logits.clone().requires_grad_(), 0.5, make_generator(1))
    log_probs = torch.log_softmax(logits, -1)
    torch.testing.assert_close(selection.probs, log_probs.exp())
    torch.testing.assert_close(selection.log_prob.detach(), log_probs.gather(-1, selection.env_action[:, None])[:, 0])
    torch.testing.assert_close(selection.entropy.detach(), -(log_probs.exp() * log_probs).sum(-1))
    # probs feed critic targets: no gradient may flow through them; log_prob and entropy carry it
    assert not selection.probs.requires_grad
    assert selection.log_prob.requires_grad and selection.entropy.requires_grad


# --------------------------------------------------------------------------------------------
# Temperature validation


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf, -math.inf, 0, True, "1.0", None])
@pytest.mark.parametrize("kind", list(SELECTORS), ids=list(SELECTORS))
def test_bad_temperature_raises(kind, temperature):
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        SELECTORS[kind]().select(logits, temperature, None)


@pytest.mark.parametrize("temperature", [2, np.float32(0.5), np.int64(3), 1e-3])
def test_temperatures_of_any_real_number_type_are_accepted(temperature, make_generator):
    # Schedules return floats, but a user's constant can arrive as an int or a numpy scalar.
    selection = GumbelSoftmaxSelector(hard=False).select(torch.zeros(2, 3), temperature, make_generator(0))
    assert torch.isfinite(selection.action).all()


def test_a_selection_takes_exactly_one_of_env_action_and_scores():
    logits = torch.zeros(2, 3)
    for extra in ({}, {"env_action": torch.zeros(2, dtype=torch.int64), "scores": logits}):
        with pytest.raises(ValueError, match="^a Selection needs exactly one of env_action and scores$"):
            Selection(logits, logits, **extra)


# --------------------------------------------------------------------------------------------
# Actor objectives


# Hand-worked 3-action example. p = softmax(logits), V = Σ p Q.
HAND_LOGITS = [0.2, -0.5, 1.0]
HAND_Q = [1.0, -2.0, 0.5]


def hand_probabilities() -> list[float]:
    exps = [math.exp(x) for x in HAND_LOGITS]
    return [e / sum(exps) for e in exps]


def hand_score_function_gradient(action: int) -> list[float]:
    """∇_b [log p_a · (Q_a − V)] with V held constant = (δ_ab − p_b)(Q_a − V)."""
    p = hand_probabilities()
    value = sum(pi * qi for pi, qi in zip(p, HAND_Q))
    return [((1.0 if b == action else 0.0) - p[b]) * (HAND_Q[action] - value) for b in range(3)]


def exact_policy_gradient() -> list[float]:
    """∇_b Σ_a p_a Q_a = Σ_a p_a (δ_ab − p_b)(Q_a − V) = p_b (Q_b − V)."""
    p = hand_probabilities()
    value = sum(pi * qi for pi, qi in zip(p, HAND_Q))
    return [p[b] * (HAND_Q[b] - value) for b in range(3)]


def test_hand_worked_expectation_identity():
    # The per-action score-function gradients, weighted by p_a, sum to the exact gradient,
    # which autograd confirms on Σ softmax(logits)·Q.
    p = hand_probabilities()
    weighted = [sum(p[a] * hand_score_function_gradient(a)[b] for a in range(3)) for b in range(3)]
    assert weighted == pytest.approx(exact_policy_gradient(), rel=1e-12, abs=1e-15)
    logits = torch.tensor(HAND_LOGITS, dtype=torch.float64, requires_grad=True)
    (torch.softmax(logits, -1) * torch.tensor(HAND_Q, dtype=torch.float64)).sum().backward()
    assert logits.grad.tolist() == pytest.approx(exact_policy_gradient(), rel=1e-12)


def test_sample_objective_gradient_matches_hand_formula_per_sample(make_generator):
    # One state, many seeds: each seed's gradient is (δ_ab − p_b)(Q_a − V) for the drawn a.
    seen = set()
    for seed in range(40):
        logits = torch.tensor([[HAND_LOGITS]], dtype=torch.float64, requires_grad=True)  # one state, one component
        critic_q = torch.tensor([[HAND_Q]], dtype=torch.float64, requires_grad=True)
        selector = SampleSelector()
        selection = selector.select(logits, 1.0, make_generator(seed))
        objective = selector.actor_objective(selection, LinearCritic(critic_q))
        assert objective.shape == (1,)
        objective.sum().backward()
        action = selection.env_action.item()
        seen.add(action)
        assert logits.grad[0, 0].tolist() == pytest.approx(hand_score_function_gradient(action), rel=1e-10)
        assert critic_q.grad is None, "the score-function objective must not train the critic"
    assert seen == {0, 1, 2}


def test_sample_objective_is_unbiased_for_the_exact_gradient(make_generator):
    # 200k states with the same logits: per-row gradients are i.i.d. draws of the estimator;
    # their mean must be within 5 standard errors (sample std / sqrt(n)) of p_b (Q_b − V).
    n = NUM_SAMPLES
    logits = torch.tensor(HAND_LOGITS, dtype=torch.float64).repeat(n, 1).requires_grad_()
    critic = LinearCritic(torch.tensor(HAND_Q, dtype=torch.float64).repeat(n, 1))
    selector = SampleSelector()
    selection = selector.select(logits, 1.0, make_generator(0))
    selector.actor_objective(selection, critic).sum().backward()
    per_row = logits.grad
    mean, standard_error = per_row.mean(0), per_row.std(0) / math.sqrt(n)
    exact = torch.tensor(exact_policy_gradient(), dtype=torch.float64)
    assert ((mean - exact).abs() < 5 * standard_error).all(), (mean, exact, standard_error)
    # the tolerance is tight enough to catch a sign error
    assert ((-mean - exact).abs() > 5 * standard_error).any()


def test_gumbel_objective_is_the_pathwise_estimator_of_the_gradient(make_generator):
    # Linear critic Q(s, y) = y·q: the objective is y·q and its gradient is pathwise through
    # y = softmax((logits + g)/τ). At τ = 0.5 the estimator is biased but, averaged over 20k
    # samples, points the same way as the exact gradient p_b (Q_b − V): cosine > 0.9.
    n = 20_000
    base = torch.tensor([0.5, -0.3, 1.2, 0.0, -1.0])
    q = torch.tensor([1.0, -0.5, 0.2, 2.0, -1.5])
    logits = base.repeat(n, 1).requires_grad_()
    critic_q = q.repeat(n, 1)
    selector = GumbelSoftmaxSelector(hard=False)
    selection = selector.select(logits, 0.5, make_generator(0))
    objective = selector.actor_objective(selection, LinearCritic(critic_q))
    torch.testing.assert_close(objective, (selection.action * q).sum(-1))
    objective.mean().backward()
    estimate = logits.grad.sum(0)
    assert torch.isfinite(estimate).all()
    exact_logits = base.clone().requires_grad_()
    (torch.softmax(exact_logits, -1) * q).sum().backward()
    cosine = F.cosine_similarity(estimate, exact_logits.grad, dim=0).item()
    assert cosine > 0.9, cosine
