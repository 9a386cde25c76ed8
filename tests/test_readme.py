"""The README's examples are real: every command line composes and builds with the shipped
configs, the error it shows is the one printed, and the make targets exist."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, TINY, read_scalars
from omegaconf import OmegaConf

from rlgumbel.cli.preflight import check_command_line
from rlgumbel.cli.train import CONFIG_DIR
from rlgumbel.config import build_trainer

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def _commands(program: str) -> list[list[str]]:
    lines = [line for lang, body in BLOCKS if lang == "bash" for line in body.splitlines()]
    return [shlex.split(line.split("#")[0])[1:] for line in lines if line.split(" ")[0].endswith(program)]


def _first_of_each_sweep(arguments: list[str]) -> list[str]:
    """A multirun's arguments with every comma list cut to its first value (one job of it)."""
    return [
        a.split("=", 1)[0] + "=" + a.split("=", 1)[1].split(",")[0] if "=" in a else a for a in arguments if a != "-m"
    ]


# Commands with a folder of the user's own (--config-dir) are run by the test of their block.
TRAIN_COMMANDS = [
    c for c in _commands("rlgumbel-train") if not any(a.startswith(("resume=", "--config-dir")) for a in c)
]


def test_readme_shows_the_two_commands():
    assert "make train" in README and "make test" in README


@pytest.mark.parametrize("arguments", TRAIN_COMMANDS, ids=[" ".join(c) for c in TRAIN_COMMANDS])
def test_every_train_command_composes_and_builds(arguments, compose_config, tmp_path: Path):
    overrides = [a for a in _first_of_each_sweep(arguments) if not a.startswith("hydra")]
    trainer = build_trainer(compose_config(*overrides, *TINY), tmp_path)
    trainer.members[0].logger.close(None)


def test_resume_commands_match_what_an_interrupted_run_prints():
    resume_lines = [c for c in _commands("rlgumbel-train") if any(a.startswith("resume=") for a in c)]
    assert resume_lines
    assert all(c[0].startswith("resume=runs/") for c in resume_lines)


@pytest.mark.parametrize("arguments", TRAIN_COMMANDS, ids=[" ".join(c) for c in TRAIN_COMMANDS])
def test_every_train_command_passes_the_preflight_with_its_hydra_options(arguments):
    assert check_command_line(arguments, CONFIG_DIR, "train") is None


ERROR_EXAMPLES = [
    body.strip().splitlines() for lang, body in BLOCKS if lang == "text" and body.startswith("$ rlgumbel-train")
]


@pytest.mark.parametrize("command,expected", ERROR_EXAMPLES, ids=[c for c, _ in ERROR_EXAMPLES])
def test_the_error_examples_are_what_the_cli_prints(command, expected, cli, tmp_path: Path):
    code, _, err = cli(
        *shlex.split(command)[2:], f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"
    )
    assert code == 2 and err.strip() == expected


@pytest.mark.parametrize("target", ["train", "test", "test-slow", "lint", "format", "bench", "mutation", "setup"])
def test_make_targets_exist(target):
    result = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_report_commands_run_on_a_sweep(cli, tmp_path: Path):
    from rlgumbel.cli.report import main as report_main

    sweep = tmp_path / "sweep"
    code, _, err = cli("-m", "selector=argmax,gumbel_softmax", *TINY, f"hydra.sweep.dir={sweep}")
    assert code == 0, err
    commands = _commands("rlgumbel-report")
    assert commands
    for arguments in commands:
        arguments = [str(sweep) if a.startswith("runs/") else a for a in arguments]
        assert report_main([*arguments, "--out", str(tmp_path / "report")]) == 0
        assert (tmp_path / "report" / "report.md").is_file()


def test_the_own_config_example_trains_with_the_users_preset(cli, tmp_path: Path):
    """The README's --config-dir block, run as written (the files it creates, then the command)
    with a tiny budget: the user's preset extends the shipped one."""
    block = next(body for lang, body in BLOCKS if lang == "bash" and "--config-dir" in body)
    setup, _, command = block.rpartition("\nrlgumbel-train ")
    subprocess.run(["bash", "-c", setup], cwd=tmp_path, check=True)
    code, _, err = cli(*shlex.split(command), *TINY, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err
    saved = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    assert saved.env.id == "CartPole-v1" and saved.env.solved_return == 475
    assert "cartpole_long" in (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text()


def test_evaluate_commands_run_on_a_trained_run(cli, capsys, tmp_path: Path):
    from rlgumbel.cli.evaluate import main as evaluate_main

    run_dir = tmp_path / "run"
    code, _, err = cli(*TINY, "trainer.checkpoint_every=100", f"hydra.run.dir={run_dir}")
    assert code == 0, err
    commands = _commands("rlgumbel-evaluate")
    assert len(commands) == 2
    for arguments in commands:
        arguments = [str(run_dir) if a.startswith("runs/") else a for a in arguments]
        # the README's checkpoint is at env step 20000; this tiny run's newest is at 400
        arguments = ["400" if a == "20000" else a for a in arguments]
        assert evaluate_main(arguments) == 0
        assert "| greedy |" in capsys.readouterr().out


def test_the_own_env_example_registers_and_trains_its_team(run_cli, monkeypatch, tmp_path: Path):
    """The README's block of a multi-agent env of one's own: the module it writes, then the
    command as written (PYTHONPATH=. for the module) with a tiny budget."""
    block = next(body for lang, body in BLOCKS if lang == "bash" and "my_team.py" in body)
    setup, _, command = block.rpartition("\nPYTHONPATH=. rlgumbel-train ")
    subprocess.run(["bash", "-c", setup], cwd=tmp_path, check=True)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    run_dir = tmp_path / "run"
    done = run_cli(*shlex.split(command), *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert saved.env.id == "my_team:MySpread-v0"
    scalars = read_scalars(run_dir / "tb")
    assert "charts/episodic_return_agent1" in scalars and "charts/episodic_return_agent2" not in scalars  # N=2
