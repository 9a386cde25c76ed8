"""Benchmark: the cost of one actor-critic update per agent when K agents are trained together
as a population, and the memory a member takes.

For K = 1, 2, 4, 8, 16 members (seeds 0 … K−1) of the CartPole preset, `Trainer._update()`
exactly as training calls it: per member a replay batch of 128 from its own buffer, the critic
step of twin q_head critics, an actor step (`actor_update_every=1`, so that every update
steps both, like the bare prototype in the population issue), per-member Adam and Polyak
averaging; one thread. The sizes are timed in alternating blocks, so that a change in the
machine's load falls on all of them; each block's time is a mean over its updates. Cases: MLP
widths (`--widths`) on CartPole-v1 and the convolutional encoder on MinAtar Breakout (a buffer
of 5,000 transitions: only updates are timed).

Prints per case a Markdown table: K, median ms per update of all K, ms per agent, per-agent
cost relative to K = 1, and the speed-up per agent. Then the memory per member: replay buffer
at the preset's `trainer.buffer_size`, and networks with their Adam moments and target critics.

Target (the population issue): per-agent cost at K = 16 within 1.2× of the bare prototype's
0.32 of a single update, i.e. ≤ 0.38.

Measured here (torch 2.13 CPU): MLP 64x64, 1.64 ms for one agent, 9.83 ms for 16 (0.61 ms, 0.37
of a single update, per agent; the bare prototype: 0.76 ms, 0.32); 256x256, 0.83 per agent at
K = 16; the CNN, 0.96-1.0 up to K = 8 and 1.21 at 16: wide layers and convolutions are
arithmetic, which batching does not save. Memory per member: the replay buffer (CartPole 4.5 MB,
LunarLander 7.5 MB, MinAtar Breakout 307 MB at the presets' sizes) against 0.25-7 MB of networks.

Usage: python benchmarks/population_update.py [--blocks 9] [--block-size 20] [--widths 64 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from rlgumbel.buffer import ReplayBuffer
from rlgumbel.config import build_population, register_with_hydra
from rlgumbel.configs import CONFIG_DIR
from rlgumbel.envs import env_shape

SIZES = (1, 2, 4, 8, 16)
PROTOTYPE_RATIO, TOLERANCE = 0.32, 1.2


def configs(overrides: list[str], members: int) -> list:
    register_with_hydra()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return [
            compose(
                config_name="train",
                overrides=[
                    *overrides,
                    f"seed={seed}",
                    "trainer.progress=false",
                    "trainer.updates_per_round=1",
                    "agent.actor_update_every=1",
                ],
            )
            for seed in range(members)
        ]


def filled_population(overrides: list[str], members: int, run_dir: Path):
    """A population whose buffers hold 5,000 env steps of random actions per member."""
    cfgs = configs(overrides, members)
    trainer = build_population(cfgs, [run_dir / str(k) for k in range(members)], [None] * members)
    while trainer.step < 5000:
        trainer._collect()
    return trainer


def block_ms(fn, calls: int) -> float:
    """Mean milliseconds per call over `calls` consecutive calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def measure(overrides: list[str], blocks: int, block_size: int) -> dict[int, float]:
    """Median ms per update of each population size, over alternating blocks."""
    with tempfile.TemporaryDirectory() as root:
        trainers = {k: filled_population(overrides, k, Path(root) / str(k)) for k in SIZES}
        for trainer in trainers.values():
            block_ms(trainer._update, block_size)  # warm-up
        times: dict[int, list[float]] = {k: [] for k in SIZES}
        for _ in range(blocks):
            for k, trainer in trainers.items():
                times[k].append(block_ms(trainer._update, block_size))
        for trainer in trainers.values():
            for member in trainer.members:
                member.logger.close(None)
    return {k: statistics.median(values) for k, values in times.items()}


def member_megabytes(overrides: list[str]) -> tuple[float, float]:
    """Replay buffer (at the preset's size) and networks with Adam moments and targets, per member."""
    cfg = configs(overrides, 1)[0]
    with tempfile.TemporaryDirectory() as root:
        trainer = build_population([cfg], [Path(root)], [None])
        agent, shape = trainer.agent, env_shape(trainer.members[0].envs)
        masked = trainer.buffer.masked
        trainer.members[0].logger.close(None)
    buffer = ReplayBuffer(
        cfg.trainer.buffer_size, shape.obs_shape, cfg.env.num_envs, shape.num_actions if masked else None
    )
    buffer_bytes = sum(t.nbytes for t in vars(buffer).values() if isinstance(t, torch.Tensor))
    networks = [*agent.actor.parameters(), *agent.critic.parameters()]
    # parameters, gradients and two Adam moments each, plus the target critics
    network_bytes = 4 * sum(p.nbytes for p in networks) + sum(p.nbytes for p in agent.target_critic.parameters())
    return buffer_bytes / 2**20, network_bytes / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--block-size", type=int, default=20)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [
        (f"MLP {w}x{w}, CartPole-v1", [f"agent.actor.hidden_sizes=[{w},{w}]", f"agent.critic.hidden_sizes=[{w},{w}]"])
        for w in args.widths
    ]
    cases.append(("CNN 16ch 3x3 + 128, MinAtar Breakout", ["env=minatar_breakout", "trainer.buffer_size=5000"]))
    print(
        f"torch {torch.__version__}, 1 thread, batch 128 per member, medians over {args.blocks} alternating blocks "
        f"of {args.block_size} updates per size\n"
    )
    for name, overrides in cases:
        times = measure(overrides, args.blocks, args.block_size)
        print(f"### {name}\n")
        print("| agents K | ms per update (all K) | ms per agent | per-agent cost vs K = 1 | per-agent speed-up |")
        print("|---:|---:|---:|---:|---:|")
        for k, ms in times.items():
            ratio = ms / k / times[1]
            print(f"| {k} | {ms:.2f} | {ms / k:.2f} | {ratio:.2f} | {1 / ratio:.1f}× |")
        limit = PROTOTYPE_RATIO * TOLERANCE
        print(f"\nK = 16: {times[16] / 16 / times[1]:.2f} of a single update per agent (target ≤ {limit:.2f})\n")
    print("### Memory per member\n")
    print("| preset | replay buffer (MB) | networks, gradients, Adam moments, targets (MB) |")
    print("|---|---:|---:|")
    for preset in ("cartpole", "lunar_lander", "minatar_breakout"):
        buffer_mb, network_mb = member_megabytes([f"env={preset}"])
        print(f"| {preset} | {buffer_mb:.1f} | {network_mb:.2f} |")


if __name__ == "__main__":
    main()
