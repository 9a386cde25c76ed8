"""Joint and factored actions: envs in one form (MultiDiscrete, several agents), the actor's
padded components, the critics for joint actions, and what each selector's gradient estimates
when the expectation over joint actions has A^D terms."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import CONFIG_DIR, TINY, read_scalars
from gymnasium import spaces
from omegaconf import OmegaConf

from rlgumbel import layout
from rlgumbel.agents.actor_critic import MemberCritic
from rlgumbel.checkpoint import list_checkpoints
from rlgumbel.cli.evaluate import main as evaluate_main
from rlgumbel.diagnostics import estimator_statistics, expected_value, joint_one_hots, logit_gradients
from rlgumbel.envs import EnvConfigError, env_shape, make_vector_env, restore_vector_env_state
from rlgumbel.networks import Actor, ConcatCritic, QHeadCritic
from rlgumbel.schedules import ConstantSchedule
from rlgumbel.selectors import (
    ArgmaxSelector,
    ExpectedSelector,
    GappedStraightThroughSelector,
    GumbelRaoSelector,
    GumbelSoftmaxSelector,
    ReinmaxSelector,
    SampleSelector,
    StraightThroughSelector,
)

FACTORED_ID = "rlgumbel-test/Factored-v0"
TUPLE_ID = "rlgumbel-test/TupleActions-v0"
MIXED_ID = "rlgumbel-test/MixedActions-v0"


class FactoredEnv(gym.Env):
    """One agent choosing 3 things at once (MultiDiscrete([3, 2, 4])): reward 1 per component
    that matches the observation's target digits, 5 steps per episode."""

    def __init__(self, action_space: spaces.Space | None = None) -> None:
        self.observation_space = spaces.Box(0.0, 3.0, (3,), np.float32)
        self.action_space = action_space or spaces.MultiDiscrete([3, 2, 4])
        self.target = np.zeros(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.target = self.np_random.integers(0, [3, 2, 4])
        return self.target.astype(np.float32), {}

    def step(self, action):
        reward = float(np.sum(np.asarray(action) == self.target))
        return self.target.astype(np.float32), reward, False, False, {}


@pytest.fixture(scope="module", autouse=True)
def toy_envs():
    gym.register(FACTORED_ID, entry_point=FactoredEnv, max_episode_steps=5)
    choices = spaces.Tuple([spaces.Discrete(3), spaces.Discrete(2), spaces.Discrete(4)])
    gym.register(TUPLE_ID, entry_point=lambda: FactoredEnv(choices), max_episode_steps=5)
    mixed = spaces.Tuple([spaces.Discrete(3), spaces.Box(0, 1, (2,))])
    gym.register(MIXED_ID, entry_point=lambda: FactoredEnv(mixed), max_episode_steps=5)
    yield
    for env_id in (FACTORED_ID, TUPLE_ID, MIXED_ID):
        gym.registry.pop(env_id)


# --------------------------------------------------------------------------------------------
# Envs in one form


@pytest.mark.parametrize("env_id", [FACTORED_ID, TUPLE_ID])
def test_one_agent_with_several_choices_is_a_factored_action(env_id):
    envs = make_vector_env(env_id, 2)
    assert env_shape(envs) == env_shape(envs).__class__(obs_shape=(3,), action_sizes=(3, 2, 4), agents=False)
    obs, _ = envs.reset(seed=0)
    _, reward, *_ = envs.step(obs.astype(np.int64))  # the target digits: every component right
    assert reward.tolist() == [3.0, 3.0]


@pytest.mark.parametrize(
    "env_id, words",
    [(MIXED_ID, "Tuple(Discrete(3), Box"), ("Pendulum-v1", "Box(-2.0, 2.0, (1,), float32)")],
)
def test_other_action_spaces_are_one_line_naming_the_space_and_what_is_supported(env_id, words):
    with pytest.raises(EnvConfigError) as error:
        make_vector_env(env_id, 1)
    message = str(error.value)
    assert "\n" not in message and words in message and "MultiDiscrete" in message and "several agents" in message


def test_foraging_is_two_agents_with_a_team_reward_and_its_time_limit_a_truncation():
    envs = make_vector_env("Foraging-8x8-2p-2f-coop-v3", 3)
    shape = env_shape(envs)
    assert shape.agents and shape.action_sizes == (6, 6) and shape.obs_shape == (2, 12)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):  # LBF's limit: 50 steps; random agents rarely collect both foods
        _, reward, terminated, truncated, info = envs.step(rng.integers(0, 6, (3, 2)))
        np.testing.assert_allclose(reward, info["agent_rewards"].sum(-1))
    ended = terminated | truncated
    assert ended.all() and not (terminated & truncated).any()
    # every copy that did not collect all its food was cut by the time limit, not terminated
    unfinished = [env.unwrapped.field.sum() > 0 for env in envs.unwrapped.envs]
    assert (truncated == np.array(unfinished)).all() and np.array(unfinished).any()
    assert info["agent_returns"].shape == (3, 2) and info["_agent_returns"].all()


