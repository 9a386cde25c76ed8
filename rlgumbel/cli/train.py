"""`rlgumbel-train`: compose the config with Hydra, train one run, print its summary."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rlgumbel.checkpoint import list_checkpoints, load_latest_checkpoint
from rlgumbel.cli.preflight import check_command_line
from rlgumbel.cli.sweep_progress import print_sweep_summary
from rlgumbel.config import (
    ConfigError,
    build_population,
    build_trainer,
    check_resumable,
    register_with_hydra,
    resume_config,
)
from rlgumbel.configs import CONFIG_DIR
from rlgumbel.layout import CHECKPOINT_DIR, FAILURE_FILE, HYDRA_DIR
from rlgumbel.population import MemberOutcome
from rlgumbel.schema import validate
from rlgumbel.trainer import TrainingDiverged

register_with_hydra()


class RunFailed(RuntimeError):
    """A run of a sweep that could not train; the sweep goes on with the other runs."""


def _summary_lines(summary: dict, run_dir: Path) -> list[str]:
    solved = summary["first_solved_step"]
    return [
        f"env steps: {summary['steps']}   wall: {summary['wall_seconds']:.1f} s",
        f"final eval return: greedy {summary['final_eval_return_greedy']:.1f}, "
        f"sampled {summary['final_eval_return_sampled']:.1f}   best greedy {summary['best_eval_return_greedy']:.1f}   "
        f"mean greedy {summary['mean_eval_return_greedy']:.1f}",
        f"first solved at env step: {solved if solved is not None else 'not solved'}",
        f"tensorboard --logdir {run_dir}",
        f"run: {run_dir}",
    ]


def _load_checkpoint(run_dir: Path) -> dict:
    try:
        checkpoint, path, notes = load_latest_checkpoint(run_dir / CHECKPOINT_DIR)
    except FileNotFoundError:
        raise ConfigError(f"resume={run_dir}: no checkpoint to continue from in {run_dir / 'checkpoints'}") from None
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    print(f"resuming {run_dir} from {path.name} (env step {checkpoint['step']})", file=sys.stderr)
    return checkpoint


def train(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> tuple[int, dict]:
    """Train one run in `run_dir`, or continue one (`resume=`); returns the exit code and the
    run's summary.

    Args:
        cfg: the composed config.
        run_dir: Hydra's output folder for this job.
        overrides: the command line's overrides (applied to a resumed run's own config).
    """
    cfg, run_dir, checkpoint = _prepare_run(cfg, run_dir, overrides)
    trainer = build_trainer(cfg, run_dir, checkpoint)
    (summary,) = trainer.run()
    if trainer.failures[0]:
        raise TrainingDiverged(trainer.failures[0])
    _say("\n".join(_summary_lines(summary, run_dir)), sys.stdout)
    if trainer.interrupted_by is not None:
        _say(
            f"interrupted by {signal.Signals(trainer.interrupted_by).name}; continue with: "
            f"rlgumbel-train resume={run_dir}",
            sys.stderr,
        )
        return 128 + trainer.interrupted_by, summary
    return 0, summary


def _prepare_run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> tuple[DictConfig, Path, dict | None]:
    """A job's config, run folder and checkpoint to continue from (if it resumes), validated."""
    cfg, resume_dir = resume_config(cfg, overrides)
    run_dir = resume_dir or run_dir
    checkpoint = None
    if resume_dir is not None or (cfg.get("resume") is True and list_checkpoints(run_dir / CHECKPOINT_DIR)):
        checkpoint = _load_checkpoint(run_dir)
        check_resumable(checkpoint, cfg, run_dir)
    validate(cfg)
    return cfg, run_dir, checkpoint


