"""Action selectors: the ways of turning a policy's logits into a discrete action.

Every selector returns, for a batch of logits, the action sent to the environment, a
differentiable action vector for the actor's loss, and the policy's log-probabilities and
entropy. Selectors are stateless: the trainer passes the temperature and the random generator.

Logits are [B, D, A]: a batch of B states, each with an action of D components (D = 1: one
categorical; D > 1: a factored action, or the joint action of D agents), each a categorical over A
choices (a component with fewer is padded with −inf logits). Every selector acts on each row of A
logits independently, so components are sampled independently and a selector knows nothing of
what they stand for; a population's logits [K, B, D, A] work the same, with per-member
temperatures [K, 1, 1, 1] and `MemberGenerators` (member k's noise from its own generator,
rlgumbel/generators.py). Shapes below are those of one batch.
"""

from __future__ import annotations

import math
import numbers
from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor
from torch.nn import functional as F

from rlgumbel.generators import Generator, MemberGenerators, rand, uniform_
from rlgumbel.schedules import Schedule

Temperature = float | Tensor  # a number, or per-member values [K, 1, 1, 1] for a population's logits


class Selection:
    """What a selector hands to a learning rule for one batch of states.

    The policy statistics are computed on first use: a rollout or a target needs only some.

    Attributes:
        env_action: [B, D] int64, the action taken in the environment.
        action: [B, D, A] action vectors fed to the critic; carry the selector's gradient.
        log_prob: [B, D] log π_d(env_action_d | s) of each component under `softmax(logits)`,
            differentiable; the joint log-probability is their sum.
        probs: [B, D, A] the target policy's distribution of each component (for expected
            critic targets), detached; `softmax(logits)` unless the selector says otherwise.
        entropy: [B, D] entropy of each component's `softmax(logits)`, differentiable; the joint
            entropy is their sum.
    """

    def __init__(
        self,
        logits: Tensor,
        action: Tensor,
        env_action: Tensor | None = None,
        scores: Tensor | None = None,
        target_probs: Tensor | None = None,
    ) -> None:
        """Args: logits [B, D, A]; action [B, D, A]; either env_action [B, D] or the scores
        [B, D, A] whose argmax it is; target_probs [B, D, A] if the target policy is not
        `softmax(logits)`."""
        if (env_action is None) == (scores is None):
            raise ValueError("a Selection needs exactly one of env_action and scores")
        self.logits, self.action = logits, action
        self._env_action, self._scores, self._target_probs = env_action, scores, target_probs

    @cached_property
    def env_action(self) -> Tensor:
        if self._env_action is not None:
            return self._env_action
        return self._scores.detach().argmax(-1)

    @cached_property
    def log_probs(self) -> Tensor:
        """[B, D, A] log softmax(logits); differentiable even if first read under `no_grad`."""
        with torch.enable_grad():
            return torch.log_softmax(self.logits, dim=-1)

    @cached_property
    def log_prob(self) -> Tensor:
        return self.log_probs.gather(-1, self.env_action.unsqueeze(-1)).squeeze(-1)

    @cached_property
    def probs(self) -> Tensor:
        if self._target_probs is not None:
            return self._target_probs
        return self.log_probs.detach().exp()

    @cached_property
    def entropy(self) -> Tensor:
        return entropy_of(self.log_probs)


class ActionValue(Protocol):
    """A critic seen from the selector: Q(s, ·) for the batch of states being updated."""

    def of(self, action: Tensor) -> Tensor:
        """Q(s, action) for action vectors [B, D, A] (one-hot or relaxed); returns [B]."""

    def components(self, action: Tensor) -> Tensor:
        """[B, D, A]: for each component d and choice a, the value with component d set to the
        one-hot of a and the others at `action` [B, D, A] (of the critic that reads component d;
        Q(s, a) for every a when D = 1)."""


_TINY = {dtype: torch.finfo(dtype).tiny for dtype in (torch.float32, torch.float64)}


