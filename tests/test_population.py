"""A population trains its members exactly as they would train alone: a population of one is
the single run, a member of a larger one its single run bit for bit, and no member's numbers
depend on another's."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import TRAIN_SCRIPT, read_scalars

from rlgumbel.buffer import one_step_batch
from rlgumbel.checkpoint import list_checkpoints
from rlgumbel.cli.evaluate import main as evaluate_main
from rlgumbel.config import build_population, build_trainer
from rlgumbel.generators import MemberGenerators
from rlgumbel.layout import SUMMARY_FILE
from rlgumbel.report import COMPLETED, read_events
from rlgumbel.selectors import GumbelSoftmaxSelector

SHORT = [
    "trainer.total_steps=1500",
    "trainer.learning_starts=300",
    "trainer.eval_every=750",
    "trainer.eval_episodes=3",
    "trainer.progress=false",
]
MEMBERS = [
    ["seed=0", "schedule.start=1.0"],
    ["seed=1", "schedule.start=0.5"],
    ["seed=2", "schedule.start=2.0", "agent.actor.lr=0.0003"],
]


def _train(trainers: list) -> None:
    for trainer in trainers:
        trainer.run()


def _parameters(trainer, member: int) -> dict[str, torch.Tensor]:
    state = trainer.agent.member_state(member)
    return {f"{part}.{name}": value for part in ("actor", "critic") for name, value in state[part].items()}


def test_a_population_of_one_is_the_single_run_bit_for_bit(compose_config, tmp_path: Path):
    cfg = compose_config(*SHORT, *MEMBERS[1])
    single, population = build_trainer(cfg, tmp_path / "single"), build_population([cfg], [tmp_path / "one"], [None])
    _train([single, population])
    assert single.evaluations == population.evaluations
    for name, value in _parameters(single, 0).items():
        assert torch.equal(value, _parameters(population, 0)[name]), name


def test_members_train_bit_for_bit_as_their_single_runs(compose_config, tmp_path: Path):
    cfgs = [compose_config(*SHORT, *member) for member in MEMBERS]
    singles = [build_trainer(cfg, tmp_path / f"single{k}") for k, cfg in enumerate(cfgs)]
    population = build_population(cfgs, [tmp_path / f"member{k}" for k in range(len(cfgs))], [None] * len(cfgs))
    _train([*singles, population])
    for k, single in enumerate(singles):
        assert population.evaluations[k] == single.evaluations[0]
        for name, value in _parameters(single, 0).items():
            assert torch.equal(_parameters(population, k)[name], value), (k, name)


# Other selectors, critics and env features, each briefly: the same holds.
VARIANTS = {
    "argmax_concat_sampled": ["selector=argmax", "agent.critic.kind=concat", "agent.critic_target=sampled"],
    "gumbel_rao_tuned_entropy": [
        "selector=gumbel_rao",
        "agent.entropy_coef=0.1",
        "agent.target_entropy_fraction=0.5",
        "agent.target_entropy_end_fraction=0.1",
        "agent.target_entropy_decay_steps=[300,900]",
        "agent.normalize_observations=true",
    ],
    "reinmax_hard_gumbel_three_critics": ["selector=reinmax", "schedule.end=1.0", "agent.critic.ensemble=3"],
    "taxi_masks": ["env=taxi", "selector=gumbel_softmax", "selector.hard=true"],
    "minatar_cnn": ["env=minatar_breakout", "trainer.batch_size=32", "trainer.buffer_size=2000"],
    # joint actions: two agents and a centralised critic; three agents with shared networks and
    # independent q_head critics, padded components (speaker 3 choices, listener 5)
    "lbf_centralised": ["env=lbf_8x8_2p_2f_coop", "selector=gumbel_rao", "agent.critic_target=expected"],
    "speaker_listener_independent_shared": [
        "env=mpe_speaker_listener",
        "selector=sample",
        "agent.critic.kind=q_head",
        "agent.critic.centralised=false",
        "agent.share_parameters=true",
    ],
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_kind_of_member_trains_bit_for_bit_as_its_single_run(variant, compose_config, tmp_path: Path):
    budget = ["trainer.total_steps=1200", "trainer.learning_starts=300", "trainer.eval_every=600"]
    members = [["seed=3", "schedule.start=1.5"], ["seed=4", "schedule.start=2.5", "agent.critic.lr=0.001"]]
    cfgs = [compose_config(*SHORT, *VARIANTS[variant], *budget, *member) for member in members]
    single = build_trainer(cfgs[1], tmp_path / "single")
    population = build_population(cfgs, [tmp_path / "a", tmp_path / "b"], [None, None])
    _train([single, population])
    assert population.evaluations[1] == single.evaluations[0]
    for name, value in _parameters(single, 0).items():
        assert torch.equal(_parameters(population, 1)[name], value), name


def test_changing_one_member_leaves_the_others_bit_for_bit(compose_config, tmp_path: Path):
    first = compose_config(*SHORT, *MEMBERS[0])
    runs = []
    for variant, other in enumerate((MEMBERS[1], ["seed=1", "schedule.start=3.0", "agent.critic.lr=0.01"])):
        cfgs = [first, compose_config(*SHORT, *other)]
        runs.append(build_population(cfgs, [tmp_path / f"{variant}_{k}" for k in range(2)], [None, None]))
    _train(runs)
    assert runs[0].evaluations[0] == runs[1].evaluations[0]
    assert runs[0].evaluations[1] != runs[1].evaluations[1]
    for name, value in _parameters(runs[0], 0).items():
        assert torch.equal(value, _parameters(runs[1], 0)[name]), name


def test_one_update_of_a_member_is_its_single_update_bit_for_bit(make_agent):
    pair = make_agent(4, 2, GumbelSoftmaxSelector(hard=False), seeds=[5, 1])
    alone = make_agent(4, 2, GumbelSoftmaxSelector(hard=False), seeds=[1])
    generator = torch.Generator().manual_seed(4)
    obs, next_obs = torch.randn(2, 128, 4, generator=generator), torch.randn(2, 128, 4, generator=generator)
    action, reward = torch.randint(2, (2, 128, 1), generator=generator), torch.randn(2, 128, generator=generator)
    batch = one_step_batch(obs, action, reward, next_obs, torch.zeros(2, 128))
    single = one_step_batch(obs[1:], action[1:], reward[1:], next_obs[1:], torch.zeros(1, 128))
    temperature = torch.tensor([0.5, 2.0]).view(2, 1, 1, 1)
    pair_generators, alone_generators = MemberGenerators([5, 1]), MemberGenerators([1])
    for _ in range(6):  # spans an actor step (actor_update_every 4)
        pair_metrics, _ = pair.update(batch, temperature, pair_generators)
        alone_metrics, _ = alone.update(single, temperature[1:], alone_generators)
        assert all(torch.equal(pair_metrics[tag][1:], alone_metrics[tag]) for tag in alone_metrics)
    for name, value in alone.member_state(0)["actor"].items():
        assert torch.equal(pair.member_state(1)["actor"][name], value), name
    for name, value in alone.member_state(0)["critic"].items():
        assert torch.equal(pair.member_state(1)["critic"][name], value), name


def test_members_gradient_diagnostics_are_their_single_runs(compose_config, tmp_path: Path):
    diagnose = ["trainer.diagnostics=true", "trainer.diagnostics_every=500", "trainer.log_every=500"]
    cfgs = [compose_config(*SHORT, *diagnose, *member) for member in MEMBERS[:2]]
    single = build_trainer(cfgs[1], tmp_path / "single")
    population = build_population(cfgs, [tmp_path / "a", tmp_path / "b"], [None, None])
    _train([single, population])
    alone, member = read_scalars(tmp_path / "single" / "tb"), read_scalars(tmp_path / "b" / "tb")
    tags = [tag for tag in alone if tag.startswith("estimator/")]
    assert tags and len(alone[tags[0]]) == 3  # at 500, 1000 and 1500 env steps
    for tag in tags:
        # the member's gradient is computed over all members' parameters (the others' are 0)
        for (step, value), (member_step, member_value) in zip(alone[tag], member[tag]):
            assert step == member_step and member_value == pytest.approx(value, rel=1e-9, abs=1e-12), tag


def test_a_member_with_a_non_finite_loss_skips_its_step_alone(make_agent):
    agent = make_agent(4, 2, GumbelSoftmaxSelector(hard=False))
    pair = make_agent(4, 2, GumbelSoftmaxSelector(hard=False), seeds=[0, 1])
    generator = torch.Generator().manual_seed(3)
    obs, next_obs = torch.randn(2, 16, 4, generator=generator), torch.randn(2, 16, 4, generator=generator)
    action = torch.randint(2, (2, 16, 1), generator=generator)
    reward = torch.randn(2, 16, generator=generator)
    reward[1, 5] = math.nan
    batch = one_step_batch(obs, action, reward, next_obs, torch.zeros(2, 16))
    alone = one_step_batch(obs[:1], action[:1], reward[:1], next_obs[:1], torch.zeros(1, 16))
    before = [p.detach().clone() for p in pair.critic.parameters()]
    temperature = torch.ones(2, 1, 1, 1)
    _, failures = pair.update(batch, temperature, MemberGenerators([0, 1]))
    _, alone_failures = agent.update(alone, temperature[:1], MemberGenerators([0]))
    assert alone_failures == {} and list(failures) == [1] and failures[1].startswith("critic loss nan")
    for after, previous, single in zip(pair.critic.parameters(), before, agent.critic.parameters()):
        rows = after.shape[0] // 2
        assert torch.equal(after[rows:], previous[rows:])  # member 1: as before the step
        assert torch.equal(after[:rows], single)  # member 0: as alone


def test_a_members_checkpoint_resumes_as_a_single_run(compose_config, tmp_path: Path):
    cfgs = [compose_config(*SHORT, *member) for member in MEMBERS[:2]]
    population = build_population(cfgs, [tmp_path / "a", tmp_path / "b"], [None, None])
    population.run()
    checkpoint = population.member_state(1)
    longer = compose_config(*SHORT, *MEMBERS[1], "trainer.total_steps=2250")
    resumed = build_trainer(longer, tmp_path / "b", checkpoint)
    assert resumed.step == 1500 and resumed.evaluations[0] == population.evaluations[1]
    resumed.run()
    assert resumed.evaluations[0][:2] == population.evaluations[1] and resumed.step >= 2250
    assert resumed.evaluations[0][-1][0] == resumed.step


def test_sigterm_checkpoints_every_member_and_resume_true_finishes_them_exactly(tmp_path: Path):
    budget = [
        "trainer.total_steps=6000",
        "trainer.learning_starts=200",
        "trainer.eval_every=1000",
        "trainer.eval_episodes=2",
        "trainer.checkpoint_every=500",
        "trainer.batch_size=32",
        "trainer.progress=false",
    ]
    sweep_args = ["seed=0,1", "schedule.start=0.5,2", *budget, "hydra/launcher=population"]
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    process = subprocess.Popen(
        [str(TRAIN_SCRIPT), "-m", *sweep_args, f"hydra.sweep.dir={interrupted}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(list(interrupted.glob("*/checkpoints/*.pt"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    runs = sorted(p for p in interrupted.iterdir() if p.is_dir())
    stopped = {list_checkpoints(run / "checkpoints")[-1].name for run in runs}
    assert len(runs) == 4 and len(stopped) == 1 and stopped != {"step_000000006000.pt"}  # all at one step

    resumed = subprocess.run(
        [str(TRAIN_SCRIPT), "-m", *sweep_args, f"hydra.sweep.dir={interrupted}", "resume=true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("resuming ") == 4
    subprocess.run(
        [str(TRAIN_SCRIPT), "-m", *sweep_args, f"hydra.sweep.dir={whole}"], cwd=tmp_path, check=True, timeout=300
    )
    # a member's run folder is a single run's: rlgumbel-evaluate reads it as one
    evaluation = tmp_path / "evaluation.json"
    assert evaluate_main([str(runs[1]), "--episodes", "2", "--out", str(evaluation)]) == 0
    assert json.loads(evaluation.read_text())["env_step"] == 6000
    for run in runs:
        assert read_events(run / "tb").status == COMPLETED
        finished, uninterrupted = (json.loads((d / run.name / SUMMARY_FILE).read_text()) for d in (interrupted, whole))
        for key in ("steps", "final_eval_return_greedy", "mean_eval_return_greedy", "first_solved_step"):
            assert finished[key] == uninterrupted[key], key


@pytest.mark.slow
def test_ten_seeds_learn_the_same_alone_and_as_a_population(compose_config, tmp_path: Path):
    # Steps to solve CartPole and the final evaluations over seeds 0-9: the same numbers, run by
    # run, whether each seed trains alone or all ten train as one population.
    budget = ["trainer.total_steps=25000", "trainer.progress=false"]
    cfgs = [compose_config(*budget, f"seed={seed}") for seed in range(10)]
    singles = [build_trainer(cfg, tmp_path / f"single{k}") for k, cfg in enumerate(cfgs)]
    population = build_population(cfgs, [tmp_path / f"member{k}" for k in range(10)], [None] * 10)
    alone = [trainer.run()[0] for trainer in singles]
    together = population.run()
    solved = [summary["first_solved_step"] for summary in alone]
    assert sum(step is not None for step in solved) >= 5  # the comparison is about learning runs
    for single, member in zip(alone, together):
        for key in ("first_solved_step", "final_eval_return_greedy", "mean_eval_return_greedy"):
            assert member[key] == single[key], key
