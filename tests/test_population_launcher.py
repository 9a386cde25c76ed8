"""`hydra/launcher=population`: which jobs share a process (rlgumbel/population.py), and real
multiruns through the launcher plugin (hydra_plugins/rlgumbel_population_launcher/) with a fake
`train_population` in place of training, set as the attribute of rlgumbel.cli.train that the
launcher looks up when a batch launches."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, REPO
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

import hydra_plugins.rlgumbel_population_launcher.population_launcher as launcher_module
from rlgumbel.checkpoint import checkpoint_path
from rlgumbel.cli import train as train_cli
from rlgumbel.cli.train import RunFailed
from rlgumbel.config import register_with_hydra
from rlgumbel.population import MemberOutcome, group_jobs, group_key, resume_step, split_evenly

POPULATION = "hydra/launcher=population"


# --------------------------------------------------------------------------- grouping


@pytest.fixture
def plain(compose_config) -> Callable[..., dict]:
    """`plain(*overrides)`: the shipped config composed and resolved into plain containers."""
    return lambda *overrides: OmegaConf.to_container(compose_config(*overrides), resolve=True)


def test_jobs_that_differ_only_in_member_keys_form_one_population(plain):
    configs = [
        plain(),
        plain("seed=3"),
        plain("schedule.start=0.5"),
        plain("schedule=cosine", "schedule.end=0.2"),
        plain("agent.actor.lr=3e-4", "agent.critic.lr=1e-3", "agent.gamma=0.98", "agent.max_grad_norm=1"),
        plain("experiment_name=other", "num_threads=2", "trainer.progress=false"),
    ]
    assert group_jobs(configs, [None] * len(configs), max_members=16) == [[0, 1, 2, 3, 4, 5]]


@pytest.mark.parametrize(
    "overrides",
    [
        ["env=acrobot"],
        ["agent.actor.hidden_sizes=[32,32]"],
        ["trainer.batch_size=64"],
        ["selector=argmax"],
        ["selector.hard=true"],
        ["trainer.total_steps=1000"],
    ],
)
def test_a_job_that_computes_something_else_trains_apart(overrides, plain):
    configs = [plain("seed=0"), plain("seed=1", *overrides), plain("seed=2")]
    assert group_jobs(configs, [None] * 3, max_members=16) == [[0, 2], [1]]


def test_tuned_and_fixed_alpha_train_apart_tuned_targets_together(plain):
    tuned = ["agent.entropy_coef=0.1", "agent.target_entropy_fraction=0.3"]
    configs = [
        plain(),
        plain(*tuned),
        plain("agent.entropy_coef=0.1", "agent.target_entropy_fraction=0.5", "agent.entropy_lr=1e-3"),
        plain(*tuned, "agent.target_entropy_end_fraction=0.1"),
        plain(*tuned, "agent.target_entropy_end_fraction=0.05", "agent.target_entropy_decay_steps=[0,5000]"),
        plain("agent.entropy_coef=0.05"),
    ]
    assert group_jobs(configs, [None] * len(configs), max_members=16) == [[0, 5], [1, 2], [3, 4]]


def test_a_large_group_is_split_evenly_in_job_order(plain):
    assert [len(chunk) for chunk in split_evenly(list(range(40)), 16)] == [14, 13, 13]
    assert split_evenly(list(range(5)), 3) == [[0, 1, 2], [3, 4]]
    assert split_evenly(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert split_evenly(list(range(4)), 4) == [[0, 1, 2, 3]]
    cartpole, acrobot = plain(), plain("env=acrobot")
    configs = [cartpole, acrobot] * 40  # interleaved: the groups keep the jobs' order
    groups = group_jobs(configs, [None] * 80, max_members=16)
    assert [len(group) for group in groups] == [14, 13, 13, 14, 13, 13]
    assert [index for group in groups[:3] for index in group] == list(range(0, 80, 2))
    assert [index for group in groups[3:] for index in group] == list(range(1, 80, 2))


def test_runs_resumed_from_different_steps_train_apart(plain, compose_config, tmp_path: Path):
    for name, step in (("a", 200), ("b", 200), ("c", 400)):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        for older in range(0, step + 1, 200):
            checkpoint_path(tmp_path / name / "checkpoints", older).touch()
    (tmp_path / "fresh").mkdir()
    resumed = compose_config("resume=true")
    steps = [resume_step(resumed, tmp_path / name) for name in ("a", "b", "c", "fresh")]
    assert steps == [200, 200, 400, None]
    assert resume_step(compose_config(), tmp_path / "a") is None  # not resuming: a fresh run
    assert resume_step(compose_config(f"resume={tmp_path / 'c'}"), tmp_path / "fresh") == 400
    config = plain("resume=true")
    assert group_jobs([config] * 4, steps, max_members=16) == [[0, 1], [2], [3]]


def test_a_job_resuming_another_folder_is_keyed_by_that_folder(plain, tmp_path: Path):
    first, second = plain(f"resume={tmp_path / 'a'}"), plain(f"resume={tmp_path / 'b'}")
    assert group_key(first, None) != group_key(second, None)
    assert group_key(first, None) == group_key(plain(f"resume={tmp_path / 'a'}"), None)
    assert group_key(first, None) != group_key(plain(f"resume={tmp_path / 'a'}", "seed=1"), None)


# --------------------------------------------------------------------------- the plugin


def test_the_launcher_config_and_a_light_plugin_module():
    register_with_hydra()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[POPULATION, "hydra.launcher.n_jobs=2"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher)
    assert launcher == {"_target_": f"{launcher_module.__name__}.PopulationLauncher", "n_jobs": 2, "max_members": 16}
    assert not (REPO / "hydra_plugins" / "__init__.py").exists()  # a namespace package, as Hydra's scan needs
    # Hydra imports every plugin module at start-up, so this one must not bring torch in
    probe = "import sys, hydra_plugins.rlgumbel_population_launcher.population_launcher; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_the_wheel_ships_the_plugin():
    tomllib = pytest.importorskip("tomllib")

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {"hydra_plugins", "hydra_plugins.rlgumbel_population_launcher"} <= set(packages)


# --------------------------------------------------------------------------- multiruns


@dataclass
class Sweep:
    """What a multirun through `hydra/launcher=population` did: the exit code and stderr, each
    `train_population` call's arguments, and each `launch` call's JobReturns."""

    code: int
    err: str
    calls: list[tuple[list[DictConfig], list[Path], list[list[str]]]] = field(default_factory=list)
    batches: list[list[JobReturn]] = field(default_factory=list)

    @property
    def returns(self) -> list[JobReturn]:
        return [job_return for batch in self.batches for job_return in batch]


def seed_or_failure(cfgs: list[DictConfig], run_dirs: list[Path], overrides: list[list[str]]) -> list[MemberOutcome]:
    """A stand-in for train_population: each member's seed as its objective; seed 1 fails."""
    return [
        MemberOutcome(error="error: seed 1 diverged") if cfg.seed == 1 else MemberOutcome(float(cfg.seed))
        for cfg in cfgs
    ]


