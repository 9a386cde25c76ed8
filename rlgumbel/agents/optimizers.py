"""Adam and gradient clipping for parameters stacked over the members of a population: every
member has its own learning rate, clipping threshold and step count, and can skip a step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def member_view(tensor: Tensor, members: int) -> Tensor:
    """`tensor` [K·r, …] (member k owns rows k·r … (k+1)·r − 1) as [K, r, …]."""
    return tensor.view(members, tensor.shape[0] // members, *tensor.shape[1:])


def per_member(values: Tensor, like: Tensor) -> Tensor:
    """Per-member values [K] shaped to broadcast against a member view `like` [K, …]."""
    return values.view(-1, *[1] * (like.dim() - 1))


def clip_grad_norms_(params: Sequence[Tensor], max_norm: Tensor) -> Tensor:
    """Scale each member's gradients so that their joint 2-norm is at most `max_norm` [K]
    (`torch.nn.utils.clip_grad_norm_` member by member); returns the norms before clipping [K]."""
    members = max_norm.shape[0]
    grads = [member_view(p.grad, members) for p in params]
    # Every reduction runs along a contiguous row of one member, so that a member's norm is the
    # same number whatever the population's size (a reduction across rows would sum in another order).
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)  # [K, P]
    total = torch.linalg.vector_norm(norms, dim=1)
    scale = (max_norm / (total + 1e-6)).clamp_(max=1.0)
    torch._foreach_mul_(grads, [per_member(scale, g) for g in grads])
    return total


class MemberAdam:
    """Adam (Kingma & Ba 2015) over parameters whose dim 0 stacks K members' rows.

    The update is torch.optim.Adam's without weight decay, `p ← p − lr_k · m̂ / (sqrt(v̂) + eps)`,
    with member k's own learning rate and bias corrections from its own step count.

    Args:
        params: leaf tensors [K·r, …]; member k owns rows k·r … (k+1)·r − 1 of each.
        lr: [K] learning rates.
    """

    def __init__(
        self, params: Sequence[Tensor], lr: Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.params = list(params)
        self.members = lr.shape[0]
        self.lr = lr.double()
        self.betas, self.eps = betas, eps
        self.steps = torch.zeros(self.members, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self._views = [member_view(t, self.members) for t in (*self.params, *self.exp_avg, *self.exp_avg_sq)]

    @torch.no_grad()
    def step(self, stepping: Tensor | None = None) -> None:
        """Apply every member's gradient (`p.grad`), or only those of the members where `stepping`
        [K] bool is true: the others' parameters, moments and step counts stay as they were."""
        if stepping is None or bool(stepping.all()):
            self._step_all()
            return
        kept = [view[~stepping].clone() for view in self._views]
        steps = self.steps.clone()
        self._step_all()
        for view, before in zip(self._views, kept):
            view[~stepping] = before
        self.steps = torch.where(stepping, self.steps, steps)

    def _step_all(self) -> None:
        beta1, beta2 = self.betas
        count = len(self.params)
        params, exp_avg, exp_avg_sq = self._views[:count], self._views[count : 2 * count], self._views[2 * count :]
        grads = [member_view(p.grad, self.members) for p in self.params]
        self.steps += 1
        step_size = (self.lr / (1 - beta1**self.steps)).float()
        bias2_root = (1 - beta2**self.steps).sqrt().float()
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        denominators = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denominators, [per_member(bias2_root, d) for d in denominators])
        torch._foreach_add_(denominators, self.eps)
        updates = torch._foreach_div(exp_avg, denominators)
        torch._foreach_mul_(updates, [per_member(step_size, u) for u in updates])
        torch._foreach_sub_(params, updates)

    def member_state(self, member: int) -> dict[str, Any]:
        """Member `member`'s moments and step count, as a population of one would store them."""
        return {
            "steps": self.steps[member : member + 1].clone(),
            "exp_avg": [member_view(m, self.members)[member : member + 1].flatten(0, 1).clone() for m in self.exp_avg],
            "exp_avg_sq": [
                member_view(v, self.members)[member : member + 1].flatten(0, 1).clone() for v in self.exp_avg_sq
            ],
        }

    def load_member_state(self, member: int, state: dict[str, Any]) -> None:
        """Restore what `member_state` returned into member `member`."""
        self.steps[member] = state["steps"][0]
        for mine, saved in zip((*self.exp_avg, *self.exp_avg_sq), (*state["exp_avg"], *state["exp_avg_sq"])):
            view = member_view(mine, self.members)
            view[member] = saved.view(view.shape[1:])