def _log_exponential(shape: torch.Size, generator: Generator, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """`log(-log u)` = −g for standard Gumbel g, with u uniform in [tiny, 1): always finite.

    `uniform_(tiny, 1)` never yields 0, whose noise would be infinite; its largest value
    1 − 2⁻²⁴ bounds |g| below 17 in float32.
    """
    uniform = uniform_(torch.empty(shape, dtype=dtype, device=device), _TINY[dtype], 1.0, generator)
    return uniform.log_().neg_().log_()


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision logits are perturbed in float32, whose resolution keeps the noise intact."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def gumbel_noise(
    shape: torch.Size, generator: Generator, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> Tensor:
    """Standard Gumbel noise `g = −log(−log u)`, finite for every float dtype.

    Drawn in float32 (float64 for float64) and cast to `dtype`.

    Returns:
        [*shape] tensor of dtype `dtype`.
    """
    return _log_exponential(shape, generator, _work_dtype(dtype), device).neg_().to(dtype)


def policy_action(logits: Tensor, greedy: bool, temperature: Temperature, generator: Generator) -> Tensor:
    """An evaluation's action [B, D] from logits [B, D, A]: the argmax of each component's logits,
    or a sample of `softmax(logits / temperature)`."""
    return logits.argmax(-1) if greedy else gumbel_max_sample(logits / temperature, generator)


def perturbed_logits(logits: Tensor, generator: Generator) -> Tensor:
    """`logits + g`, g standard Gumbel, in float32 (float64 for float64 logits).

    Half-precision logits are upcast first: next to a logit of 100, bfloat16 would round the
    noise to multiples of 0.5 and bias the sample. In float32 the sample is exact up to the
    rounding of `logits + g`, which matters only for logits far beyond what a policy outputs
    (|logits| ≳ 1e6).

    Args:
        logits: [B, D, A]; −inf marks a masked action.
    Returns:
        [B, D, A]; differentiable in `logits`.
    """
    work = logits if logits.dtype in _TINY else logits.float()
    return work - _log_exponential(logits.shape, generator, work.dtype, logits.device)


def gumbel_max_sample(logits: Tensor, generator: Generator) -> Tensor:
    """Exact sample from Categorical(softmax(logits)) by the Gumbel-max trick.

    Args:
        logits: [B, D, A]; −inf marks a masked action, which is never chosen.
    Returns:
        [B, D] int64 actions, one per component.
    """
    return perturbed_logits(logits.detach(), generator).argmax(-1)


class _StraightThrough(torch.autograd.Function):
    """Forward `hard` exactly, backward the gradient to `soft` (Bengio et al. 2013).

    `hard - soft.detach() + soft` is one-hot only up to rounding; this is one-hot exactly.
    """

    @staticmethod
    def forward(ctx, hard: Tensor, soft: Tensor) -> Tensor:
        return hard

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        return None, grad


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """`hard` in the forward pass, the gradient of `soft` in the backward pass."""
    return _StraightThrough.apply(hard, soft)


def tempered_softmax(scores: Tensor, temperature: Temperature, row_max: Tensor | None = None) -> Tensor:
    """`softmax(scores / temperature)` that stays finite for huge scores and tiny temperatures.

    Subtracting the row maximum first keeps `scores / temperature <= 0`, so the division can
    only underflow to −inf (probability 0), never overflow to +inf (which would give NaN).

    Args:
        scores: [B, D, A].
        row_max: [B, D, 1] the detached row maximum of `scores`, if already at hand.
    """
    if row_max is None:
        row_max = scores.detach().amax(-1, keepdim=True)
    return torch.softmax((scores - row_max) / temperature, dim=-1)


def entropy_of(log_probs: Tensor) -> Tensor:
    """Entropy of each categorical from its log-probabilities [B, D, A]: [B, D].

    A masked action (log-probability −inf) adds 0. Its log-probability is clamped at
    log(tiny) first: large enough that neither the value nor the gradient becomes NaN (a
    clamp at the dtype's minimum would overflow the gradient to inf once scaled).
    """
    floor = math.log(torch.finfo(log_probs.dtype).tiny)
    return -(log_probs.exp() * log_probs.clamp(min=floor)).sum(-1)


def _check_temperature(temperature: Temperature) -> None:
    if isinstance(temperature, Tensor):
        return  # a population's temperatures, checked where their schedules are built
    # `type(...) is float` first: this runs on every call, and the ABC check is slow.
    is_number = type(temperature) is float or (
        isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    )
    if not (is_number and 0.0 < temperature < math.inf):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


class ActionSelector:
    """Base class: turns logits into a `Selection`; pathwise actor objective by default.

    Attributes:
        min_temperature: the smallest temperature `select` accepts (inclusive); 0.0 means any
            temperature > 0. A class attribute, so a config layer can compare it with the
            temperature schedule's lowest value (`schedule.bounds()[0]`) before training.
    """

    min_temperature: float = 0.0

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        """Choose actions for a batch.

        Args:
            logits: [B, D, A] actor outputs; −inf marks masked actions.
            temperature: > 0, from the temperature schedule.
            generator: the run's random generator.
        """
        raise NotImplementedError

    def act(self, logits: Tensor, temperature: Temperature, generator: Generator, step: int) -> Tensor:
        """The behaviour action for rollouts at env step `step`: [B, D] int64.

        A sample of `softmax(logits)` unless a selector explores otherwise.
        """
        return gumbel_max_sample(logits, generator)

    def epsilon(self, step: int) -> float:
        """Probability of a uniformly random action at env step `step` (0 unless ε-greedy)."""
        return 0.0

    def actor_objective(self, selection: Selection, critic: ActionValue) -> Tensor:
        """Per-state surrogate whose gradient estimates ∇ E_π[Q(s, a)] over the joint action; [B], to maximise.

        Pathwise: the critic evaluated at the differentiable action vector.
        """
        return critic.of(selection.action)


class ArgmaxSelector(ActionSelector):
    """Greedy actions, ε-greedy while exploring; straight-through gradient.

    Forward: one-hot of `argmax(logits)`. Backward: the gradient of
    `softmax(logits / temperature)`.

    Args:
        epsilon: schedule of the exploration probability over env steps, values in [0, 1].
    """

    def __init__(self, epsilon: Schedule) -> None:
        self.epsilon_schedule = epsilon

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        row_max, env_action = logits.detach().max(-1, keepdim=True)
        hard = torch.zeros_like(logits).scatter_(-1, env_action, 1.0)
        action = straight_through(hard, tempered_softmax(logits, temperature, row_max))
        return Selection(logits, action, env_action=env_action.squeeze(-1), target_probs=hard)

    def act(self, logits: Tensor, temperature: Temperature, generator: Generator, step: int) -> Tensor:
        greedy = logits.argmax(-1)
        epsilon = self.epsilon(step)
        if epsilon == 0.0:
            return greedy
        # A uniform draw among the unmasked actions: Gumbel-max over zero logits.
        uniform_logits = torch.where(torch.isneginf(logits), logits, torch.zeros_like(logits))
        random_action = gumbel_max_sample(uniform_logits, generator)
        explore = rand(greedy.shape, generator, logits.device) < epsilon
        return torch.where(explore, random_action, greedy)

    def epsilon(self, step: int) -> float:
        return self.epsilon_schedule(step)


class SampleSelector(ActionSelector):
    """Actions sampled from `Categorical(softmax(logits))`; score-function gradient.

    The temperature does not enter: the policy is `softmax(logits)` itself. The actor's
    surrogate is `Σ_d log π_d(a_d|s) · (Q(s, a) − b_d(s, a_−d))` with the per-component baseline
    `b_d = Σ_c π_d(c|s) Q(s, a_−d, c)`, the other components at their sampled values (REINFORCE
    with a state-dependent baseline, Williams 1992; with D = 1, `V(s) = Σ_a π(a|s) Q(s, a)`). A
    baseline that does not depend on a_d leaves the estimate unbiased.
    """

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        env_action = gumbel_max_sample(logits, generator)
        action = F.one_hot(env_action, logits.shape[-1]).to(logits.dtype)
        return Selection(logits, action, env_action=env_action)

    def actor_objective(self, selection: Selection, critic: ActionValue) -> Tensor:
        with torch.no_grad():
            q_components = critic.components(selection.action)  # [B, D, A]
            q_taken = q_components.gather(-1, selection.env_action.unsqueeze(-1)).squeeze(-1)  # Q(s, a) per d
            baseline = (selection.probs * q_components).sum(-1)
        return (selection.log_prob * (q_taken - baseline)).sum(-1)


class GumbelSoftmaxSelector(ActionSelector):
    """Gumbel-max actions with a Gumbel-softmax relaxation (Jang et al. 2017; Maddison et al. 2017).

    With `g ~ Gumbel(0, 1)` i.i.d., the env action `argmax(logits + g)` is an exact sample of
    `Categorical(softmax(logits))`, and the action vector `y = softmax((logits + g) / temperature)`
    is its differentiable relaxation. `hard=True` forwards the one-hot of the same sample and
    backpropagates through `y` (straight-through Gumbel-softmax).

    Args:
        hard: forward one-hot actions to the critic instead of the relaxed vector.
    """

    def __init__(self, hard: bool) -> None:
        self.hard = hard

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        perturbed = perturbed_logits(logits, generator)
        relaxed = torch.softmax(perturbed / temperature, dim=-1)
        if relaxed.sum().isnan():  # NaN anywhere makes the sum NaN: one cheap reduction
            # |logits| / temperature left the float range (a row overflowed to +inf or all of
            # it to −inf): shift each row by its maximum first. Rare, so the common path
            # skips the per-row reduction.
            relaxed = tempered_softmax(perturbed, temperature)
        relaxed = relaxed.to(logits.dtype)
        if not self.hard:
            return Selection(logits, relaxed, scores=perturbed)
        env_action = perturbed.detach().argmax(-1, keepdim=True)
        hard = torch.zeros_like(relaxed).scatter_(-1, env_action, 1.0)
        return Selection(logits, straight_through(hard, relaxed), env_action=env_action.squeeze(-1))


def _one_hot(env_action: Tensor, like: Tensor) -> Tensor:
    """One-hot rows [B, D, A] of `env_action` [B, D], with the dtype and device of `like` [B, D, A]."""
    return torch.zeros_like(like).scatter_(-1, env_action.unsqueeze(-1), 1.0)


class StraightThroughSelector(ActionSelector):
    """Sampled actions with the straight-through gradient (Bengio et al. 2013).

    Forward: one-hot of `D ~ Categorical(softmax(logits))` (drawn by Gumbel-max). Backward: the
    gradient of `softmax(logits / temperature)`; no Gumbel noise enters the backward pass, which
    is therefore deterministic given the logits. Unlike `argmax`, the env action is a sample.
    """

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        env_action = gumbel_max_sample(logits, generator)
        action = straight_through(_one_hot(env_action, logits), tempered_softmax(logits, temperature))
        return Selection(logits, action, env_action=env_action)


def conditional_perturbed_logits(logits: Tensor, env_action: Tensor, samples: int, generator: Generator) -> Tensor:
    """Draws of `z = logits + g`, g i.i.d. standard Gumbel, conditioned on `argmax z = env_action`.

    Top-down construction (Maddison et al. 2014, A* sampling; Paulus et al. 2021, Gumbel-Rao).
    Write z_i = θ_i + g_i ~ Gumbel(θ_i), θ = logits, L = logsumexp(θ).
      1. The maximum M = max_i z_i is Gumbel(L): P(M <= m) = Π_i exp(−e^{−(m−θ_i)}) = exp(−e^{−(m−L)}).
      2. The argmax is independent of M: P(argmax = D, M <= m) = softmax(θ)_D · P(M <= m)
         (the Gumbel-max proof run with an upper limit m). So given D, z_D = M ~ Gumbel(L),
         drawn as T = L + g_0 with g_0 standard Gumbel.
      3. Given D and z_D = T, the joint density Π_i f_i(z_i) restricted to {z_i < T, i ≠ D}
         factorises: the other z_i are independent Gumbel(θ_i) truncated to (−∞, T].
         Their CDF is F(z) = exp(−e^{θ_i−z}) / exp(−e^{θ_i−T}); inverting it with an
         untruncated draw θ_i + g_i, whose e^{−(θ_i+g_i)} is Exponential(1)·e^{−θ_i}:
             z_i = −log(e^{−T} + e^{−(θ_i + g_i)}) = −logaddexp(−T, −(θ_i + g_i)),
         since P(z_i <= x) = P(e^{−(θ_i+g_i)} >= e^{−x} − e^{−T}) = exp(−e^{θ_i}(e^{−x} − e^{−T})).
    In floating point z_i can round up to T when θ_i + g_i ≫ T (probability ~e^{−17} in
    float32); such values are lowered to the next float below T, so the argmax is always D.
    A masked action (θ_i = −inf) gets z_i = −inf.

    Args:
        logits: [B, D, A] (or a population's [P, B, D, A] with `MemberGenerators`); −inf marks a
            masked action. Not differentiated through.
        env_action: [B, D] (or [P, B, D]) int64, an unmasked action per row (the conditioning event).
        samples: K, the number of conditional draws per row.
    Returns:
        [K, B, D, A] (or [P, K, B, D, A]) detached, in float32 (float64 for float64 logits): the
        draws' axis comes first, after a population's members (`draws_axis`).
    """
    theta = logits.detach()
    if theta.dtype not in _TINY:
        theta = theta.float()
    axis = draws_axis(generator)
    theta = theta.unsqueeze(axis)  # [(P,) 1, B, D, A]
    shape = (*theta.shape[:axis], samples, *theta.shape[axis + 1 :])
    top = theta.logsumexp(-1, keepdim=True) + gumbel_noise(
        torch.Size((*shape[:-1], 1)), generator, theta.dtype, theta.device
    )
    unconditional = theta - _log_exponential(torch.Size(shape), generator, theta.dtype, theta.device)
    below = -torch.logaddexp(-top, -unconditional)
    below = torch.minimum(below, top.nextafter(torch.full_like(top, -math.inf)))
    index = env_action.unsqueeze(axis).unsqueeze(-1).expand(*shape[:-1], 1)
    return below.scatter_(-1, index, top)


def draws_axis(generator: Generator) -> int:
    """Where several draws per row go: after a population's members (dim 0 of its tensors, with
    `MemberGenerators`), else first. Each member then draws its rows in the order it would alone."""
    return 1 if isinstance(generator, MemberGenerators) else 0


class GumbelRaoSelector(ActionSelector):
    """Gumbel-Rao Monte Carlo (Paulus, Maddison & Krause, ICLR 2021).

    Forward: one-hot of `D ~ Categorical(softmax(logits))`. Backward: the straight-through
    Gumbel-softmax gradient averaged over K Gumbel draws conditioned on `argmax(logits + g) = D`,
    i.e. the gradient of `mean_k softmax((logits + g_k) / temperature)` with each g_k held fixed.
    This is the Rao-Blackwellisation of straight-through Gumbel-softmax: the same expectation,
    and a variance that falls towards Var(E[· | D]) as K grows. K = 1 is distributed exactly like
    straight-through Gumbel-softmax.

    Args:
        samples: K >= 1, conditional Gumbel draws per state.
    """

    def __init__(self, samples: int) -> None:
        self.samples = samples

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        env_action = gumbel_max_sample(logits, generator)
        hard = _one_hot(env_action, logits)
        if not (torch.is_grad_enabled() and logits.requires_grad):
            # The K conditional draws only shape the backward pass: skip them when there is
            # none (rollouts, critic targets). The forward value is the same one-hot.
            return Selection(logits, hard, env_action=env_action)
        # The draws come in float32 for half-precision logits, and so does the relaxed sample.
        perturbed = conditional_perturbed_logits(logits, env_action, self.samples, generator)
        # The noise g_k = z_k − θ, held fixed; 0 at masked actions, where z − θ is −inf − (−inf).
        axis = draws_axis(generator)
        masked = torch.isneginf(logits.detach()).unsqueeze(axis)
        noise = torch.where(masked, 0.0, perturbed - logits.detach().unsqueeze(axis))
        if isinstance(temperature, Tensor):
            temperature = temperature.unsqueeze(axis)  # [P, 1, 1, 1] → [P, 1, 1, 1, 1] over the K draws
        relaxed = tempered_softmax(logits.unsqueeze(axis) + noise, temperature).mean(axis).to(logits.dtype)
        return Selection(logits, straight_through(hard, relaxed), env_action=env_action)


class _ReinMax(torch.autograd.Function):
    """Forward the one-hot sample; backward the ReinMax gradient (Liu et al. 2023, Algorithm 2).

    With π0 = softmax(θ), π_D = (softmax(θ/τ) + one_hot(D)) / 2 and J(π) = diag(π) − π πᵀ,
    the gradient with respect to θ of an upstream gradient u (∂loss/∂one_hot) is
        2·J(π_D) u − ½·J(π0) u,
    the Heun-method (second-order) correction of straight-through. J(π) u = π ⊙ (u − π·u) is 0
    at masked actions (π = 0), so no NaN arises from −inf logits.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, hard: Tensor, temperature: Temperature) -> Tensor:
        work = logits if logits.dtype in _TINY else logits.float()
        probs = torch.softmax(work, dim=-1)
        shifted = 0.5 * (tempered_softmax(work, temperature) + hard.to(work.dtype))
        ctx.save_for_backward(probs, shifted)
        return hard

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        probs, shifted = ctx.saved_tensors
        upstream = grad.to(probs.dtype)

        def softmax_jacobian_times(pi: Tensor) -> Tensor:
            return pi * (upstream - (pi * upstream).sum(-1, keepdim=True))

        total = 2.0 * softmax_jacobian_times(shifted) - 0.5 * softmax_jacobian_times(probs)
        return total.to(grad.dtype), None, None


class ReinmaxSelector(ActionSelector):
    """Sampled actions with the ReinMax gradient (Liu et al., NeurIPS 2023, "Bridging Discrete
    and Backpropagation: Straight-Through and Beyond").

    Forward: one-hot of `D ~ Categorical(softmax(logits))`. Backward: `2·J(π_D) − ½·J(π0)`
    applied to the upstream gradient, with π0 = softmax(logits), π_D = (softmax(logits /
    temperature) + one_hot(D)) / 2 and J(π) = diag(π) − π πᵀ (see `_ReinMax`). For a critic
    linear in the action vector it is unbiased at temperature 1.

    The method is defined for temperature >= 1 (the authors' package refuses smaller values):
    `min_temperature = 1.0`, and `select` raises below it.
    """

    min_temperature = 1.0

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        lowest = float(temperature.min()) if isinstance(temperature, Tensor) else temperature
        if not lowest >= self.min_temperature:
            raise ValueError(
                f"selector=reinmax needs temperature >= {self.min_temperature} (Liu et al. 2023), got {temperature!r}"
            )
        env_action = gumbel_max_sample(logits, generator)
        action = _ReinMax.apply(logits, _one_hot(env_action, logits), temperature)
        return Selection(logits, action, env_action=env_action)


class ExpectedSelector(ActionSelector):
    """Sampled env actions; the all-actions gradient, exact per component.

    The actor's surrogate is `Σ_d Σ_c softmax(logits_d)_c · Q(s, a_−d, c)` with the critic's
    values held fixed (detached) and the other components at their sampled one-hot vectors: its
    gradient with respect to component d's logits is `π_d ⊙ (Q_d − π_d·Q_d)`, the exact gradient
    of E_{a_d~π_d}[Q(s, a_−d, a_d)]. With D = 1 that is the exact gradient of E_π[Q(s, a)] for
    the current critic, with zero variance (the "all-action" or expected policy gradient; Sutton
    et al. 2001, Ciosek & Whiteson 2018); with D > 1 it is an unbiased estimate of the joint
    gradient whose only noise is the other components' samples (the joint expectation has
    A^D terms). The temperature does not enter. The action vectors for critic targets are the
    one-hots of the env action.
    """

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        env_action = gumbel_max_sample(logits, generator)
        return Selection(logits, _one_hot(env_action, logits), env_action=env_action)

    def actor_objective(self, selection: Selection, critic: ActionValue) -> Tensor:
        q_components = critic.components(selection.action).detach()
        return (selection.log_probs.exp() * q_components).sum(-1).sum(-1)


class GappedStraightThroughSelector(ActionSelector):
    """Sampled actions with the gapped straight-through gradient (GST; Fan et al., ICML 2022,
    "Training Discrete Deep Generative Models via Gapped Straight-Through Estimator").

    Forward: one-hot of `D ~ Categorical(softmax(logits))`. Backward: the gradient of
    `softmax((logits + m) / temperature)`, where the perturbation m, held fixed, moves the logits
    deterministically given D: the sampled action's logit up to the row's maximum, and every
    other logit down to at most `maximum − gap`,
        m_D = max_j θ_j − θ_D,    m_i = −max(0, θ_i − max_j θ_j + gap)  (i ≠ D).
    It replaces the Gumbel noise of straight-through Gumbel-softmax, whose perturbed logits have
    the same arrangement (the sample on top), by the smallest move that yields it, so the
    backward pass has no noise beyond the sample's. Masked actions (−inf) stay at −inf.

    Args:
        gap: the margin > 0 between the sampled logit and the others in the backward pass.
    """

    def __init__(self, gap: float) -> None:
        if not (isinstance(gap, numbers.Real) and 0.0 < gap < math.inf):
            raise ValueError(f"selector.gap must be a finite number > 0, got {gap!r}")
        self.gap = float(gap)

    def select(self, logits: Tensor, temperature: Temperature, generator: Generator) -> Selection:
        _check_temperature(temperature)
        env_action = gumbel_max_sample(logits, generator)
        hard = _one_hot(env_action, logits)
        theta = logits.detach()
        row_max = theta.amax(-1, keepdim=True)
        lowered = torch.minimum(theta, row_max - self.gap)  # every other logit at least `gap` below the top
        moved = torch.where(hard.bool(), row_max, lowered)  # −inf stays −inf: min(−inf, ·) = −inf
        # The move m = moved − θ, finite where θ is; logits + m has the gradient of the logits.
        perturbation = torch.where(torch.isneginf(theta), 0.0, moved - theta)
        soft = tempered_softmax(logits + perturbation, temperature)
        return Selection(logits, straight_through(hard, soft), env_action=env_action)