def test_foraging_ends_terminated_when_every_food_is_collected():
    envs = make_vector_env("Foraging-8x8-2p-2f-coop-v3", 1)
    envs.reset(seed=0)
    envs.unwrapped.envs[0].unwrapped.field[:] = 0  # as if the last food were just loaded
    _, _, terminated, truncated, _ = envs.step(np.zeros((1, 2), dtype=np.int64))
    assert terminated.tolist() == [True] and truncated.tolist() == [False]


def test_warehouse_episodes_end_only_by_truncation():
    envs = make_vector_env("rware-tiny-2ag-v2", 1)
    assert env_shape(envs).action_sizes == (5, 5) and env_shape(envs).agents
    envs.reset(seed=0)
    for _ in range(500):
        _, _, terminated, truncated, _ = envs.step(np.zeros((1, 2), dtype=np.int64))
    assert terminated.tolist() == [False] and truncated.tolist() == [True]


def test_a_pettingzoo_parallel_env_is_padded_rows_per_agent_and_the_summed_reward():
    envs = make_vector_env("mpe2/simple_speaker_listener_v4", 2)
    shape = env_shape(envs)
    assert shape.agents and shape.action_sizes == (3, 5) and shape.obs_shape == (2, 11)
    obs, _ = envs.reset(seed=0)
    assert (obs[:, 0, 3:] == 0).all() and (obs[:, 0, :3] != 0).any()  # the speaker sees 3 features
    for _ in range(25):  # mpe2's limit: 25 cycles
        _, reward, terminated, truncated, info = envs.step(np.zeros((2, 2), dtype=np.int64))
        rewards = info["agent_rewards"]
        np.testing.assert_allclose(reward, rewards.sum(-1))
        np.testing.assert_allclose(rewards[:, 0], rewards[:, 1])  # a shared reward, counted per agent
    assert truncated.all() and not terminated.any()


def test_an_unknown_mpe2_module_is_an_unregistered_id():
    with pytest.raises(EnvConfigError, match="env.id='mpe2/no_such_task_v1' is not a registered"):
        make_vector_env("mpe2/no_such_task_v1", 1)


# --------------------------------------------------------------------------------------------
# Networks for joint actions


def test_padded_choices_get_minus_infinite_logits_and_the_rest_are_finite():
    actor = Actor(2, (2, 11), (3, 5), [16], agents=True)
    logits = actor(torch.randn(2, 7, 2, 11))
    assert logits.shape == (2, 7, 2, 5)
    assert torch.isneginf(logits[:, :, 0, 3:]).all() and torch.isfinite(logits[:, :, 0, :3]).all()
    assert torch.isfinite(logits[:, :, 1]).all()
    assert actor.allowed.tolist() == [[True] * 3 + [False] * 2, [True] * 5]


