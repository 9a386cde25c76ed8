"""`rlgumbel-train`: compose the config with Hydra, train one run, print its summary."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rlgumbel.checkpoint import load_latest_checkpoint
from rlgumbel.config import ConfigError, build_trainer, load_run_config, register_resolvers

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")

register_resolvers()


def _summary_lines(summary: dict, run_dir: Path) -> list[str]:
    solved = summary["first_solved_step"]
    return [
        f"env steps: {summary['steps']}   wall: {summary['wall_seconds']:.1f} s",
        f"final eval return: greedy {summary['final_eval_return_greedy']:.1f}, "
        f"sampled {summary['final_eval_return_sampled']:.1f}   best greedy {summary['best_eval_return_greedy']:.1f}",
        f"first solved at env step: {solved if solved is not None else 'not solved'}",
        f"tensorboard --logdir {run_dir}",
        f"run: {run_dir}",
    ]


def _discard_empty_run(run_dir: Path) -> None:
    """Remove a run folder that holds nothing but Hydra's own files (a run that never started)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra"}:
        shutil.rmtree(run_dir)


def train(cfg: DictConfig, run_dir: Path) -> int:
    """Train one run in `run_dir` (or continue `cfg.resume`); returns the process exit code."""
    checkpoint = None
    if cfg.resume:
        run_dir = Path(cfg.resume)
        saved = load_run_config(run_dir)
        checkpoint, path, notes = load_latest_checkpoint(run_dir / "checkpoints")
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        print(f"resuming {run_dir} from {path.name} (env step {checkpoint['step']})", file=sys.stderr)
        cfg = saved
    trainer = build_trainer(cfg, run_dir, checkpoint)
    summary = trainer.run()
    print("\n".join(_summary_lines(summary, run_dir)))
    if trainer.interrupted_by is not None:
        print(f"interrupted by {signal.Signals(trainer.interrupted_by).name}; continue with: "
              f"rlgumbel-train resume={run_dir}", file=sys.stderr)
        return 128 + trainer.interrupted_by
    return 0


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        code = train(cfg, run_dir)
    except (ConfigError, FileNotFoundError) as error:
        if not cfg.resume:
            _discard_empty_run(run_dir)
        print(f"error: {error}", file=sys.stderr)
        code = 2
    if code:
        sys.exit(code)


def main() -> None:
    """Console entry point."""
    _hydra_main()


if __name__ == "__main__":
    main()
