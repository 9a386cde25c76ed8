"""Replay buffer: ring overwrite, dropped invalid rows, uniform sampling, state round trip."""

import pytest
import torch
from scipy import stats

from rlgumbel.buffer import ReplayBuffer


def _rows(start: int, count: int):
    ids = torch.arange(start, start + count, dtype=torch.float32)
    return (ids[:, None].repeat(1, 3), ids.long(), ids, ids[:, None].repeat(1, 3) + 0.5, torch.zeros(count))


def test_ring_keeps_the_newest_transitions():
    buffer = ReplayBuffer(capacity=5, obs_dim=3)
    buffer.add(*_rows(0, 4))
    buffer.add(*_rows(4, 4))
    assert buffer.size == 5 and buffer.position == 3
    assert sorted(buffer.reward.tolist()) == [3, 4, 5, 6, 7]
    # each row stays internally consistent after wrapping
    assert torch.equal(buffer.obs[:, 0], buffer.reward) and torch.equal(buffer.next_obs[:, 0], buffer.reward + 0.5)


def test_invalid_rows_are_dropped():
    buffer = ReplayBuffer(capacity=10, obs_dim=3)
    buffer.add(*_rows(0, 4), valid=torch.tensor([True, False, True, False]))
    assert buffer.size == 2 and buffer.reward[:2].tolist() == [0, 2]


def test_sampling_is_uniform_over_stored_rows():
    # 20 stored rows, 100k draws: chi-square against uniform, p > 1e-3 (fixed seed).
    buffer = ReplayBuffer(capacity=32, obs_dim=3)
    buffer.add(*_rows(0, 20))
    batch = buffer.sample(100_000, torch.Generator().manual_seed(0))
    counts = torch.bincount(batch.action, minlength=20)
    assert len(counts) == 20  # never a row that was not stored
    assert stats.chisquare(counts[:20].numpy()).pvalue > 1e-3
    assert torch.equal(batch.obs[:, 0], batch.reward) and torch.equal(batch.action.float(), batch.reward)


def test_state_dict_round_trip():
    buffer = ReplayBuffer(capacity=8, obs_dim=3)
    buffer.add(*_rows(0, 11))
    restored = ReplayBuffer(capacity=8, obs_dim=3)
    restored.load_state_dict(buffer.state_dict())
    assert (restored.position, restored.size) == (buffer.position, buffer.size)
    for name in ("obs", "next_obs", "action", "reward", "terminated"):
        assert torch.equal(getattr(restored, name), getattr(buffer, name))


def test_bad_capacity_and_empty_sampling_are_refused():
    with pytest.raises(ValueError, match="buffer_size"):
        ReplayBuffer(capacity=0, obs_dim=3)
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(capacity=4, obs_dim=3).sample(2, None)
