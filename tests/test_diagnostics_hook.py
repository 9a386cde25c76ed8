"""Gradient diagnostics inside training: logged under estimator/, and training is identical
with them on or off (they draw from a generator of their own)."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, read_scalars


def test_diagnostics_are_logged_and_leave_training_unchanged(cli, tmp_path: Path):
    runs = {}
    for flag in ("false", "true"):
        run_dir = tmp_path / flag
        code, _, err = cli(
            *TINY,
            f"trainer.diagnostics={flag}",
            "trainer.diagnostics_every=100",
            "trainer.diagnostics_samples=4",
            f"hydra.run.dir={run_dir}",
        )
        assert code == 0, err
        runs[flag] = read_scalars(run_dir / "tb")
    estimator_tags = {tag for tag in runs["true"] if tag.startswith("estimator/")}
    assert {
        "estimator/cosine",
        "estimator/relative_bias",
        "estimator/variance",
        "estimator/snr",
        "estimator/grad_norm",
    } <= estimator_tags
    assert not any(tag.startswith("estimator/") for tag in runs["false"])
    for tag in ("charts/episodic_return", "charts/eval_return_greedy", "losses/critic"):
        assert runs["true"][tag] == runs["false"][tag], tag
