"""Multirun output a person reads, and hyperparameter search with `hydra/sweeper=optuna`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY
from omegaconf import OmegaConf

from rlgumbel import layout
from rlgumbel.cli.sweep_progress import sweep_size


def _summaries(sweep: Path) -> dict[str, dict]:
    return {
        run.name: json.loads((run / layout.SUMMARY_FILE).read_text())
        for run in sweep.iterdir()
        if (run / layout.SUMMARY_FILE).is_file()
    }


@pytest.mark.parametrize(
    "params,task,size",
    [
        ({}, ["seed=0,1,2"], 3),
        ({}, ["seed=0,1", "selector=argmax,sample,expected"], 6),
        ({"seed": "range(5)", "schedule.start": "0.5,1,2"}, [], 15),
        ({"seed": "range(5)"}, ["seed=0,1"], 2),  # the command line replaces the preset's sweep
        ({"seed": "range(5)"}, ["seed=3"], 1),
        ({}, ["agent.actor.lr=tag(log, interval(1e-5, 1e-3))"], None),
    ],
)
def test_the_sweep_size_counts_what_the_basic_sweeper_will_launch(params, task, size):
    config = OmegaConf.create({"hydra": {"sweeper": {"params": params}, "overrides": {"task": task}}})
    assert sweep_size(config) == size


def test_a_search_sweeper_counts_its_trials():
    config = OmegaConf.create({"hydra": {"sweeper": {"n_trials": 7, "params": {}}, "overrides": {"task": []}}})
    assert sweep_size(config) == 7


def test_a_multirun_prints_each_start_and_a_line_per_run(cli, tmp_path: Path):
    sweep = tmp_path / "sweep"
    code, _, err = cli("-m", "seed=0,1", "schedule=constant", "schedule.start=1,0", *TINY, f"hydra.sweep.dir={sweep}")
    assert code != 0  # the runs at temperature 0 fail, the sweep says so at the end
    starts = [line for line in err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] + "]" for line in starts] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert "seed=1 schedule=constant schedule.start=0" in starts[3]
    summary = err[err.index(f"sweep of 4 runs in {sweep}:") :].splitlines()
    assert summary[-1] == f"compare them: rlgumbel-report {sweep}"
    finished = _summaries(sweep)
    for line in summary[1:-1]:
        name, _, rest = line.strip().partition(": ")
        if name in finished:
            assert f"final greedy {finished[name]['final_eval_return_greedy']:.1f}" in rest
        else:
            assert rest.startswith("failed: error: schedule: temperatures must be > 0")
    assert len(finished) == 2 and len(summary) == 6


def test_an_optuna_study_maximises_what_the_runs_return(cli, tmp_path: Path):
    sweep = tmp_path / "study"
    code, _, err = cli(
        "-m", "+experiment=tune_acrobot", "env=cartpole", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
        *TINY, f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert code == 0, err
    summaries = _summaries(sweep)
    assert len(summaries) == 3
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(s["mean_eval_return_greedy"] for s in summaries.values())
    assert results["best_value"] == pytest.approx(best)
    chosen = {f"{key}={value}" for key, value in results["best_params"].items()}
    best_runs = [name for name, s in summaries.items() if s["mean_eval_return_greedy"] == pytest.approx(best)]
    assert any(chosen <= set(yaml.safe_load((sweep / r / ".hydra" / "overrides.yaml").read_text())) for r in best_runs)
    # every trial sampled its own values from the preset's search space
    learning_rates = {
        json.dumps(yaml.safe_load((sweep / r / ".hydra" / "config.yaml").read_text())["agent"]["actor"]["lr"])
        for r in summaries
    }
    assert len(learning_rates) == 3


STUDY_WITH_A_BAD_VALUE = """\
# @package _global_
defaults:
  - override /schedule: constant
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/sampler: random
hydra:
  sweeper:
    direction: maximize
    n_trials: 4
    n_jobs: 1
    max_failure_rate: 1.0
    sampler:
      seed: 1
    params:
      schedule.start: choice(0.0, 1.0)
"""


def test_a_failed_trial_is_a_failure_of_the_trial_not_of_the_study(cli, tmp_path: Path):
    config_dir = tmp_path / "my_configs"
    (config_dir / "experiment").mkdir(parents=True)
    (config_dir / "experiment" / "bad_study.yaml").write_text(STUDY_WITH_A_BAD_VALUE)
    sweep = tmp_path / "study"
    code, _, err = cli(
        "-m", "--config-dir", str(config_dir), "+experiment=bad_study", *TINY, f"hydra.sweep.dir={sweep}"
    )
    assert code == 0, err
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    failed = [r for r in runs if (r / layout.FAILURE_FILE).is_file()]
    finished = _summaries(sweep)
    assert len(runs) == 4 and failed and len(failed) + len(finished) == 4  # (seeded: both values drawn)
    assert all("T0.0" in r.name for r in failed) and all("T1.0" in name for name in finished)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_params"] == {"schedule.start": 1.0}
    assert results["best_value"] == pytest.approx(max(s["mean_eval_return_greedy"] for s in finished.values()))


def test_a_study_in_a_database_is_extended_by_running_the_command_again(cli, tmp_path: Path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = ["-m", "+experiment=tune_acrobot", "env=cartpole", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"]
    for attempt in range(2):
        # a seeded sampler would propose the same first points again: each command has its own seed
        seed = f"hydra.sweeper.sampler.seed={attempt}"
        sweep = f"hydra.sweep.dir={tmp_path / str(attempt)}"
        code, _, err = cli(*command, seed, f"hydra.sweeper.storage={storage}", *TINY, sweep)
        assert code == 0, err
    trials = optuna.load_study(study_name="tune_acrobot", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    # the second command's trials are new points
    assert len({t.params["agent.actor.lr"] for t in trials}) == 4