@pytest.mark.parametrize("shared", [False, True])
def test_each_agents_logits_come_from_its_own_row_only(shared):
    actor = Actor(1, (3, 4), (5, 5, 5), [8], agents=True, share_parameters=shared)
    obs = torch.randn(1, 6, 3, 4)
    changed = obs.clone()
    changed[:, :, 1] += 1.0  # agent 1 sees something else
    before, after = actor(obs), actor(changed)
    assert torch.equal(before[:, :, [0, 2]], after[:, :, [0, 2]]) and not torch.equal(before[:, :, 1], after[:, :, 1])
    networks = 1 if shared else 3
    assert actor.net.weights[0].shape == (networks, 4 + (3 if shared else 0), 8)


def test_a_q_head_critic_refuses_a_joint_action_and_names_the_alternatives():
    with pytest.raises(ValueError) as error:
        QHeadCritic(1, 12, (6, 6), [16], ensemble=2, pessimism=1.0)
    assert "agent.critic.kind=concat" in str(error.value) and "6^2 joint actions" in str(error.value)


def test_independent_critics_need_agents_and_read_their_own_row_and_action():
    with pytest.raises(ValueError, match="agent.critic.centralised=false needs a multi-agent env"):
        ConcatCritic(1, 12, (6, 6), [16], ensemble=2, pessimism=1.0, centralised=False)
    critic = ConcatCritic(1, (2, 4), (3, 3), [16], ensemble=2, pessimism=1.0, agents=True, centralised=False)
    obs, action = torch.randn(1, 5, 2, 4), torch.softmax(torch.randn(1, 5, 2, 3), -1)
    values = critic.values(obs, action)
    assert values.shape == (1, 2, 5, 2)  # [K, E, B, H]: a head per agent
    other = action.clone()
    other[:, :, 1] = torch.softmax(torch.randn(1, 5, 3), -1)
    changed = critic.values(obs, other)
    assert torch.equal(values[..., 0], changed[..., 0]) and not torch.equal(values[..., 1], changed[..., 1])


@pytest.mark.parametrize("kind", [ConcatCritic, QHeadCritic])
def test_component_values_replace_one_component_by_each_choice(kind):
    # Reference: the critic evaluated at the joint action with component d replaced by e_a.
    independent = kind is QHeadCritic  # a q_head serves joint actions as independent heads
    critic = kind(1, (3, 4), (4, 4, 4), [16], ensemble=2, pessimism=0.5, agents=True, centralised=not independent)
    obs = torch.randn(1, 6, 3, 4, generator=torch.Generator().manual_seed(0))
    action = torch.nn.functional.one_hot(torch.randint(4, (1, 6, 3), generator=torch.Generator().manual_seed(1)), 4)
    values = critic.bind(obs)
    components = values.components(action.float())  # [1, 6, 3, 4]
    for d in range(3):
        for a in range(4):
            replaced = action.clone().float()
            replaced[:, :, d] = torch.nn.functional.one_hot(torch.tensor(a), 4).float()
            heads = values.heads(replaced)  # [1, 6, H]
            reference = heads[..., 0] if not independent else heads[..., d]
            torch.testing.assert_close(components[:, :, d, a], reference, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Gradients on a factored toy objective: D = 3 components of A = 4 choices, 64 joint actions


D, A, STATES, OBS = 3, 4, 6, 5


def toy_problem() -> tuple[torch.Tensor, torch.Tensor, ConcatCritic]:
    """A fixed random concat critic (float64, weights from a seeded generator) over a factored
    action, its states and logits [S, D, A]."""
    generator = torch.Generator().manual_seed(7)
    critic = ConcatCritic(1, OBS, (A,) * D, [32], ensemble=2, pessimism=1.0).double()
    with torch.no_grad():
        for param in critic.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float64))
    obs = torch.randn(STATES, OBS, generator=generator, dtype=torch.float64)
    logits = torch.randn(STATES, D, A, generator=generator, dtype=torch.float64)
    return obs, logits, critic


