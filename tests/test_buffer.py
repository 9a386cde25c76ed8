"""Replay buffer: ring overwrite, invalid rows never sampled, uniform sampling, n-step windows
against a naive loop, state round trip. The buffers here hold one member (a single run):
storage is [rows, 1, num_envs, …], steps are added as [1, num_envs, …] and batches come as
[1, batch, …]."""

import pytest
import torch
from scipy import stats

from rlgumbel.buffer import ReplayBuffer

ENVS = 2
MEMBER = 0  # the one member's index in storage and batches


def _step(buffer: ReplayBuffer, t: int, done=(False, False), terminated=(False, False), valid=(True, True)) -> None:
    """Vector step t: env e's transition carries the id 10·t + e in obs, action and reward."""
    ids = torch.tensor([10 * t + e for e in range(ENVS)], dtype=torch.float32)
    terminated = torch.tensor(terminated)
    buffer.add(
        ids[None, :, None].repeat(1, 1, 3),
        ids.long()[None],
        ids[None],
        ids[None, :, None].repeat(1, 1, 3) + 0.5,
        terminated[None],
        (torch.tensor(done) & ~terminated)[None],
        valid=torch.tensor(valid)[None],
    )


def test_ring_keeps_the_newest_vector_steps():
    buffer = ReplayBuffer(capacity=5, obs_shape=(3,), num_envs=ENVS)  # rounded up to 3 rows of 2
    assert (buffer.rows, buffer.capacity) == (3, 6)
    for t in range(5):
        _step(buffer, t)
    assert buffer.size.tolist() == [6] and buffer.position == 2 and buffer.filled == 3
    assert sorted(buffer.reward.flatten().tolist()) == [20, 21, 30, 31, 40, 41]
    # each transition stays internally consistent after wrapping
    assert torch.equal(buffer.obs[..., 0], buffer.reward) and torch.equal(buffer.next_obs[..., 0], buffer.reward + 0.5)


def test_invalid_transitions_are_counted_out_and_never_sampled():
    buffer = ReplayBuffer(capacity=10, obs_shape=(3,), num_envs=ENVS)
    _step(buffer, 0, valid=(True, False))
    _step(buffer, 1, valid=(False, True))
    assert buffer.size.tolist() == [2]
    batch = buffer.sample(2000, torch.Generator().manual_seed(0))
    assert batch.action.shape == (1, 2000)
    assert set(batch.action[MEMBER].tolist()) == {0, 11}


def test_sampling_is_uniform_over_valid_transitions():
    # 10 vector steps of 2 envs, 3 transitions invalid: 17 stored ones. 100k draws, chi-square
    # against uniform, p > 1e-3 (fixed seed).
    buffer = ReplayBuffer(capacity=32, obs_shape=(3,), num_envs=ENVS)
    invalid = {(2, 0), (5, 1), (6, 0)}
    for t in range(10):
        _step(buffer, t, valid=tuple((t, e) not in invalid for e in range(ENVS)))
    batch = buffer.sample(100_000, torch.Generator().manual_seed(0))
    obs, action, reward = batch.obs[MEMBER], batch.action[MEMBER], batch.reward[MEMBER]
    ids = [10 * t + e for t in range(10) for e in range(ENVS) if (t, e) not in invalid]
    counts = torch.bincount(action, minlength=100)
    assert set(torch.nonzero(counts).flatten().tolist()) == set(ids)
    assert stats.chisquare(counts[ids].numpy()).pvalue > 1e-3
    assert torch.equal(obs[:, 0], reward[:, 0]) and torch.equal(action.float(), reward[:, 0])


def naive_window(buffer: ReplayBuffer, row: int, env: int, horizon: int) -> tuple[list[float], int, float, bool]:
    """The n-step window by a loop over one env's stored steps: rewards, steps, next obs id, terminated."""
    rewards, t = [], row
    newest = (buffer.position - 1) % buffer.rows
    while True:
        rewards.append(float(buffer.reward[t, MEMBER, env]))
        if len(rewards) == horizon or bool(buffer.done[t, MEMBER, env]) or t == newest:
            return (
                rewards,
                len(rewards),
                float(buffer.next_obs[t, MEMBER, env, 0]),
                bool(buffer.terminated[t, MEMBER, env]),
            )
        t = (t + 1) % buffer.rows


@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_windows_stop_at_episode_ends_and_at_the_newest_step(horizon):
    # Env 0: an episode terminates at t=3 and is truncated at t=9 (t=4 and t=10 are reset
    # steps); env 1 runs on. 14 steps in a ring of 12 rows: the windows also wrap around.
    buffer = ReplayBuffer(capacity=24, obs_shape=(3,), num_envs=ENVS)
    for t in range(14):
        _step(buffer, t, done=(t in (3, 9), False), terminated=(t == 3, False), valid=(t not in (4, 10), True))
    batch = buffer.sample(4000, torch.Generator().manual_seed(1), horizon=horizon)
    assert batch.reward.shape == (1, 4000, horizon)
    seen = set()
    for index in range(4000):
        transition_id = int(batch.action[MEMBER, index])
        t, env = transition_id // 10, transition_id % 10
        row = t % buffer.rows
        rewards, steps, next_id, terminated = naive_window(buffer, row, env, horizon)
        assert batch.reward[MEMBER, index].tolist() == rewards + [0.0] * (horizon - steps)
        assert int(batch.steps[MEMBER, index]) == steps
        assert float(batch.next_obs[MEMBER, index, 0]) == next_id
        assert bool(batch.terminated[MEMBER, index]) == terminated
        seen.add((steps, terminated))
    if horizon > 1:  # the cases that matter occurred: short windows at ends, full ones
        assert {(horizon, False), (1, True), (1, False)} <= seen


def test_state_dict_round_trip():
    buffer = ReplayBuffer(capacity=8, obs_shape=(3,), num_envs=ENVS)
    for t in range(7):
        _step(buffer, t, done=(t == 2, False), valid=(t != 3, True))
    restored = ReplayBuffer(capacity=8, obs_shape=(3,), num_envs=ENVS)
    restored.load_state_dict(buffer.state_dict())
    assert (restored.position, restored.filled) == (buffer.position, buffer.filled)
    assert torch.equal(restored.size, buffer.size)
    for name in ("obs", "next_obs", "action", "reward", "terminated", "done", "valid"):
        assert torch.equal(getattr(restored, name), getattr(buffer, name))
    with pytest.raises(ValueError, match="env.num_envs"):
        ReplayBuffer(capacity=8, obs_shape=(3,), num_envs=4).load_state_dict(buffer.state_dict())


def test_image_observations_keep_their_shape():
    buffer = ReplayBuffer(capacity=4, obs_shape=(2, 5, 5), num_envs=1)
    obs = torch.rand(1, 1, 2, 5, 5)  # [members, envs, C, H, W]
    buffer.add(
        obs,
        torch.zeros(1, 1, dtype=torch.int64),
        torch.ones(1, 1),
        obs + 1,
        torch.tensor([[False]]),
        torch.tensor([[False]]),
        valid=torch.tensor([[True]]),
    )
    batch = buffer.sample(3, torch.Generator().manual_seed(0))
    assert batch.obs.shape == (1, 3, 2, 5, 5) and torch.equal(batch.next_obs[MEMBER, 0], obs[MEMBER, 0] + 1)


def test_empty_sampling_is_refused():
    with pytest.raises(RuntimeError, match="empty"):
        ReplayBuffer(capacity=4, obs_shape=(3,), num_envs=1).sample(2, None)