def train_population(cfgs: list[DictConfig], run_dirs: list[Path], overrides: list[list[str]]) -> list[MemberOutcome]:
    """Train the jobs `cfgs` (alike but in the per-member keys, rlgumbel/population.py) together
    as one population, each into its own run folder as a single run would; print each one's
    summary. A job whose config is invalid, or whose training diverges, fails alone: its folder
    gets the error file and its outcome the message.

    Args:
        cfgs, run_dirs, overrides: per job, its composed config, Hydra's output folder and the
            command line's overrides of it.
    Returns:
        Per job, its outcome: the mean of its greedy evaluations, or the error.
    Raises:
        SystemExit: SIGINT/SIGTERM stopped training; every member was checkpointed first.
    """
    outcomes: list[MemberOutcome | None] = [None] * len(cfgs)
    members: list[tuple[int, DictConfig, Path, dict | None]] = []
    for index, (cfg, run_dir, job_overrides) in enumerate(zip(cfgs, run_dirs, overrides)):
        try:
            members.append((index, *_prepare_run(cfg, run_dir, job_overrides)))
        except ConfigError as error:
            outcomes[index] = _failed(run_dir, f"error: {error}")
    if members:
        indices, member_cfgs, member_dirs, checkpoints = zip(*members)
        try:
            trainer = build_population(member_cfgs, member_dirs, checkpoints)
        except ConfigError as error:
            for index, run_dir in zip(indices, member_dirs):
                outcomes[index] = _failed(run_dir, f"error: {error}")
            return outcomes
        summaries = trainer.run()
        for member, (index, run_dir, summary) in enumerate(zip(indices, member_dirs, summaries)):
            if summary is None:
                outcomes[index] = _failed(run_dir, f"error: {trainer.failures[member]}")
            else:
                _say("\n".join(_summary_lines(summary, run_dir)), sys.stdout)
                outcomes[index] = MemberOutcome(summary["mean_eval_return_greedy"], None)
        if trainer.interrupted_by is not None:
            _say(
                f"interrupted by {signal.Signals(trainer.interrupted_by).name}; continue with: -m ... resume=true",
                sys.stderr,
            )
            raise SystemExit(128 + trainer.interrupted_by)
    return outcomes


def _failed(run_dir: Path, message: str) -> MemberOutcome:
    print(message, file=sys.stderr)
    _record_failure(run_dir, message + "\n")
    return MemberOutcome(None, message)


def _say(text: str, stream) -> None:
    """Print `text`, unless its reader has gone (a closed pipe): the run's results are on disk
    by now, and a vanished terminal must not turn a finished run into a failed one."""
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:  # later writes (and the flush at exit) go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _discard_empty_run(run_dir: Path) -> None:
    """Remove a run folder that holds nothing but Hydra's own files (a run that never started);
    a folder with event files or checkpoints is never touched."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {HYDRA_DIR}:
        shutil.rmtree(run_dir)


def _record_failure(run_dir: Path, text: str) -> None:
    if run_dir.is_dir():
        (run_dir / FAILURE_FILE).write_text(text)


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    """Train the job's run; returns the mean of its greedy evaluations, the objective a sweeper
    such as `hydra/sweeper=optuna` maximises."""
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    try:
        code, summary = train(cfg, run_dir, list(hydra_config.overrides.task))
    except ConfigError as error:
        message = f"error: {error}"
        print(message, file=sys.stderr)
        if in_sweep:  # keep the folder, so that the sweep's report lists the failure
            _record_failure(run_dir, message + "\n")
            raise RunFailed(message) from None
        _discard_empty_run(run_dir)
        sys.exit(2)
    except TrainingDiverged as error:
        message = f"error: {error}"
        print(message, file=sys.stderr)
        _record_failure(run_dir, message + "\n")
        if in_sweep:
            raise RunFailed(message) from None
        sys.exit(3)
    except Exception:
        _record_failure(run_dir, traceback.format_exc())
        raise
    if code:
        sys.exit(code)
    return summary["mean_eval_return_greedy"]


def main() -> None:
    """Console entry point."""
    message = check_command_line(sys.argv[1:], CONFIG_DIR, "train")
    if message:
        print(message, file=sys.stderr)
        sys.exit(2)
    try:
        _hydra_main()
    finally:
        print_sweep_summary()


if __name__ == "__main__":
    main()
