"""The package is complete without its source tree: a wheel, installed into a fresh virtual
environment, trains from a folder that has nothing of the repository in it.

The dependencies (torch, gymnasium, hydra, ...) are not installed again: the fresh environment
sees this test environment's site-packages through a `.pth` file, which adds them as plain path
entries, so this environment's editable install of rlgumbel is not picked up. What is checked
is what the wheel itself carries: code, console scripts and the config tree.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

from conftest import REPO, TINY
from omegaconf import OmegaConf

UNSHIPPED = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "runs",
    "multirun",
    "outputs",
    "mutants",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)


def _run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_built_wheel_trains_from_an_unrelated_folder(tmp_path: Path):
    wheels, environment, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = tmp_path / "source"  # without build/ and *.egg-info left by earlier builds, which a wheel would reuse
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*UNSHIPPED))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, source, cwd=tmp_path)
    (wheel,) = wheels.glob("rlgumbel-*.whl")
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    (Path(purelib.stdout.strip()) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(python, "-m", "pip", "install", "--no-deps", "--quiet", wheel, cwd=tmp_path)

    where = _run(python, "-c", "import rlgumbel.configs as c; print(c.__file__)", cwd=elsewhere)
    assert Path(where.stdout.strip()).is_relative_to(environment), where.stdout
    run_dir = elsewhere / "run"
    done = _run(environment / "bin" / "rlgumbel-train", "env=acrobot", *TINY, f"hydra.run.dir={run_dir}", cwd=elsewhere)
    assert f"run: {run_dir}" in done.stdout
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").env.id == "Acrobot-v1"
    assert list((run_dir / "checkpoints").glob("*.pt"))


def _source_packages() -> set[str]:
    """Every folder of the shipped trees as the package it installs as: rlgumbel/ (but its caches),
    configs/ (as rlgumbel.configs) and hydra_plugins/."""
    trees = {
        "rlgumbel": REPO / "rlgumbel",
        "rlgumbel.configs": REPO / "configs",
        "hydra_plugins": REPO / "hydra_plugins",
    }
    packages = set()
    for name, root in trees.items():
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or "__pycache__" in folder.parts:
                continue
            packages.add(".".join([name, *folder.relative_to(root).parts]))
    return packages


def test_the_package_list_names_every_folder_of_the_source_trees():
    import tomllib

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert settings["package-dir"] == {"rlgumbel.configs": "configs"}
    assert set(settings["packages"]) == _source_packages()
    assert not (REPO / "rlgumbel" / "configs").exists(), "the config tree has one home: configs/"
