"""Checkpoints: atomic save of a run's state, the last few kept, newest loadable one found."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    """Where the checkpoint of env step `step` lives."""
    return directory / f"step_{step:012d}.pt"


def checkpoint_step(path: Path) -> int:
    """The env step a checkpoint file was written at (`step_000000020000.pt` → 20000)."""
    return int(_NAME.match(path.name).group(1))


def list_checkpoints(directory: Path) -> list[Path]:
    """The checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _NAME.match(p.name)), key=checkpoint_step)


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write `state` atomically (temporary file, fsync, rename) and keep the newest `keep`.

    A crash at any point leaves either the old set of checkpoints or the old set plus a
    complete new one, never a truncated file under a checkpoint's name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory, step)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_latest_checkpoint(directory: Path) -> tuple[dict[str, Any], Path, list[str]]:
    """The newest checkpoint that loads, its path, and a note for each newer one that did not.

    Raises:
        FileNotFoundError: no checkpoint in `directory` loads.
    """
    skipped: list[str] = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return torch.load(path, map_location="cpu", weights_only=False), path, skipped
        except Exception as error:  # a truncated or corrupted file: fall back to an older one
            skipped.append(f"{path.name} is unreadable ({type(error).__name__}: {error}); using an older checkpoint")
    raise FileNotFoundError(f"no loadable checkpoint in {directory}")