def process_id(cfgs: list[DictConfig], run_dirs: list[Path], overrides: list[list[str]]) -> list[MemberOutcome]:
    """A stand-in for train_population: the id of the process it trained in, for every member."""
    return [MemberOutcome(float(os.getpid())) for _ in cfgs]


@pytest.fixture
def sweep(cli, monkeypatch, tmp_path: Path) -> Callable[..., Sweep]:
    """`sweep(*overrides, trainer=seed_or_failure)`: `rlgumbel-train -m *overrides
    hydra/launcher=population` in this process, each sweep into a new folder of tmp_path."""
    Plugins.instance()  # Hydra's first plugin scan executes the plugin module again: patch the class it registered
    launch = launcher_module.PopulationLauncher.launch
    sweep_dirs = (tmp_path / f"sweep{number}" for number in itertools.count())

    def run(*overrides: str, trainer=seed_or_failure) -> Sweep:
        record = Sweep(code=-1, err="")

        def recording_trainer(cfgs, run_dirs, overrides):
            record.calls.append((cfgs, run_dirs, overrides))
            return trainer(cfgs, run_dirs, overrides)

        def recording_launch(self, job_overrides, initial_job_idx):
            record.batches.append(list(launch(self, job_overrides, initial_job_idx)))
            return record.batches[-1]

        monkeypatch.setattr(train_cli, "train_population", recording_trainer, raising=False)
        monkeypatch.setattr(launcher_module.PopulationLauncher, "launch", recording_launch)
        record.code, _, record.err = cli("-m", *overrides, POPULATION, f"hydra.sweep.dir={next(sweep_dirs)}")
        return record

    return run