def test_the_exact_joint_gradient_is_the_enumeration_of_all_joint_actions():
    # Reference: a loop over the 64 joint actions, each valued by the critic alone, weighted by
    # the product of the components' probabilities; its gradient against expected_value's.
    obs, logits, critic = toy_problem()
    bind = MemberCritic(critic, 0).bind
    leaf = logits.clone().requires_grad_(True)
    fast = expected_value(torch.softmax(leaf, -1), obs, bind)
    probs = torch.softmax(leaf, -1)
    slow = 0.0
    for joint in joint_one_hots(D, A).double():
        value = bind(obs).of(joint.expand(STATES, D, A)).detach()  # [S]
        slow = slow + ((probs * joint).sum(-1).prod(-1) * value).mean()
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    (fast_gradient,) = torch.autograd.grad(fast, leaf)
    (slow_gradient,) = torch.autograd.grad(slow, leaf)
    torch.testing.assert_close(fast_gradient, slow_gradient, rtol=1e-10, atol=1e-12)


ESTIMATES = 20_000


@pytest.mark.parametrize("make", [SampleSelector, ExpectedSelector], ids=["sample", "expected"])
def test_unbiased_selectors_average_to_the_exact_joint_gradient(make):
    # Each of the 72 coordinates of the mean of M = 20,000 independent estimates lies within 5
    # standard errors (the sample sd / sqrt(M)) of the exact gradient: a correct estimator misses
    # with probability < 6e-7 per coordinate (central limit theorem), < 5e-5 for all 72.
    obs, logits, critic = toy_problem()
    bind = MemberCritic(critic, 0).bind
    exact, estimates = logit_gradients(logits, obs, bind, make(), 1.0, torch.Generator().manual_seed(3), ESTIMATES)
    mean, standard_error = estimates.mean(0), estimates.std(0) / ESTIMATES**0.5
    assert (standard_error > 0).all()  # with D > 1 even `expected` has the other components' noise
    assert ((mean - exact).abs() <= 5 * standard_error).all(), ((mean - exact) / standard_error).abs().max()


BIASED = {
    "gumbel_softmax": (lambda: GumbelSoftmaxSelector(hard=False), 0.5),
    "gumbel_softmax_hard": (lambda: GumbelSoftmaxSelector(hard=True), 1.0),
    "straight_through": (StraightThroughSelector, 1.0),
    "gumbel_rao": (lambda: GumbelRaoSelector(samples=4), 0.5),
    "reinmax": (ReinmaxSelector, 1.0),
    "gapped_straight_through": (lambda: GappedStraightThroughSelector(gap=1.0), 1.0),
    "argmax": (lambda: ArgmaxSelector(epsilon=ConstantSchedule(0.0)), 1.0),
}


@pytest.mark.parametrize("name", sorted(BIASED))
def test_a_biased_selectors_bias_is_what_the_diagnostics_report(name):
    # The bias |E[ĝ] − g*| / |g*| from M = 20,000 estimates is known to ±(its standard error,
    # sqrt(variance / M) / |g*|); the diagnostics' estimate from 2,000 other draws must agree
    # within 5 of its own (larger) standard errors plus 5 of the reference's. Every one of these
    # estimators is biased through a critic that is not linear in the joint action: the
    # reference bias is at least 10 of its standard errors.
    make, temperature = BIASED[name]
    obs, logits, critic = toy_problem()
    bind = MemberCritic(critic, 0).bind
    exact, reference = logit_gradients(logits, obs, bind, make(), temperature, torch.Generator().manual_seed(5), 20_000)
    truth = estimator_statistics(reference.flatten(1), exact.flatten())
    _, estimates = logit_gradients(logits, obs, bind, make(), temperature, torch.Generator().manual_seed(6), 2_000)
    reported = estimator_statistics(estimates.flatten(1), exact.flatten())
    bias, floor = truth["estimator/relative_bias"], truth["estimator/relative_standard_error"]
    assert bias > 10 * floor, (name, bias, floor)
    tolerance = 5 * reported["estimator/relative_standard_error"] + 5 * floor + 1e-9  # 1e-9: rounding of a mean
    assert abs(reported["estimator/relative_bias"] - bias) <= tolerance, (name, reported, truth)


# --------------------------------------------------------------------------------------------
# Training through the CLI


PRESETS = ["lbf_8x8_2p_2f_coop", "lbf_10x10_3p_3f", "rware_tiny_2ag", "mpe_speaker_listener", "mpe_spread"]


