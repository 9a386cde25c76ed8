"""Shared fixtures: composing the shipped configs, running the real CLI, reading event files."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from rlgumbel.agents import ActorCritic
from rlgumbel.cli import train as train_cli
from rlgumbel.config import register_with_hydra
from rlgumbel.configs import CONFIG_DIR as PACKAGE_CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(PACKAGE_CONFIG_DIR)
TRAIN_SCRIPT = Path(sys.executable).with_name("rlgumbel-train")
REPORT_SCRIPT = Path(sys.executable).with_name("rlgumbel-report")

# A run small enough for a test: a few hundred env steps, two evaluation episodes.
TINY = [
    "trainer.total_steps=400",
    "trainer.learning_starts=100",
    "trainer.eval_every=200",
    "trainer.eval_episodes=2",
    "trainer.log_every=100",
    "trainer.checkpoint_every=200",
    "trainer.batch_size=32",
    "trainer.progress=false",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutation testing (`make mutation`), run the fastest tests first.

    mutmut stops a mutant's run at its first failing test and hands over the tests in no fixed
    order; ordering them by the durations of its clean run ends a killed mutant's run early.
    """
    stats = Path("mutmut-stats.json")  # mutmut runs the tests from its mutants/ folder
    if "MUTANT_UNDER_TEST" not in os.environ or not stats.is_file():
        return
    durations = json.loads(stats.read_text())["duration_by_test"]
    items.sort(key=lambda item: durations.get(item.nodeid, math.inf))


@pytest.fixture
def compose_config() -> Callable[..., DictConfig]:
    """`compose_config(*overrides)`: the shipped config tree composed with Hydra's compose API."""
    register_with_hydra()

    def make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))

    return make


@pytest.fixture
def make_agent(compose_config) -> Callable[..., ActorCritic]:
    """`make_agent(obs_shape, num_actions, selector, **overrides)`: an `ActorCritic` with the
    shipped agent config's values (the schema's defaults, rlgumbel/schema.py), `overrides` replacing them
    (`actor=` and `critic=` key by key), its networks initialised from seed 0 (`seeds=` for a population)."""
    defaults = OmegaConf.to_container(compose_config().agent, resolve=True)
    del defaults["_target_"]

    def make(obs_shape, num_actions: int, selector, **overrides) -> ActorCritic:
        values = copy.deepcopy(defaults)
        seeds = overrides.pop("seeds", [0])
        for key, value in overrides.items():
            if key in ("actor", "critic"):
                values[key].update(value)
            else:
                values[key] = value
        return ActorCritic(obs_shape, num_actions, selector, seeds=seeds, **values)

    return make


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """`run_cli(*args, cwd=...)`: the installed `rlgumbel-train` as a subprocess."""

    def run(*args: str, cwd: Path, script: Path = TRAIN_SCRIPT, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)

    return run


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path: Path):
    """`cli(*args) -> (exit code, stdout, stderr)`: `rlgumbel-train` run in this process."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["rlgumbel-train", *args])
        GlobalHydra.instance().clear()
        try:
            train_cli.main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a run's `tb/` folder: tag → [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
