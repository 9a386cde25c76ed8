"""Benchmark: one actor-critic update inside the trainer versus the same update in bare torch.

The framework side is `Trainer._update()` exactly as training calls it (replay sampling, the
selector, twin critics in one batched pass, fused Adam, Polyak averaging). The bare side is
what one would write from scratch with plain torch: an actor MLP, two critic MLPs and their
targets, `F.gumbel_softmax`, the expected-value critic target, Adam, a Polyak loop.
Both use the same batch size, widths, learning rates and discount, one thread.

Prints a Markdown table of mean milliseconds per update and the ratio framework / bare.

Usage: python benchmarks/update_overhead.py [--repeats 300] [--widths 64 256]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch import nn
from torch.nn import functional as F

from rlgumbel.config import build_trainer, register_resolvers

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BareUpdate:
    """A from-scratch Gumbel-softmax actor-critic update with two Q-head critics."""

    def __init__(self, obs_dim: int, actions: int, width: int, gamma: float, rate: float,
                 actor_lr: float, critic_lr: float, actor_every: int) -> None:
        self.actor = mlp([obs_dim, width, width, actions])
        self.q1, self.q2 = mlp([obs_dim, width, width, actions]), mlp([obs_dim, width, width, actions])
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
        critic_loss = (F.mse_loss(self.q1(obs).gather(-1, index).squeeze(-1), target)
                       + F.mse_loss(self.q2(obs).gather(-1, index).squeeze(-1), target))
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


def mean_ms(fn, repeats: int, warmup: int = 30) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.fmean(times) * 1e3  # a mean: one call in actor_update_every also steps the actor


def measure(width: int, repeats: int) -> tuple[float, float, int]:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"agent.actor.hidden_sizes=[{width},{width}]", f"agent.critic.hidden_sizes=[{width},{width}]",
            "trainer.progress=false", "trainer.updates_per_round=1"])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir))
        while trainer.step < 5000:  # fill the buffer with random-policy transitions
            trainer._collect()
        # `_update` is one round of `updates_per_round` updates; time per update
        framework = mean_ms(trainer._update, repeats) / trainer.settings.updates_per_round
        buffer, agent = trainer.buffer, cfg.agent
        bare = BareUpdate(buffer.obs.shape[1], trainer.num_actions, width, agent.gamma,
                          agent.target_update_rate, agent.actor.lr, agent.critic.lr, agent.actor_update_every)
        generator = torch.Generator().manual_seed(0)
        batch_size = trainer.settings.batch_size

        def bare_step() -> None:
            index = torch.randint(buffer.size, (batch_size,), generator=generator)
            bare(buffer.obs[index], buffer.action[index], buffer.reward[index], buffer.next_obs[index],
                 buffer.terminated[index], 1.0)

        bare_ms = mean_ms(bare_step, repeats)
        trainer.logger.close(None)
    return framework, bare_ms, batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, CartPole-v1, mean of {args.repeats} updates\n")
    print("| width | batch | rlgumbel trainer update (ms) | bare torch update (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for width in args.widths:
        framework, bare, batch = measure(width, args.repeats)
        print(f"| {width} | {batch} | {framework:.2f} | {bare:.2f} | {framework / bare:.2f} |")


if __name__ == "__main__":
    main()
