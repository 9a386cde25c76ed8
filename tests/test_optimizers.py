"""Reference tests of the per-member optimizer and clipping (rlgumbel/agents/optimizers.py):
each member's parameters move as `torch.optim.Adam` and `torch.nn.utils.clip_grad_norm_` would
move that member's parameters alone, with the member's own learning rate, threshold and steps.

The population tests (tests/test_population.py) compare a member with its single run, which uses
the same optimizer; only these tests compare the optimizer with torch's.
"""

from __future__ import annotations

import pytest
import torch

from rlgumbel.agents.optimizers import MemberAdam, clip_grad_norms_, member_rows, member_view

MEMBERS, ROWS = 3, 4
RATES = torch.tensor([1e-3, 3e-3, 1e-2])
# Adam's moments are accumulated in another order here than in torch's implementation, so the
# two agree to float32 rounding: after 20 steps of size ~lr the parameters differ by < 1e-6.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def _parameters(generator: torch.Generator) -> list[torch.Tensor]:
    """Two tensors stacked over the members: a weight [K·4, 5] and a bias [K·4]."""
    return [
        torch.randn(MEMBERS * ROWS, 5, generator=generator).requires_grad_(),
        torch.randn(MEMBERS * ROWS, generator=generator).requires_grad_(),
    ]


def _grads(parameters: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Gradients of the weight of scale 3, of the bias of scale 1e-7: there Adam's eps (1e-8)
    is a tenth of sqrt(v̂) and shapes the step."""
    weight, bias = parameters
    return [torch.randn(weight.shape, generator=generator) * 3, torch.randn(bias.shape, generator=generator) * 1e-7]


def test_member_rows_lay_each_members_numbers_of_every_tensor_side_by_side():
    weight = torch.arange(MEMBERS * ROWS * 2.0).view(MEMBERS * ROWS, 2)
    bias = -torch.arange(MEMBERS * ROWS * 1.0)
    rows = member_rows([weight, bias], MEMBERS)
    assert rows.shape == (MEMBERS, ROWS * 2 + ROWS)
    for k in range(MEMBERS):
        mine = slice(k * ROWS, (k + 1) * ROWS)
        assert torch.equal(rows[k], torch.cat([weight[mine].flatten(), bias[mine]]))
        assert torch.equal(member_view(weight, MEMBERS)[k], weight[mine])


def test_each_member_steps_as_torch_adam_would_step_its_parameters_alone():
    generator = torch.Generator().manual_seed(0)
    parameters = _parameters(generator)
    alone = [
        [p.detach()[k * ROWS : (k + 1) * ROWS].clone().requires_grad_() for p in parameters] for k in range(MEMBERS)
    ]
    references = [torch.optim.Adam(alone[k], lr=float(RATES[k])) for k in range(MEMBERS)]
    optimizer = MemberAdam(parameters, RATES)
    for _ in range(20):
        grads = _grads(parameters, generator)
        optimizer.step(member_rows(grads, MEMBERS))
        for k, reference in enumerate(references):
            for p, g in zip(alone[k], grads):
                p.grad = g[k * ROWS : (k + 1) * ROWS].clone()
            reference.step()
    for k in range(MEMBERS):
        for p, q in zip(parameters, alone[k]):
            torch.testing.assert_close(p.detach()[k * ROWS : (k + 1) * ROWS], q.detach(), **TOLERANCE)
    assert optimizer.steps.tolist() == [20.0] * MEMBERS


def test_a_member_that_does_not_step_keeps_its_parameters_moments_and_count_exactly():
    generator = torch.Generator().manual_seed(1)
    parameters = _parameters(generator)
    twins = [p.detach().clone().requires_grad_() for p in parameters]
    optimizer, everyone = MemberAdam(parameters, RATES), MemberAdam(twins, RATES)
    for step in range(6):
        grads = member_rows(_grads(parameters, generator), MEMBERS)
        held_back = step % 2 == 1  # member 1 sits out every other step
        stepping = torch.tensor([True, not held_back, True])
        before = (parameters[0].detach().clone(), optimizer.exp_avg[1].clone(), optimizer.steps[1].clone())
        optimizer.step(grads, stepping)
        everyone.step(grads)
        if held_back:
            assert torch.equal(member_view(parameters[0].detach(), MEMBERS)[1], member_view(before[0], MEMBERS)[1])
            assert torch.equal(optimizer.exp_avg[1], before[1])
            assert torch.equal(optimizer.steps[1], before[2])
    assert optimizer.steps.tolist() == [6.0, 3.0, 6.0]
    # the members that always stepped are exactly where a population without the pauses is
    for k in (0, 2):
        for p, q in zip(parameters, twins):
            assert torch.equal(member_view(p.detach(), MEMBERS)[k], member_view(q.detach(), MEMBERS)[k])


def test_saving_and_restoring_a_member_continues_its_steps_exactly():
    generator = torch.Generator().manual_seed(2)
    parameters = _parameters(generator)
    optimizer = MemberAdam(parameters, RATES)
    for step in range(3):  # member 2 sits out the first step: its count differs from the others'
        optimizer.step(member_rows(_grads(parameters, generator), MEMBERS), torch.tensor([True, True, step > 0]))
    state = optimizer.member_state(2)
    restored_parameters = [p.detach().clone().requires_grad_() for p in parameters]
    restored = MemberAdam(restored_parameters, RATES)
    restored.load_member_state(2, state)
    grads = member_rows(_grads(parameters, generator), MEMBERS)
    optimizer.step(grads)
    restored.step(grads)
    for p, q in zip(parameters, restored_parameters):
        assert torch.equal(member_view(p.detach(), MEMBERS)[2], member_view(q.detach(), MEMBERS)[2])


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_clipping_scales_each_members_row_as_torch_clips_that_members_gradients(scale):
    generator = torch.Generator().manual_seed(3)
    grads = torch.randn(MEMBERS, 50, generator=generator) * scale * torch.tensor([[0.1], [1.0], [10.0]])
    max_norm = torch.tensor([0.5, 2.0, 5.0])
    clipped = grads.clone()
    norms = clip_grad_norms_(clipped, max_norm)
    for k in range(MEMBERS):
        alone = grads[k].clone().requires_grad_()
        alone.grad = grads[k].clone()
        reference = torch.nn.utils.clip_grad_norm_([alone], float(max_norm[k]))
        torch.testing.assert_close(norms[k], reference)
        torch.testing.assert_close(clipped[k], alone.grad)
        if float(reference) <= float(max_norm[k]):
            assert torch.equal(clipped[k], grads[k])  # below the threshold: untouched
