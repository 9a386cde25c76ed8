"""`rlgumbel-evaluate <run dir>`: a trained agent's returns over fresh episodes, as a table and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rlgumbel import layout
from rlgumbel.agents import ActorCritic
from rlgumbel.checkpoint import checkpoint_path, checkpoint_step, list_checkpoints, load_latest_checkpoint
from rlgumbel.config import ConfigError, build_agent, build_envs, load_run_config
from rlgumbel.envs import env_shape
from rlgumbel.schema import validate
from rlgumbel.trainer import Episodes, eval_reset_seed, evaluate
from rlgumbel.video import record_episode, render_fps, write_mp4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rlgumbel-evaluate", description=__doc__.split("`: ")[1])
    parser.add_argument("run_dir", type=Path, help="a run folder written by rlgumbel-train")
    parser.add_argument(
        "--checkpoint", default=None, help="a checkpoint file, or the env step of one in the run (default: the newest)"
    )
    parser.add_argument("--episodes", type=int, default=10, help="episodes per policy (default 10)")
    parser.add_argument(
        "--temperature",
        type=float,
        action="append",
        default=[],
        help="also sample from softmax(logits / T); may be given several times",
    )
    parser.add_argument("--seed", type=int, default=None, help="reset seed (default: the run's evaluation seed)")
    parser.add_argument("--env-id", default=None, help="evaluate on this Gymnasium id (same spaces as the run's env)")
    parser.add_argument(
        "--video",
        action="store_true",
        help=f"also record each policy's first episode as <run dir>/{layout.VIDEO_DIR}/step<k>_<policy>.mp4",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"JSON file (default: <run dir>/{layout.EVALUATION_FILE})"
    )
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    if any(not t > 0 for t in args.temperature):
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    return args


def load_checkpoint(run_dir: Path, choice: str | None) -> tuple[dict[str, Any], Path]:
    """The checkpoint `choice` names (a file, or an env step of the run), or the newest that loads."""
    directory = run_dir / layout.CHECKPOINT_DIR
    if choice is None:
        try:
            checkpoint, path, notes = load_latest_checkpoint(directory)
        except FileNotFoundError:
            raise ConfigError(f"{run_dir}: no loadable checkpoint in {directory}") from None
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        return checkpoint, path
    path = checkpoint_path(directory, int(choice)) if choice.isdigit() else Path(choice)
    if not path.is_file():
        steps = [checkpoint_step(p) for p in list_checkpoints(directory)]
        raise ConfigError(f"--checkpoint {choice}: no such checkpoint; the run has env steps {steps}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False), path
    except Exception as error:
        raise ConfigError(f"--checkpoint {path}: unreadable ({type(error).__name__}: {error})") from None


def statistics(episodes: Episodes) -> dict[str, Any]:
    """Mean, std, min and max return and mean length of one policy's episodes, with every episode's
    return and length; for several agents, also each agent's mean return and every return."""
    returns, lengths = episodes.returns, episodes.lengths
    result = {
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "mean_length": float(lengths.mean()),
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
    }
    if episodes.agent_returns is not None:
        result["agent_means"] = episodes.agent_returns.mean(0).tolist()
        result["agent_returns"] = episodes.agent_returns.tolist()
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate the run's checkpoint; returns what is printed and written."""
    cfg = validate(load_run_config(args.run_dir))
    checkpoint, path = load_checkpoint(args.run_dir, args.checkpoint)
    torch.set_num_threads(cfg.num_threads)
    envs = build_envs(cfg, args.episodes, args.env_id)
    if args.env_id is not None and env_shape(envs) != env_shape(trained_on := build_envs(cfg, 1)):
        raise ConfigError(
            f"--env-id {args.env_id}: its spaces {env_shape(envs)} differ from those the agent was trained on "
            f"({cfg.env.id}: {env_shape(trained_on)})"
        )
    agent = build_agent([cfg], envs)
    try:
        agent.load_state_dict(checkpoint["agent"])
    except (KeyError, RuntimeError, TypeError) as error:
        message = str(error).strip().splitlines()[0]
        raise ConfigError(f"{path}: not a checkpoint of this run's agent ({type(error).__name__}: {message})") from None
    seed = eval_reset_seed(cfg.seed) if args.seed is None else args.seed
    generator = torch.Generator().manual_seed(seed)
    policies = {"greedy": (True, 1.0), "sampled": (False, 1.0)}
    policies |= {f"sampled T={t:g}": (False, t) for t in args.temperature}
    results = {
        name: statistics(evaluate(agent, [envs], greedy, [seed], [generator], t)[0])
        for name, (greedy, t) in policies.items()
    }
    videos = record_videos(cfg, agent, args, checkpoint["step"], policies, seed) if args.video else {}
    return {
        "run": str(args.run_dir),
        "checkpoint": str(path),
        "env_step": int(checkpoint["step"]),
        "env_id": args.env_id or cfg.env.id,
        "episodes": args.episodes,
        "seed": seed,
        "policies": results,
        "videos": videos,
    }


def record_videos(
    cfg: DictConfig, agent: ActorCritic, args: argparse.Namespace, step: int, policies: dict, seed: int
) -> dict[str, dict[str, Any]]:
    """One mp4 per policy of its episode from the first start state; their paths, frames and returns."""
    envs = build_envs(cfg, 1, args.env_id, render_for="--video")
    generator = torch.Generator().manual_seed(seed)
    videos = {}
    for name, (greedy, temperature) in policies.items():
        frames, total = record_episode(agent, envs, seed, greedy, generator, temperature)
        path = args.run_dir / layout.VIDEO_DIR / f"step{step}_{name.replace(' ', '_').replace('=', '')}.mp4"
        write_mp4(frames, path, render_fps(envs))
        videos[name] = {"path": str(path), "frames": len(frames), "return": total}
    return videos


def table(evaluation: dict[str, Any]) -> str:
    """The evaluation as a Markdown table, a row per policy (team return, and each agent's mean)."""
    agents = next(iter(evaluation["policies"].values())).get("agent_means", [])
    per_agent_header = "".join(f" agent {d} |" for d in range(len(agents)))
    lines = [
        f"{evaluation['env_id']}, checkpoint at env step {evaluation['env_step']:,}, "
        f"{evaluation['episodes']} episodes per policy (reset seed {evaluation['seed']})",
        "",
        "| policy | mean return | std | min | max | mean length |" + per_agent_header,
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(agents),
    ]
    for name, s in evaluation["policies"].items():
        by_agent = "".join(f" {mean:.2f} |" for mean in s.get("agent_means", []))
        lines.append(
            f"| {name} | {s['mean']:.1f} | {s['std']:.1f} | {s['min']:.1f} | {s['max']:.1f} | {s['mean_length']:.1f} |"
            + by_agent
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        evaluation = run(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.run_dir / layout.EVALUATION_FILE
    out.write_text(json.dumps(evaluation, indent=2) + "\n")
    print(table(evaluation))
    for name, video in evaluation["videos"].items():
        print(f"video of {name}: {video['path']} ({video['frames']} frames, return {video['return']:.1f})")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
