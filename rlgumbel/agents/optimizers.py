"""Adam and gradient clipping for parameters stacked over the members of a population: every
member has its own learning rate, clipping threshold and step count, and can skip a step.

Gradients and Adam's moments are held as one row per member, [K, P] for P numbers of a member,
so that an update is a handful of operations whatever the number of parameter tensors, and
every reduction runs along one member's contiguous row: a member's numbers are the same
whatever the population's size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def member_view(tensor: Tensor, members: int) -> Tensor:
    """`tensor` [K·r, …] (member k owns rows k·r … (k+1)·r − 1) as [K, r, …]."""
    return tensor.view(members, tensor.shape[0] // members, *tensor.shape[1:])


def member_rows(tensors: Sequence[Tensor], members: int) -> Tensor:
    """Every member's numbers of `tensors` (each [K·r, …]) as one row: [K, P]."""
    return torch.cat([member_view(t, members).flatten(1) for t in tensors], dim=1)


def clip_grad_norms_(grads: Tensor, max_norm: Tensor) -> Tensor:
    """Scale each member's gradient row of `grads` [K, P] so that its 2-norm is at most
    `max_norm` [K] (`torch.nn.utils.clip_grad_norm_` member by member); returns the norms
    before clipping [K]."""
    total = torch.linalg.vector_norm(grads, dim=1)
    grads.mul_((max_norm / (total + 1e-6)).clamp_(max=1.0).unsqueeze(1))
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
        self.members = lr.shape[0]
        self.lr = lr.double()
        self.betas, self.eps = betas, eps
        self._views = [member_view(p, self.members) for p in params]  # [K, r, …] views of the parameters
        self._sizes = [view[0].numel() for view in self._views]
        self.steps = torch.zeros(self.members, dtype=torch.float64)
        self.exp_avg = torch.zeros(self.members, sum(self._sizes))
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)

    @torch.no_grad()
    def step(self, grads: Tensor, stepping: Tensor | None = None) -> None:
        """Apply every member's gradient row of `grads` [K, P] (`member_rows` of the parameters'
        gradients), or only those of the members where `stepping` [K] bool is true: the others'
        parameters, moments and step counts stay as they were."""
        if stepping is None or bool(stepping.all()):
            self._update(grads)
            return
        held = ~stepping
        kept = (self.exp_avg[held].clone(), self.exp_avg_sq[held].clone(), self.steps.clone())
        self._update(grads, held)
        self.exp_avg[held], self.exp_avg_sq[held] = kept[0], kept[1]
        self.steps = torch.where(stepping, self.steps, kept[2])

    def _update(self, grads: Tensor, held: Tensor | None = None) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        step_size = (self.lr / (1 - beta1**self.steps)).float().unsqueeze(1)
        bias2_root = (1 - beta2**self.steps).sqrt().float().unsqueeze(1)
        self.exp_avg.lerp_(grads, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
        update = self.exp_avg_sq.sqrt().div_(bias2_root).add_(self.eps)
        torch.div(self.exp_avg, update, out=update).mul_(step_size)
        if held is not None:
            update[held] = 0.0  # p − 0 is p exactly
        parts = update.split(self._sizes, dim=1)
        torch._foreach_sub_(self._views, [part.view(view.shape) for part, view in zip(parts, self._views)])

    def _member_parts(self, rows: Tensor, member: int) -> list[Tensor]:
        parts = rows[member].split(self._sizes)
        return [part.view(view.shape[1:]).clone() for part, view in zip(parts, self._views)]

    def member_state(self, member: int) -> dict[str, Any]:
        """Member `member`'s moments (one tensor per parameter, its rows) and step count, as a
        population of one would store them."""
        return {
            "steps": self.steps[member : member + 1].clone(),
            "exp_avg": self._member_parts(self.exp_avg, member),
            "exp_avg_sq": self._member_parts(self.exp_avg_sq, member),
        }

    def load_member_state(self, member: int, state: dict[str, Any]) -> None:
        """Restore what `member_state` returned into member `member`."""
        self.steps[member] = state["steps"][0]
        self.exp_avg[member] = torch.cat([part.flatten() for part in state["exp_avg"]])
        self.exp_avg_sq[member] = torch.cat([part.flatten() for part in state["exp_avg_sq"]])
