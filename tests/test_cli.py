"""`rlgumbel-train` end to end: every selector through the real CLI, the TensorBoard contract,
determinism, clear errors for bad input, and exact resume after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, TRAIN_SCRIPT, read_scalars
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlgumbel.checkpoint import list_checkpoints

EXPECTED_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/eval_return_greedy",
    "charts/eval_return_sampled",
    "losses/critic",
    "losses/actor",
    "policy/temperature",
    "policy/epsilon",
    "policy/entropy",
    "policy/grad_norm",
    "perf/steps_per_second",
    "perf/wall_seconds",
}


@pytest.mark.parametrize("selector", ["argmax", "sample", "gumbel_softmax"])
def test_each_selector_trains_and_writes_the_logging_contract(selector, run_cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_cli(f"selector={selector}", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"run: {run_dir}"
    assert (run_dir / ".hydra" / "config.yaml").is_file() and list_checkpoints(run_dir / "checkpoints")
    # one event file, holding the scalars, the config text and the HParams session
    events = list((run_dir / "tb").iterdir())
    assert len(events) == 1 and events[0].name.startswith("events.out.tfevents")
    scalars = read_scalars(run_dir / "tb")
    assert set(scalars) >= EXPECTED_TAGS
    assert [step for step, _ in scalars["charts/eval_return_greedy"]] == [200, 400]
    accumulator = EventAccumulator(str(run_dir / "tb"))
    accumulator.Reload()
    hparams = accumulator.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams)
    assert "config/text_summary" in accumulator.Tags()["tensors"]


def test_same_seed_same_returns_other_seed_differs(run_cli, tmp_path: Path):
    def returns(seed: int, name: str) -> list[tuple[int, float]]:
        run_dir = tmp_path / name
        result = run_cli(f"seed={seed}", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        scalars = read_scalars(run_dir / "tb")
        return scalars["charts/episodic_return"] + scalars["losses/critic"]

    first, again, other = returns(0, "a"), returns(0, "b"), returns(1, "c")
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["schedule=constant", "schedule.start=0"], ["schedule", "temperatures must be > 0"]),
        (["env.id=Pendulum-v1"], ["env.id", "Discrete"]),
        (["trainer.batch_size=64", "trainer.buffer_size=10"], ["trainer.batch_size", "trainer.buffer_size"]),
        (["+device=cuda"], ["device is not a key of the config"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run_folder(overrides, words, run_cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and all(w in lines[0] for w in words), result.stderr
    assert not run_dir.exists()


def test_unknown_group_option_names_the_allowed_ones(run_cli, tmp_path: Path):
    result = run_cli("selector=softargmax", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: selector=softargmax is not an option of selector; allowed: argmax, "
        "expected, gapped_straight_through, gumbel_rao, gumbel_softmax, reinmax, sample, straight_through"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "arguments,expected",
    [
        (
            ["+experiment=nosuch"],
            "error: experiment=nosuch is not an option of experiment; allowed: annealing, "
            "compare_selectors, temperature_sweep, tune_acrobot",
        ),
        (
            ["hydra/launcher=nosuch"],
            "error: hydra/launcher=nosuch is not an option of hydra/launcher; allowed: "
            "basic, joblib, population, slurm, submitit_local, submitit_slurm",
        ),
        (
            ["hydra/sweeper=nosuch"],
            "error: hydra/sweeper=nosuch is not an option of hydra/sweeper; allowed: basic, optuna",
        ),
        (
            ["trainer.nosuch=1"],
            "error: trainer.nosuch is not a key of trainer; its keys: "
            "['total_steps', 'learning_starts', 'update_every', 'updates_per_round', 'batch_size', 'buffer_size', "
            "'eval_every', 'eval_episodes', 'log_every', 'checkpoint_every', 'keep_checkpoints', 'progress', "
            "'strict', 'video_every', 'diagnostics', 'diagnostics_every', 'diagnostics_samples']",
        ),
        (
            ["device=cuda"],
            "error: device is not a key of the config; its keys: ['experiment_name', 'seed', 'num_threads', "
            "'resume', 'trainer', 'env', 'agent', 'selector', 'schedule']",
        ),
        (
            ["-m", "seed=0,1", "selector=argmax,softargmax"],
            "error: selector=softargmax is not an option of selector; "
            "allowed: argmax, expected, gapped_straight_through, gumbel_rao, gumbel_softmax, reinmax, sample, "
            "straight_through",
        ),
    ],
)
def test_bad_options_of_hydra_itself_are_one_line_and_exit_2(arguments, expected, run_cli, tmp_path: Path):
    """Options Hydra would report in many lines (and a sweep with one bad value) fail before any
    job starts: one line, exit 2, nothing written."""
    result = run_cli(
        *arguments, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path
    )
    assert (result.returncode, result.stderr.strip()) == (2, expected), result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def _final_state(run_dir: Path) -> dict:
    return torch.load(list_checkpoints(run_dir / "checkpoints")[-1], weights_only=False)


def test_sigterm_then_resume_equals_an_uninterrupted_run(run_cli, tmp_path: Path):
    budget = [
        "trainer.total_steps=3000",
        "trainer.learning_starts=200",
        "trainer.eval_every=500",
        "trainer.eval_episodes=2",
        "trainer.log_every=250",
        "trainer.checkpoint_every=250",
        "trainer.batch_size=32",
        "trainer.progress=false",
    ]
    straight = tmp_path / "straight"
    assert run_cli(*budget, f"hydra.run.dir={straight}", cwd=tmp_path).returncode == 0

    stopped = tmp_path / "stopped"
    process = subprocess.Popen(
        [str(TRAIN_SCRIPT), *budget, f"hydra.run.dir={stopped}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list_checkpoints(stopped / "checkpoints") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert f"rlgumbel-train resume={stopped}" in stderr
    interrupted_at = _final_state(stopped)["step"]
    assert 0 < interrupted_at < 3000

    resumed = run_cli(f"resume={stopped}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _final_state(straight), _final_state(stopped)
    assert a["step"] == b["step"] == 3000
    assert a["evaluations"] == b["evaluations"]
    for name, tensor in a["agent"]["actor"].items():
        assert torch.equal(tensor, b["agent"]["actor"][name]), name
    # the resumed run continued the same event file's curves, without a gap or a repeat
    steps = [step for step, _ in read_scalars(stopped / "tb")["charts/eval_return_greedy"]]
    assert steps == sorted(set(steps)) == list(range(500, 3001, 500))


def test_a_closed_stdout_does_not_fail_a_finished_run(tmp_path: Path):
    """The summary is printed after training; if nobody reads stdout any more (the terminal or
    the parent that piped it is gone), the run still ends as completed."""
    run_dir = tmp_path / "run"
    reader, writer = os.pipe()
    os.close(reader)  # every write to `writer` now fails with EPIPE
    try:
        code = subprocess.run(
            [str(TRAIN_SCRIPT), *TINY, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(writer)
    assert code.returncode == 0, code.stderr
    assert not (run_dir / "error.txt").exists() and list_checkpoints(run_dir / "checkpoints")
