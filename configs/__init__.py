"""The Hydra config tree of `rlgumbel-train`: the repository's top-level configs/ folder, installed as
the package `rlgumbel.configs` (pyproject.toml maps it), so an installed rlgumbel finds it from any
folder and an editable install reads the files in place."""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parent)
