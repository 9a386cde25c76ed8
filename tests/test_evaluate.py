"""`rlgumbel-evaluate`: a run's checkpoint over fresh episodes, its table and JSON, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, read_scalars

from rlgumbel import layout
from rlgumbel.checkpoint import list_checkpoints
from rlgumbel.cli.evaluate import main as evaluate_main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny CartPole run with checkpoints at env steps 200 and 400 (two evaluation episodes)."""
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    command = [sys.executable, "-m", "rlgumbel.cli.train", *TINY, f"hydra.run.dir={run_dir}"]
    subprocess.run(command, check=True, capture_output=True, cwd=run_dir.parent)
    return run_dir


def evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = evaluate_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_greedy_evaluation_of_the_final_checkpoint_is_the_runs_last_evaluation(trained_run, capsys, tmp_path):
    # Same checkpoint, same reset seed and episode count as the trainer's evaluation at that step.
    out = tmp_path / "evaluation.json"
    code, stdout, _ = evaluate(capsys, trained_run, "--episodes", 2, "--out", out)
    assert code == 0
    result = json.loads(out.read_text())
    last_step, last_greedy = read_scalars(trained_run / layout.TB_DIR)[layout.EVAL_RETURN_GREEDY][-1]
    assert result["env_step"] == last_step == 400
    assert result["policies"]["greedy"]["mean"] == pytest.approx(last_greedy, abs=1e-4)
    assert len(result["policies"]["sampled"]["returns"]) == 2
    assert "| greedy |" in stdout and "| sampled |" in stdout


def test_default_output_is_json_in_the_run_folder_and_a_checkpoint_can_be_picked(trained_run, capsys):
    code, stdout, _ = evaluate(capsys, trained_run, "--checkpoint", 200, "--episodes", 3, "--temperature", 0.5)
    assert code == 0
    result = json.loads((trained_run / layout.EVALUATION_FILE).read_text())
    assert result["env_step"] == 200 and result["checkpoint"].endswith(
        list_checkpoints(trained_run / "checkpoints")[0].name
    )
    assert set(result["policies"]) == {"greedy", "sampled", "sampled T=0.5"}
    stats = result["policies"]["sampled T=0.5"]
    assert len(stats["returns"]) == len(stats["lengths"]) == 3
    assert stats["min"] <= stats["mean"] <= stats["max"]
    # CartPole pays 1 per step: each return is its episode's length
    assert stats["returns"] == [float(n) for n in stats["lengths"]]
    assert "sampled T=0.5" in stdout


def test_a_near_zero_temperature_samples_the_greedy_actions(trained_run, capsys, tmp_path):
    # softmax(logits / 1e-6) puts all mass on the argmax unless two logits are within ~1e-5.
    out = tmp_path / "e.json"
    assert evaluate(capsys, trained_run, "--episodes", 4, "--temperature", 1e-6, "--out", out)[0] == 0
    policies = json.loads(out.read_text())["policies"]
    assert policies["sampled T=1e-06"]["returns"] == policies["greedy"]["returns"]


@pytest.fixture
def broken_run(trained_run, tmp_path) -> Path:
    run_dir = tmp_path / "copy"
    shutil.copytree(trained_run, run_dir)
    (run_dir / layout.EVALUATION_FILE).unlink(missing_ok=True)
    return run_dir


def _corrupt_all(run_dir: Path) -> None:
    for path in list_checkpoints(run_dir / "checkpoints"):
        path.write_bytes(b"not a checkpoint")


def _remove_checkpoints(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "checkpoints")


@pytest.mark.parametrize(
    "damage,args,words",
    [
        (None, ["--env-id", "Acrobot-v1"], ["--env-id Acrobot-v1", "differ", "CartPole-v1"]),
        (None, ["--env-id", "NoSuchEnv-v0"], ["NoSuchEnv-v0", "not a registered"]),
        (None, ["--checkpoint", "12345"], ["--checkpoint 12345", "no such checkpoint", "200, 400"]),
        (_remove_checkpoints, [], ["no loadable checkpoint"]),
        (_corrupt_all, [], ["no loadable checkpoint"]),
        (_corrupt_all, ["--checkpoint", "400"], ["unreadable"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(broken_run, capsys, damage, args, words):
    if damage is not None:
        damage(broken_run)
    code, stdout, stderr = evaluate(capsys, broken_run, *args)
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not (broken_run / layout.EVALUATION_FILE).exists()


def test_no_run_there(capsys, tmp_path):
    code, _, stderr = evaluate(capsys, tmp_path / "nowhere")
    assert (
        code == 2
        and stderr.strip()
        == f"error: {tmp_path / 'nowhere'}: no run there ({tmp_path / 'nowhere' / layout.CONFIG_FILE} does not exist)"
    )


@pytest.mark.parametrize("args", [["--episodes", "0"], ["--temperature", "0"]])
def test_bad_flags_are_refused_by_the_parser(capsys, tmp_path, args):
    with pytest.raises(SystemExit) as exit_:
        evaluate_main([str(tmp_path), *args])
    assert exit_.value.code == 2
