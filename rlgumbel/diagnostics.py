"""How good is a selector's actor gradient? Bias and variance against the exact gradient.

On a fixed batch of states, with the critic's values held fixed, the exact actor gradient is
    g* = ∇_φ mean_s Σ_a π_φ(a|s) Q(s, a),
computed by enumerating the actions: with D components of A choices (padded), the J = A^D joint
actions, whose probability is Π_d π_d(a_d|s) (at most `MAX_JOINT_ACTIONS`; a padded choice has
probability 0). The selector's `actor_objective`
gives a stochastic estimate of it; M independent estimates are drawn in one pass by repeating the
batch M times (every selector acts row by row, so the replicas' noise is independent),
differentiating with respect to the repeated logits, and mapping the M logit gradients
[M, B, D, A] to parameter gradients with one batched vector-Jacobian product through the actor
(`torch.autograd.grad(..., is_grads_batched=True)`), not M backward passes.

The entropy bonus is left out: it is exact and the same for every selector.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rlgumbel.selectors import ActionSelector, ActionValue

MAX_JOINT_ACTIONS = 4096  # the critic is evaluated at every joint action of every state


def check_enumerable(components: int, num_actions: int) -> None:
    """Raise ValueError if the A^D joint actions are more than `MAX_JOINT_ACTIONS`."""
    if num_actions**components > MAX_JOINT_ACTIONS:
        raise ValueError(
            f"the exact gradient enumerates the {num_actions}^{components} = {num_actions**components} joint "
            f"actions of this env, more than {MAX_JOINT_ACTIONS}"
        )


def joint_one_hots(components: int, num_actions: int) -> Tensor:
    """Every joint action as one-hot vectors [J, D, A], J = A^D, the last component varying fastest."""
    check_enumerable(components, num_actions)
    choices = torch.cartesian_prod(*[torch.arange(num_actions)] * components).view(-1, components)
    return torch.nn.functional.one_hot(choices, num_actions).float()


def expected_value(probs: Tensor, obs: Tensor, bind: Callable[[Tensor], ActionValue]) -> Tensor:
    """mean_s E_{a~π}[Q(s, a)] under the component distributions probs [B, D, A] (differentiable
    in probs), the critic's values held fixed: Σ_a π(a|s) Q(s, a) for one component, the sum over
    the J joint actions, each of probability Π_d π_d(a_d|s), for several."""
    batch, components, num_actions = probs.shape
    if components == 1:
        return (probs * bind(obs).components(probs.detach()).detach()).sum(-1).sum(-1).mean()
    joint = joint_one_hots(components, num_actions).to(probs.dtype)  # [J, D, A]
    count = joint.shape[0]
    every_obs = obs.repeat_interleave(count, dim=0)
    values = bind(every_obs).of(joint.repeat(batch, 1, 1)).detach().view(batch, count)
    joint_probs = (probs.unsqueeze(1) * joint).sum(-1).prod(-1)  # [B, J]
    return (joint_probs * values).sum(-1).mean()


def logit_gradients(
    logits: Tensor,
    obs: Tensor,
    bind: Callable[[Tensor], ActionValue],
    selector: ActionSelector,
    temperature: float,
    generator: torch.Generator | None,
    samples: int,
) -> tuple[Tensor, Tensor]:
    """Exact and estimated gradients of the batch-mean actor objective w.r.t. the logits.

    Args:
        logits: [B, D, A] (detached inside).
        obs: [B, *obs_shape] the states, passed to `bind` (repeated M times for the estimates).
        bind: obs [N, *obs_shape] → the critic's values Q(s, ·) for those states, e.g. `critic.bind`.
        selector: whose `actor_objective` is estimated.
        temperature: > 0, passed to `selector.select`.
        generator: the noise of the M estimates.
        samples: M >= 1 independent estimates.
    Returns:
        exact: [B, D, A], ∂/∂logits of mean_s E_{a~π}[Q(s, a)] (`expected_value`); for D = 1,
            π ⊙ (Q − π·Q) / B.
        estimates: [M, B, D, A], ∂/∂logits of mean_s actor_objective(s), one per independent draw.
    """
    batch = logits.shape[0]
    with torch.enable_grad():
        leaf = logits.detach().requires_grad_()
        (exact,) = torch.autograd.grad(expected_value(torch.softmax(leaf, -1), obs, bind), leaf)

        # Replica m is rows m·B … (m+1)·B − 1; each replica's objective is a batch mean.
        repeated = logits.detach().repeat(samples, 1, 1).requires_grad_()
        selection = selector.select(repeated, temperature, generator)
        objective = selector.actor_objective(selection, bind(obs.repeat(samples, *[1] * (obs.dim() - 1))))
        (estimates,) = torch.autograd.grad(objective.sum() / batch, repeated)
    return exact, estimates.view(samples, *logits.shape)


def policy_gradients(
    actor: nn.Module,
    obs: Tensor,
    bind: Callable[[Tensor], ActionValue],
    selector: ActionSelector,
    temperature: float,
    generator: torch.Generator | None,
    samples: int,
) -> tuple[Tensor, Tensor]:
    """Exact and estimated actor gradients, flattened over the actor's trainable parameters.

    Args: as `gradient_diagnostics`.
    Returns:
        exact: [P], the exact gradient g* of mean_s Σ_a π(a|s) Q(s, a), Q held fixed.
        estimates: [M, P], M independent estimates from `selector.actor_objective`.
    """
    params = [p for p in actor.parameters() if p.requires_grad]
    with torch.enable_grad():
        logits = actor(obs)
        exact, estimates = logit_gradients(logits, obs, bind, selector, temperature, generator, samples)
        cotangents = torch.cat([exact.unsqueeze(0), estimates])  # [M + 1, B, D, A]
        grads = torch.autograd.grad(logits, params, grad_outputs=cotangents, is_grads_batched=True)
    flat = torch.cat([g.flatten(1) for g in grads], dim=1)
    return flat[0], flat[1:]


def estimator_statistics(estimates: Tensor, exact: Tensor) -> dict[str, float]:
    """Bias and variance of M gradient estimates [M, P] against the exact gradient [P].

    Returns (floats, computed in float64):
        estimator/cosine: cosine between the mean estimate and the exact gradient.
        estimator/relative_bias: |mean − exact| / |exact|. It includes Monte-Carlo error: an
            unbiased estimator scores about `estimator/relative_standard_error`.
        estimator/relative_standard_error: sqrt(variance / M) / |exact|, that noise floor.
        estimator/variance: total variance, Σ_params of the unbiased sample variance (÷ (M − 1)).
        estimator/snr: |mean| / sqrt(variance); inf when the estimates agree exactly.
        estimator/grad_norm: the mean norm of one estimate.
        estimator/exact_norm: |exact|.
    Ratios to |exact| are NaN when the exact gradient is 0.
    """
    samples = estimates.shape[0]
    if samples < 2:
        raise ValueError(f"estimator statistics need samples >= 2, got {samples}")
    estimates, exact = estimates.double(), exact.double()
    mean = estimates.mean(0)
    variance = (estimates - mean).square().sum().item() / (samples - 1)
    exact_norm = exact.norm().item()
    mean_norm = mean.norm().item()

    def relative(value: float) -> float:
        return value / exact_norm if exact_norm > 0 else math.nan

    cosine = (mean @ exact).item() / (mean_norm * exact_norm) if mean_norm * exact_norm > 0 else math.nan
    return {
        "estimator/cosine": cosine,
        "estimator/relative_bias": relative((mean - exact).norm().item()),
        "estimator/relative_standard_error": relative(math.sqrt(variance / samples)),
        "estimator/variance": variance,
        "estimator/snr": mean_norm / math.sqrt(variance) if variance > 0 else math.inf,
        "estimator/grad_norm": estimates.norm(dim=1).mean().item(),
        "estimator/exact_norm": exact_norm,
    }


def gradient_diagnostics(
    actor: nn.Module,
    obs: Tensor,
    bind: Callable[[Tensor], ActionValue],
    selector: ActionSelector,
    temperature: float,
    generator: torch.Generator | None,
    samples: int = 32,
) -> dict[str, float]:
    """Bias, variance and signal-to-noise of a selector's actor gradient on a batch of states.

    Does not touch the parameters' `.grad` nor the critic; safe to call between updates.

    Args:
        actor: obs [B, *obs_shape] → logits [B, D, A]; its trainable parameters define the gradient.
        obs: [B, *obs_shape] a fixed batch of states (e.g. a replay batch).
        bind: obs [N, *obs_shape] → the critic's values Q(s, ·) for those states (`agent.critic.bind`).
        selector: the selector under study (`agent.selector`).
        temperature: > 0, the current temperature.
        generator: noise of the estimates; a generator of its own keeps training reproducible
            whether diagnostics run or not.
        samples: M >= 2 independent estimates.
    Returns:
        The `estimator/*` scalars of `estimator_statistics`.
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (a variance needs two estimates), got {samples}")
    exact, estimates = policy_gradients(actor, obs, bind, selector, temperature, generator, samples)
    return estimator_statistics(estimates, exact)
