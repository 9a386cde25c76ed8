"""Property tests of every selector over arbitrary finite logits (hypothesis): huge magnitudes,
ties, −inf masks, batch sizes 1..512, every float dtype. Outputs are finite, action vectors lie
on the simplex, and masked actions are never chosen."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from conftest import CONFIG_DIR
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings

SELECTOR_OPTIONS = sorted(p.stem for p in (CONFIG_DIR / "selector").glob("*.yaml"))
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
# Per-dtype tolerance on the action vector's sum: a few units in the last place of the dtype.
SUM_TOLERANCE = {torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float32: 1e-5, torch.float64: 1e-12}


@st.composite
def logit_batches(draw):
    """(logits [B, A] in some float dtype with at least one unmasked action per row, dtype)."""
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.integers(1, 512))
    actions = draw(st.integers(2, 8))
    largest = float(torch.finfo(dtype).max)
    magnitude = draw(st.sampled_from([1.0, 30.0, 1e4, largest / 4]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = (torch.rand(batch, actions, generator=generator, dtype=torch.float64) * 2 - 1) * magnitude
    if draw(st.booleans()):  # ties: a row of equal values
        logits[0] = logits[0, 0]
    mask = torch.rand(batch, actions, generator=generator) < draw(st.sampled_from([0.0, 0.3, 0.8]))
    mask[torch.arange(batch), torch.randint(actions, (batch,), generator=generator)] = False
    return logits.to(dtype).masked_fill(mask, -math.inf), dtype


def _selector(option: str, compose):
    return instantiate(compose(f"selector={option}").selector, _convert_="all")


@pytest.mark.parametrize("option", SELECTOR_OPTIONS)
def test_outputs_are_finite_on_the_simplex_and_never_masked(option, compose_config):
    selector = _selector(option, compose_config)
    minimum = getattr(selector, "min_temperature", 0.0)

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        data=logit_batches(), temperature=st.sampled_from([1e-6, 0.1, 1.0, 10.0, 1e4]), seed=st.integers(0, 2**31 - 1)
    )
    def check(data, temperature, seed):
        logits, dtype = data
        temperature = max(temperature, minimum)
        masked = torch.isneginf(logits)
        generator = torch.Generator().manual_seed(seed)
        selection = selector.select(logits.clone().requires_grad_(), temperature, generator)
        action = selection.action.detach()
        assert not masked.gather(-1, selection.env_action[:, None]).any()
        assert torch.isfinite(action).all()
        assert (action[masked] == 0).all()
        assert torch.allclose(
            action.double().sum(-1), torch.ones(len(action), dtype=torch.float64), atol=SUM_TOLERANCE[dtype]
        )
        for statistic in (selection.log_prob, selection.entropy, selection.probs):
            assert torch.isfinite(statistic.detach()).all()
        behaviour = selector.act(logits, temperature, generator, step=0)
        assert not masked.gather(-1, behaviour[:, None]).any()

    check()
