"""Benchmark: one actor-critic update inside the trainer versus the same update in bare torch.

The framework side is `Trainer._update()` exactly as training calls it (replay sampling, the
selector, twin critics in one batched pass, Adam per population member, Polyak averaging), for a
single run, which is a population of one (benchmarks/population_update.py times larger ones). The bare side is
what one would write from scratch with plain torch: an actor network, two critic networks and
their targets, `F.gumbel_softmax`, the expected-value critic target, Adam, a Polyak loop.
Both use the same batch size, networks, learning rates and discount, one thread. Two network
kinds: MLPs on CartPole-v1 (hidden widths from `--widths`), and the convolutional encoder on
MinAtar Breakout (one 3×3 convolution with 16 channels, then 128 units, as its preset).

The two sides are timed in alternating blocks of updates, so that a change in the machine's
load falls on both; each block's time is a mean over its updates (one update in
`actor_update_every` also steps the actor). Prints a Markdown table of the median block time per
update of each side and the median of the blocks' ratios framework / bare.

Usage: python benchmarks/update_overhead.py [--blocks 15] [--block-size 40] [--widths 64 256]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch import nn
from torch.nn import functional as F

from rlgumbel.config import build_trainer, register_with_hydra
from rlgumbel.configs import CONFIG_DIR


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def network(obs_shape: tuple[int, ...], hidden: list[int], actions: int) -> nn.Sequential:
    """An MLP for vectors; for images [C, H, W], a 3×3 convolution with 16 channels first."""
    if len(obs_shape) == 1:
        return mlp([obs_shape[0], *hidden, actions])
    channels, height, width = obs_shape
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3), nn.ReLU(), nn.Flatten(), mlp([16 * (height - 2) * (width - 2), *hidden, actions])
    )


class BareUpdate:
    """A from-scratch Gumbel-softmax actor-critic update with two Q-head critics."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        actions: int,
        hidden: list[int],
        gamma: float,
        rate: float,
        actor_lr: float,
        critic_lr: float,
        actor_every: int,
    ) -> None:
        self.actor = network(obs_shape, hidden, actions)
        self.q1, self.q2 = network(obs_shape, hidden, actions), network(obs_shape, hidden, actions)
        self.t1, self.t2 = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=actor_lr)
        self.critic_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=critic_lr)
        self.gamma, self.rate, self.actor_every, self.calls = gamma, rate, actor_every, 0

    def __call__(self, obs, action, reward, next_obs, terminated, temperature: float) -> None:
        with torch.no_grad():
            probs = torch.softmax(self.actor(next_obs), -1)
            next_q = torch.min(self.t1(next_obs), self.t2(next_obs))
            target = reward + self.gamma * (1 - terminated) * (probs * next_q).sum(-1)
        index = action.unsqueeze(-1)
        critic_loss = F.mse_loss(self.q1(obs).gather(-1, index).squeeze(-1), target) + F.mse_loss(
            self.q2(obs).gather(-1, index).squeeze(-1), target
        )
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        if self.calls % self.actor_every == 0:  # the same delayed actor as the agent's
            y = F.gumbel_softmax(self.actor(obs), tau=temperature)
            actor_loss = -(y * torch.min(self.q1(obs), self.q2(obs))).sum(-1).mean()
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()
        self.calls += 1
        with torch.no_grad():
            for target_net, net in ((self.t1, self.q1), (self.t2, self.q2)):
                for p_target, p in zip(target_net.parameters(), net.parameters()):
                    p_target.lerp_(p, self.rate)


def block_ms(fn, calls: int) -> float:
    """Mean milliseconds per call over `calls` consecutive calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def alternate(framework, bare, blocks: int, block_size: int) -> tuple[float, float, float]:
    """Median ms per call of each side and the median ratio, over `blocks` alternating blocks."""
    block_ms(framework, block_size)  # warm-up
    block_ms(bare, block_size)
    times = [(block_ms(framework, block_size), block_ms(bare, block_size)) for _ in range(blocks)]
    ratios = [ours / theirs for ours, theirs in times]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times), statistics.median(ratios)


def measure(overrides: list[str], blocks: int, block_size: int) -> tuple[float, float, float, int]:
    register_with_hydra()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *overrides,
                "trainer.progress=false",
                "trainer.updates_per_round=1",
                "agent.n_step=1",
                "agent.critic.ensemble=2",
                "agent.critic.pessimism=1",
                "agent.entropy_coef=0",  # the bare update has no entropy bonus and no α to tune
                "agent.target_entropy_fraction=null",
            ],
        )
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir))
        while trainer.step < 5000:  # fill the buffer with random-policy transitions
            trainer._collect()
        buffer, agent = trainer.buffer, cfg.agent
        bare = BareUpdate(
            tuple(buffer.obs.shape[3:]),
            trainer.num_actions,
            list(agent.actor.hidden_sizes),
            agent.gamma,
            agent.target_update_rate,
            agent.actor.lr,
            agent.critic.lr,
            agent.actor_update_every,
        )
        generator = torch.Generator().manual_seed(0)
        batch_size = trainer.settings.batch_size
        # the stored transitions as flat tensors, the invalid (reset) ones left out
        valid = buffer.valid[: buffer.filled].flatten()
        stored = {
            name: getattr(buffer, name)[: buffer.filled].flatten(0, 2)[valid]
            for name in ("obs", "action", "reward", "next_obs", "terminated")
        }

        def bare_step() -> None:
            index = torch.randint(len(stored["action"]), (batch_size,), generator=generator)
            bare(
                stored["obs"][index],
                stored["action"][index],
                stored["reward"][index],
                stored["next_obs"][index],
                stored["terminated"][index].float(),
                1.0,
            )

        # `_update` is one round of `updates_per_round` (here 1) updates
        framework_ms, bare_ms, ratio = alternate(trainer._update, bare_step, blocks, block_size)
        trainer.members[0].logger.close(None)
    return framework_ms, bare_ms, ratio, batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--block-size", type=int, default=40)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, 1 thread, twin critics, medians over {args.blocks} alternating "
        f"blocks of {args.block_size} updates per side\n"
    )
    print("| network | env | batch | rlgumbel trainer update (ms) | bare torch update (ms) | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    cases = [
        (
            f"MLP {width}x{width}",
            "cartpole",
            [f"agent.actor.hidden_sizes=[{width},{width}]", f"agent.critic.hidden_sizes=[{width},{width}]"],
        )
        for width in args.widths
    ]
    cases.append(("CNN 16ch 3x3 + 128", "minatar_breakout", ["env=minatar_breakout"]))
    for name, env, overrides in cases:
        framework, bare, ratio, batch = measure(overrides, args.blocks, args.block_size)
        print(f"| {name} | {env} | {batch} | {framework:.2f} | {bare:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
