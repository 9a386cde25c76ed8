"""rlgumbel's Hydra launcher plugin: `hydra/launcher=population` (population_launcher.py)."""
