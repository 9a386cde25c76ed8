"""Reliability through the real CLI, in process: every bad input is one clear line, exits
non-zero and writes nothing; checkpoints are atomic; a corrupted checkpoint falls back to an
older one; a failing job does not stop a sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import TINY

from rlgumbel.checkpoint import list_checkpoints, load_latest_checkpoint, save_checkpoint

BAD_INPUT = [
    (["selector=softmax"], ["selector=softmax", "allowed", "gumbel_softmax"]),
    (["schedule=step"], ["schedule=step", "allowed", "exponential"]),
    (["env=pong"], ["env=pong", "allowed", "cartpole"]),
    (["env.id=NoSuchEnv-v0"], ["env.id", "NoSuchEnv-v0", "not a registered"]),
    (["env.id=Pendulum-v1"], ["env.id", "Pendulum-v1", "Discrete"]),
    (["schedule=constant", "schedule.start=0"], ["schedule", "temperatures must be > 0"]),
    (["schedule=constant", "schedule.start=-2"], ["schedule.start", "-2", ">= 0"]),
    (["schedule=constant", "schedule.start=warm"], ["schedule.start", "warm", "converted to Float"]),
    (["schedule=exponential", "schedule.start=0.5", "schedule.end=2"], ["schedule.end", "start", "decays"]),
    (["trainer.total_steps=0"], ["trainer.total_steps", "0", "> 0"]),
    (["trainer.batch_size=512", "trainer.buffer_size=100"], ["trainer.batch_size", "512", "trainer.buffer_size"]),
    (["resume=/no/such/run"], ["resume=/no/such/run", "no run there"]),
]


@pytest.mark.parametrize("overrides,words", BAD_INPUT, ids=[" ".join(o) for o, _ in BAD_INPUT])
def test_bad_input_is_one_clear_line_and_writes_nothing(overrides, words, cli, tmp_path: Path):
    code, _out, err = cli(*TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(word in lines[0] for word in words), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _train(cli, run_dir: Path, *extra: str) -> None:
    code, _, err = cli(*TINY, f"hydra.run.dir={run_dir}", *extra)
    assert code == 0, err


def test_resume_without_checkpoint_is_refused(cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    _train(cli, run_dir)
    for checkpoint in list_checkpoints(run_dir / "checkpoints"):
        checkpoint.unlink()
    code, _, err = cli(f"resume={run_dir}")
    assert code == 2 and "no checkpoint to continue from" in err


def test_resume_with_another_config_names_the_keys_that_differ(cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    _train(cli, run_dir)
    code, _, err = cli(f"resume={run_dir}", "agent.gamma=0.5", "trainer.batch_size=16")
    assert code == 2
    assert "another config" in err and "agent.gamma: 0.99 → 0.5" in err and "trainer.batch_size: 32 → 16" in err


def test_resume_may_extend_the_budget(cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    _train(cli, run_dir)
    code, out, err = cli(f"resume={run_dir}", "trainer.total_steps=600")
    assert code == 0, err
    assert "env steps: 600" in out and "from step_000000000400.pt" in err


def test_corrupted_checkpoint_falls_back_to_the_previous_one(cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    _train(cli, run_dir)
    newest = list_checkpoints(run_dir / "checkpoints")[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk
    code, _out, err = cli(f"resume={run_dir}")
    assert code == 0, err
    assert f"{newest.name} is unreadable" in err and "using an older checkpoint" in err


def test_resume_true_continues_its_own_folder_or_starts_fresh(cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    _train(cli, run_dir, "resume=true")  # nothing to continue: a fresh run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    code, out, err = cli(*TINY, f"hydra.run.dir={run_dir}", "resume=true", "trainer.total_steps=600")
    assert code == 0, err
    assert "resuming" in err and "env steps: 600" in out


def test_a_save_that_dies_before_the_rename_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    directory = tmp_path / "checkpoints"
    save_checkpoint(directory, 100, {"step": 100, "weights": torch.arange(5)})

    def die(*args, **kwargs):
        raise OSError("killed during the save")

    monkeypatch.setattr(os, "replace", die)
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(directory, 200, {"step": 200, "weights": torch.arange(6)})
    monkeypatch.undo()
    state, path, notes = load_latest_checkpoint(directory)
    assert state["step"] == 100 and torch.equal(state["weights"], torch.arange(5)) and notes == []
    assert [p.name for p in directory.iterdir()] == [path.name]  # no temporary file left behind


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000000000004.pt", "step_000000000005.pt"]


def test_a_failing_job_does_not_stop_the_sweep(cli, tmp_path: Path):
    sweep = tmp_path / "sweep"
    code, _out, _err = cli("-m", "schedule=constant", "schedule.start=0,1", *TINY, f"hydra.sweep.dir={sweep}")
    assert code != 0  # the sweep reports its failure at the end
    runs = {p.name: p for p in sweep.iterdir() if p.is_dir()}
    failed, finished = runs["gumbel_softmax_constant_T0.0_seed0_job0"], runs["gumbel_softmax_constant_T1.0_seed0_job1"]
    assert "temperatures must be > 0" in (failed / "error.txt").read_text()
    assert list_checkpoints(finished / "checkpoints") and not (finished / "error.txt").exists()

    from rlgumbel.report import COMPLETED, FAILED, load_run

    assert load_run(failed, sweep).status == FAILED and load_run(finished, sweep).status == COMPLETED