def test_a_sweep_trains_as_one_population_and_returns_each_members_value(sweep):
    done = sweep("schedule.start=0.5,1", "seed=0,2")
    assert done.code == 0, done.err
    [(cfgs, run_dirs, overrides)] = done.calls
    members = [(cfg.schedule.start, cfg.seed) for cfg in cfgs]
    assert members == [(0.5, 0), (0.5, 2), (1.0, 0), (1.0, 2)]
    assert overrides == [[f"schedule.start={start:g}", f"seed={seed}"] for start, seed in members]
    for number, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        assert run_dir.name.endswith(f"_seed{cfg.seed}_job{number}")
        assert OmegaConf.load(run_dir / ".hydra" / "config.yaml") == cfg
    assert [(r.status, r.return_value, list(r.overrides)) for r in done.returns] == [
        (JobStatus.COMPLETED, float(seed), ovr) for (_, seed), ovr in zip(members, overrides)
    ]
    assert [r.working_dir for r in done.returns] == [os.getcwd()] * 4  # hydra.job.chdir is false
    assert all(r.cfg == cfg and r.hydra_cfg.hydra.job.num == n for n, (r, cfg) in enumerate(zip(done.returns, cfgs)))
    assert [line for line in done.err.splitlines() if line.startswith("[")] == [
        f"[{number}/4] {' '.join(ovr)}" for number, ovr in enumerate(overrides, start=1)
    ]


def test_a_failed_member_fails_its_job_and_the_others_complete(sweep):
    done = sweep("seed=0,1,2")
    assert done.code == 1 and "seed 1 diverged" in done.err  # the sweeper raises the failure after the batch
    assert len(done.calls) == 1
    statuses = [r.status for r in done.returns]
    assert statuses == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert isinstance(done.returns[1]._return_value, RunFailed)
    assert [done.returns[i].return_value for i in (0, 2)] == [0.0, 2.0]


def test_a_crash_of_the_trainer_fails_every_member_with_its_traceback(sweep):
    def crash(cfgs, run_dirs, overrides):
        raise KeyError("no such thing")

    done = sweep("seed=0,2", trainer=crash)
    assert done.code == 1
    assert all(r.status == JobStatus.FAILED and isinstance(r._return_value, KeyError) for r in done.returns)
    [(_, run_dirs, _)] = done.calls
    assert all("KeyError: 'no such thing'" in (run_dir / "error.txt").read_text() for run_dir in run_dirs)


def test_max_members_splits_a_population_and_another_env_trains_apart(sweep):
    done = sweep("seed=0,2,3,4", "hydra.launcher.max_members=2")
    assert done.code == 0, done.err
    assert [[cfg.seed for cfg in cfgs] for cfgs, _, _ in done.calls] == [[0, 2], [3, 4]]
    done = sweep("env=cartpole,acrobot", "seed=0,2")
    assert done.code == 0, done.err
    assert [[(cfg.env.id, cfg.seed) for cfg in cfgs] for cfgs, _, _ in done.calls] == [
        [("CartPole-v1", 0), ("CartPole-v1", 2)],
        [("Acrobot-v1", 0), ("Acrobot-v1", 2)],
    ]
    assert [r.return_value for r in done.returns] == [0.0, 2.0, 0.0, 2.0]


def test_batches_of_a_sweeper_are_numbered_on(sweep):
    done = sweep("seed=0,2,3", "hydra.sweeper.max_batch_size=2")
    assert done.code == 0, done.err
    assert [len(batch) for batch in done.batches] == [2, 1]
    assert [r.hydra_cfg.hydra.job.num for r in done.returns] == [0, 1, 2]
    assert [[run_dir.name[-5:] for run_dir in run_dirs] for _, run_dirs, _ in done.calls] == [
        ["_job0", "_job1"],
        ["_job2"],
    ]


@pytest.fixture
def stop_workers():
    """Ends the worker processes that joblib keeps for reuse, when the test ends."""
    yield
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def test_populations_train_in_worker_processes_with_n_jobs(sweep, stop_workers):
    done = sweep("env=cartpole,acrobot", "seed=0,2", "hydra.launcher.n_jobs=2", trainer=process_id)
    assert done.code == 0, done.err
    pids = [r.return_value for r in done.returns]
    assert pids[0] == pids[1] and pids[2] == pids[3]  # a population shares its process
    assert pids[0] != pids[2] and os.getpid() not in pids