def _final_checkpoint(run_dir: Path) -> dict:
    return torch.load(list_checkpoints(run_dir / "checkpoints")[-1], weights_only=False)


def _same_state(a: dict, b: dict, env_id: str) -> None:
    assert a["step"] == b["step"] and a["evaluations"] == b["evaluations"]
    for part in ("actor", "critic", "target_critic"):
        for name, tensor in a["agent"][part].items():
            assert torch.equal(tensor, b["agent"][part][name]), (part, name)
    assert all(torch.equal(a["buffer"][key], b["buffer"][key]) for key in ("obs", "action", "reward"))
    # the next evaluation starts where it would have: LBF's resets depend on the episode before
    starts = []
    for state in (a, b):
        envs = make_vector_env(env_id, 2)
        restore_vector_env_state(envs, state["eval_envs"])
        starts.append(envs.reset(seed=1_000_000)[0])
    np.testing.assert_array_equal(*starts)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_multi_agent_preset_trains_through_the_cli_and_resumes_exactly(preset, cli, tmp_path: Path):
    # 300 env steps straight, against 200 then resumed to 300: the same agent, buffer and
    # evaluations, bit for bit. Evaluations of 2 episodes every 100 steps.
    budget = [f"env={preset}", *TINY, "trainer.eval_every=100", "trainer.checkpoint_every=100"]
    if preset.startswith("rware"):
        budget.append("+env.kwargs.max_steps=50")  # RWARE's episodes of 500 steps would make evaluations long
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli(*budget, "trainer.total_steps=300", f"hydra.run.dir={straight}")[0] == 0
    code, _, stderr = cli(*budget, "trainer.total_steps=200", f"hydra.run.dir={resumed}")
    assert code == 0, stderr
    assert cli(f"resume={resumed}", "trainer.total_steps=300")[0] == 0
    _same_state(_final_checkpoint(straight), _final_checkpoint(resumed), compose_id(preset))


def test_the_team_return_is_the_sum_of_the_agents_and_evaluate_reports_both(cli, capsys, tmp_path: Path):
    # simple_spread: 3 agents, 25-step episodes, rewards that differ between agents (collisions)
    run_dir = tmp_path / "run"
    assert cli("env=mpe_spread", *TINY, f"hydra.run.dir={run_dir}")[0] == 0
    scalars = read_scalars(run_dir / "tb")
    team = scalars["charts/episodic_return"]
    by_agent = [scalars[f"charts/episodic_return_agent{d}"] for d in range(3)]
    assert len(team) >= 4 and all(len(agent) == len(team) for agent in by_agent)
    for k, (step, value) in enumerate(team):
        assert [agent[k][0] for agent in by_agent] == [step] * 3
        assert value == pytest.approx(sum(agent[k][1] for agent in by_agent), rel=1e-5, abs=1e-4)
    capsys.readouterr()
    assert evaluate_main([str(run_dir), "--episodes", "3"]) == 0
    table = capsys.readouterr().out
    result = json.loads((run_dir / layout.EVALUATION_FILE).read_text())
    greedy = result["policies"]["greedy"]
    assert len(greedy["agent_means"]) == 3 and np.array(greedy["agent_returns"]).shape == (3, 3)
    np.testing.assert_allclose(np.array(greedy["agent_returns"]).sum(-1), greedy["returns"], rtol=1e-5, atol=1e-4)
    assert "| agent 0 | agent 1 | agent 2 |" in table


def test_videos_need_an_env_that_renders_frames(cli, tmp_path: Path):
    code, _, stderr = cli("env=lbf_8x8_2p_2f_coop", *TINY, "trainer.video_every=200", f"hydra.run.dir={tmp_path / 'r'}")
    assert code == 2
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith("error: trainer.video_every: env.id='Foraging-8x8-2p-2f-coop-v3' renders no rgb_array frames")
    )


def compose_id(preset: str) -> str:
    """The env id of a shipped preset."""
    return OmegaConf.load(CONFIG_DIR / "env" / f"{preset}.yaml").env.id
