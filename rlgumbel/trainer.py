"""The training loop of a population (a single run is one of one): collect → store → update →
evaluate → log → checkpoint."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from rlgumbel import layout
from rlgumbel.agents import ActorCritic
from rlgumbel.agents.actor_critic import MemberActor, MemberCritic
from rlgumbel.buffer import ReplayBuffer
from rlgumbel.checkpoint import save_checkpoint
from rlgumbel.diagnostics import gradient_diagnostics
from rlgumbel.envs import EnvShape, action_mask, env_actions, env_shape, restore_vector_env_state, vector_env_state
from rlgumbel.generators import MemberGenerators, randint
from rlgumbel.logger import Logger
from rlgumbel.schedules import Schedule
from rlgumbel.schema import TrainerSettings
from rlgumbel.selectors import gumbel_max_sample, policy_action
from rlgumbel.video import gif_bytes, record_episode, render_fps


class TrainingDiverged(ArithmeticError):
    """A loss became NaN or infinite with `trainer.strict`; the message names the step."""


class Every:
    """True when the env-step counter crosses a multiple of `period` (steps advance in strides)."""

    def __init__(self, period: int) -> None:
        self.period = period

    def __call__(self, before: int, after: int) -> bool:
        return after // self.period > before // self.period


def eval_reset_seed(seed: int) -> int:
    """The reset seed of a run's evaluations: the same start states at every evaluation."""
    return seed + 1_000_000


@dataclass
class Episodes:
    """One episode in each of N env copies.

    Attributes:
        returns: [N] episode returns (the team's, for several agents).
        lengths: [N] episode lengths.
        agent_returns: [N, D] each agent's return, for a multi-agent env; else None.
    """

    returns: np.ndarray
    lengths: np.ndarray
    agent_returns: np.ndarray | None = None


def evaluate(
    agent: ActorCritic,
    envs: Sequence[gym.vector.VectorEnv],
    greedy: bool,
    seeds: Sequence[int],
    generators: Sequence[torch.Generator],
    temperature: float = 1.0,
    members: Sequence[int] | None = None,
) -> list[Episodes]:
    """One episode in each copy of each member's `envs`, actions from one batched forward pass
    per step. A member's envs, generator and seed are `envs[k]`, `generators[k]`, `seeds[k]`;
    a member whose episodes have all ended is no longer stepped and draws no more numbers.

    Args:
        greedy: argmax of the logits if true, else a sample of `softmax(logits / temperature)`.
        seeds: reset seeds, so every evaluation of a run sees the same start states.
        members: which of the agent's members to evaluate (default all).
    Returns:
        Per evaluated member, its `Episodes`.
    """
    members = range(agent.members) if members is None else members
    first = envs[members[0]]
    shape, copies = env_shape(first), first.num_envs
    obs = torch.zeros(agent.members, copies, *shape.obs_shape)
    masks: list[torch.Tensor | None] = [None] * agent.members
    episodes = {k: Episodes(np.zeros(copies), np.zeros(copies, dtype=np.int64)) for k in members}
    done = {k: np.zeros(copies, dtype=bool) for k in members}
    for k in members:
        member_obs, info = envs[k].reset(seed=seeds[k])
        obs[k] = torch.as_tensor(member_obs, dtype=torch.float32)
        masks[k] = action_mask(info, copies, shape.num_actions)
        if shape.agents:
            episodes[k].agent_returns = np.zeros((copies, shape.components))
    while running := [k for k in members if not done[k].all()]:
        logits = agent.logits(obs, _stack_masks(masks, obs.shape[:2], shape))
        for k in running:
            action = policy_action(logits[k], greedy, temperature, generators[k])
            member_obs, reward, terminated, truncated, info = envs[k].step(env_actions(action, envs[k]))
            obs[k] = torch.as_tensor(member_obs, dtype=torch.float32)
            masks[k] = action_mask(info, copies, shape.num_actions)
            episodes[k].returns += np.where(done[k], 0.0, reward)
            if shape.agents:
                episodes[k].agent_returns += np.where(done[k][:, None], 0.0, info["agent_rewards"])
            episodes[k].lengths += ~done[k]
            done[k] |= terminated | truncated
    return [episodes[k] for k in members]


def _stack_masks(masks: Sequence[torch.Tensor | None], shape: Sequence[int], env: EnvShape) -> torch.Tensor | None:
    """The members' allowed-action masks [K, N, D, A] (every action allowed where one has none),
    or None when no member's env gives masks."""
    if all(mask is None for mask in masks):
        return None
    every = torch.ones(*shape, env.components, env.num_actions, dtype=torch.bool)
    return torch.stack([every[0] if mask is None else mask for mask in masks])


@dataclass
class Member:
    """One run of a population: what it is trained on and where it writes.

    Attributes:
        run_dir: the run's folder; checkpoints go to `run_dir / layout.CHECKPOINT_DIR`.
        seed: seeds the env resets and the member's generators.
        envs, eval_envs: training and evaluation vector envs.
        temperature: schedule of the selector's temperature over env steps.
        logger: TensorBoard writer of this run.
        solved_return: greedy eval return that counts as solving the env (for the summary).
        config: the run's resolved config as a plain dict, stored in checkpoints so that a
            resume can tell whether it continues the same experiment.
        video_envs: one copy of the env rendering `rgb_array`, for `settings.video_every`.
    """

    run_dir: Path
    seed: int
    envs: gym.vector.VectorEnv
    eval_envs: gym.vector.VectorEnv
    temperature: Schedule
    logger: Logger
    solved_return: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    video_envs: gym.vector.VectorEnv | None = None


class Trainer:
    """Trains a population of K agents, each on its own vector env, and writes member k's run
    into `members[k].run_dir`. A single run is a population of one.

    Every member's numbers come from its own envs and generators, so that a member trains as it
    would alone; a member whose update diverges stops (`strict`) while the others go on.

    Args:
        settings: budget, update rhythm and evaluation cadence, shared by the members.
        members: the runs, in the order of the agent's members.
        agent: the learning rule of all members (owns the selector).
        buffer: replay buffer sized for the env and the members.
    """

    def __init__(
        self, settings: TrainerSettings, members: Sequence[Member], agent: ActorCritic, buffer: ReplayBuffer
    ) -> None:
        self.settings, self.members, self.agent, self.buffer = settings, list(members), agent, buffer
        seeds = [member.seed for member in self.members]
        self.generator = MemberGenerators(seeds)
        self.eval_generator = MemberGenerators([seed + 1 for seed in seeds])
        # Diagnostics draw from their own generators: training is the same with them on or off.
        self.diagnostics_generator = MemberGenerators([seed + 2 for seed in seeds])
        first = self.members[0].envs
        self.num_envs, self.shape = first.num_envs, env_shape(first)
        self.step = 0
        count = len(self.members)
        self.evaluations: list[list[tuple[int, float, float]]] = [[] for _ in range(count)]  # (step, greedy, sampled)
        self.first_solved_step: list[int | None] = [None] * count
        self.skipped_updates = [0] * count
        self.failures: list[str | None] = [None] * count
        self.learning = torch.ones(count, dtype=torch.bool)  # members that have not failed
        self.wall_seconds = 0.0  # training time of earlier sessions of this run
        self.metrics: dict[str, torch.Tensor] = {}
        resets = [member.envs.reset(seed=member.seed) for member in self.members]
        self.obs = torch.stack([torch.as_tensor(obs, dtype=torch.float32) for obs, _ in resets])
        self.agent.observe(self.obs)
        self.mask = self._masks([info for _, info in resets])  # allowed actions, or None
        self.autoreset = torch.zeros(count, self.num_envs, dtype=torch.bool)
        self._stop_signal: int | None = None

    def _masks(self, infos: Sequence[dict[str, Any]]) -> torch.Tensor | None:
        masks = [action_mask(info, self.num_envs, self.shape.num_actions) for info in infos]
        return _stack_masks(masks, (len(self.members), self.num_envs), self.shape)

    def run(self) -> list[dict[str, Any] | None]:
        """Train until `total_steps`, or until SIGINT/SIGTERM (then checkpoint every member).

        Returns:
            Each member's summary (final and best evaluations, first solved step, wall time),
            None for a member that failed: `failures` holds its message, and its run folder its
            last good parameters.
        """
        s = self.settings
        evaluate_now, log_now, checkpoint_now, diagnose = (
            Every(s.eval_every),
            Every(s.log_every),
            Every(s.checkpoint_every),
            Every(s.diagnostics_every),
        )
        film_now = Every(s.video_every) if s.video_every and self.members[0].video_envs is not None else None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        started, started_step = time.perf_counter(), self.step
        bar = tqdm(
            total=s.total_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=None if s.progress else True,
            file=sys.stderr,
        )
        try:
            while self.step < s.total_steps and self._stop_signal is None and bool(self.learning.any()):
                before = self.step
                self._collect()
                if self.step >= s.learning_starts:
                    # one round per multiple of update_every crossed: a vector step may cross several
                    for _ in range(self.step // s.update_every - before // s.update_every):
                        self._update()
                    if s.diagnostics and diagnose(before, self.step):
                        self._diagnose()
                if evaluate_now(before, self.step) or self.step >= s.total_steps:
                    self._evaluate()
                    bar.set_postfix(eval_greedy=self._progress_postfix())
                if film_now is not None and film_now(before, self.step):
                    self._video()
                if log_now(before, self.step):
                    self._log(started, started_step)
                if checkpoint_now(before, self.step):
                    self._checkpoint()
                bar.update(self.step - before)
        finally:
            bar.close()
            self.wall_seconds += time.perf_counter() - started
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._checkpoint()
            status = "success" if self._stop_signal is None else None
            for k in self._live():
                self.members[k].logger.close(status)
        return [None if self.failures[k] else self._finish(k) for k in range(len(self.members))]

    def _finish(self, member: int) -> dict[str, Any]:
        summary = self.summary(member)
        (self.members[member].run_dir / layout.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _progress_postfix(self) -> str:
        greedy = [self.evaluations[k][-1][1] for k in self._live() if self.evaluations[k]]
        return f"{greedy[0]:.1f}" if len(greedy) == 1 else f"median {np.median(greedy):.1f}" if greedy else "—"

    def _live(self) -> list[int]:
        """Members still training."""
        return self.learning.nonzero().flatten().tolist()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    @property
    def interrupted_by(self) -> int | None:
        """The signal number that stopped the run early, if any."""
        return self._stop_signal

    def _temperatures(self) -> torch.Tensor:
        """Every member's temperature at this step: [K, 1, 1, 1]."""
        return torch.tensor([member.temperature(self.step) for member in self.members]).view(-1, 1, 1, 1)

    def _collect(self) -> None:
        """One step of every env copy of every member; transitions into the buffer; episode returns logged."""
        if self.step < self.settings.learning_starts:
            action = self._random_action()
        else:
            action = self.agent.act(self.obs, self._temperatures(), self.generator, self.step, self.mask)
        steps = [member.envs.step(env_actions(actions, member.envs)) for member, actions in zip(self.members, action)]
        next_obs = torch.stack([torch.as_tensor(result[0], dtype=torch.float32) for result in steps])
        reward, terminated, truncated = (torch.as_tensor(np.stack([result[i] for result in steps])) for i in (1, 2, 3))
        next_mask = self._masks([result[4] for result in steps])
        # After an episode ends, the next step only resets that copy: not a real transition.
        self.buffer.add(
            self.obs,
            action,
            reward.float(),
            next_obs,
            terminated,
            truncated,
            valid=~self.autoreset,
            mask=self.mask,
            next_mask=next_mask,
        )
        self.agent.observe(next_obs)
        self.autoreset = terminated | truncated
        self.obs, self.mask = next_obs, next_mask
        self.step += self.num_envs
        for k in self._live():
            self._log_episodes(k, steps[k][4])

    def _log_episodes(self, member: int, info: dict[str, Any]) -> None:
        """The returns and lengths of the episodes that ended at this step (and each agent's returns)."""
        if "episode" not in info:
            return
        finished = info["_episode"]
        agent_returns = info["agent_returns"][finished] if self.shape.agents else [()] * int(finished.sum())
        episodes = zip(info["episode"]["r"][finished], info["episode"]["l"][finished], agent_returns)
        for episodic_return, length, by_agent in episodes:
            scalars = {layout.EPISODIC_RETURN: episodic_return, "charts/episodic_length": length}
            scalars |= {f"{layout.EPISODIC_RETURN}_agent{d}": value for d, value in enumerate(by_agent)}
            self.members[member].logger.scalars(scalars, self.step)

    def _random_action(self) -> torch.Tensor:
        """Uniform actions among the allowed ones: [K, N, D] int64."""
        shape = (len(self.members), self.num_envs, self.shape.components)
        if self.mask is None and len(set(self.shape.action_sizes)) == 1:
            return randint(self.shape.num_actions, shape, self.generator)
        allowed = self.agent.actor.allowed if self.mask is None else self.mask & self.agent.actor.allowed
        uniform = torch.zeros(*shape, self.shape.num_actions).masked_fill(~allowed, float("-inf"))
        return gumbel_max_sample(uniform, self.generator)

    def _update(self) -> None:
        temperature = self._temperatures()
        self.agent.set_step(self.step)
        for _ in range(self.settings.updates_per_round):
            batch = self.buffer.sample(self.settings.batch_size, self.generator, horizon=self.agent.n_step)
            metrics, failures = self.agent.update(batch, temperature, self.generator, self.learning)
            for member, message in failures.items():
                self._on_non_finite(member, message)
            self.metrics = metrics

    def _on_non_finite(self, member: int, message: str) -> None:
        """With `strict`, stop the member (its parameters are the last finite ones, checkpointed
        now); otherwise count the skipped batch, logged as health/skipped_updates."""
        if not self.settings.strict:
            self.skipped_updates[member] += 1
            return
        metrics = {tag: float(value[member]) for tag, value in self.metrics.items()}
        last = ", ".join(f"{tag} {value:.4g}" for tag, value in sorted(metrics.items()))
        self.failures[member] = (
            f"training diverged at env step {self.step}: {message}; the update was not applied. "
            f"Last finite metrics: {last or 'none yet'}. Set trainer.strict=false to skip such batches"
        )
        self._checkpoint_member(member)
        self.members[member].logger.close("failure")
        self.learning[member] = False

    def _diagnose(self) -> None:
        """The actor gradient's bias and variance against the exact one, under `estimator/`."""
        batch = self.buffer.sample(self.settings.batch_size, self.diagnostics_generator)
        obs = self.agent.network_inputs(batch.obs)
        temperatures = self._temperatures()
        for k in self._live():
            metrics = gradient_diagnostics(
                MemberActor(self.agent.actor, k),
                obs[k],
                MemberCritic(self.agent.critic, k).bind,
                self.agent.selector,
                float(temperatures[k]),
                self.diagnostics_generator[k],
                self.settings.diagnostics_samples,
            )
            self.members[k].logger.scalars(metrics, self.step)

    def _evaluate(self) -> None:
        live = self._live()
        seeds = [eval_reset_seed(member.seed) for member in self.members]
        envs = [member.eval_envs for member in self.members]
        greedy = evaluate(self.agent, envs, True, seeds, self.eval_generator, members=live)
        sampled = evaluate(self.agent, envs, False, seeds, self.eval_generator, members=live)
        for k, greedy_episodes, sampled_episodes in zip(live, greedy, sampled):
            greedy_mean, sampled_mean = float(greedy_episodes.returns.mean()), float(sampled_episodes.returns.mean())
            self.evaluations[k].append((self.step, greedy_mean, sampled_mean))
            solved = self.members[k].solved_return
            if self.first_solved_step[k] is None and solved is not None and greedy_mean >= solved:
                self.first_solved_step[k] = self.step
            self.members[k].logger.scalars(
                {layout.EVAL_RETURN_GREEDY: greedy_mean, layout.EVAL_RETURN_SAMPLED: sampled_mean}, self.step
            )

    def _video(self) -> None:
        """A greedy episode from the evaluations' first start state, to TensorBoard as a GIF."""
        for k in self._live():
            member = self.members[k]
            seed = eval_reset_seed(member.seed)
            frames, _ = record_episode(self.agent, member.video_envs, seed, True, self.eval_generator[k], member=k)
            height, width = frames[0].shape[:2]
            gif = gif_bytes(frames, render_fps(member.video_envs))
            member.logger.video(layout.EVAL_VIDEO, gif, height, width, self.step)

    def _log(self, started: float, started_step: int) -> None:
        elapsed = time.perf_counter() - started
        perf = {
            "perf/steps_per_second": (self.step - started_step) / max(elapsed, 1e-9),
            layout.WALL_SECONDS: self.wall_seconds + elapsed,
        }
        epsilon = self.agent.selector.epsilon(self.step)
        for k in self._live():
            policy = {
                layout.TEMPERATURE: self.members[k].temperature(self.step),
                layout.EPSILON: epsilon,
                "health/skipped_updates": self.skipped_updates[k],
            }
            metrics = {tag: value[k] for tag, value in self.metrics.items()}
            self.members[k].logger.scalars({**metrics, **policy, **perf}, self.step)

    def _checkpoint(self) -> None:
        for k in self._live():
            self._checkpoint_member(k)

    def _checkpoint_member(self, member: int) -> None:
        directory = self.members[member].run_dir / layout.CHECKPOINT_DIR
        save_checkpoint(directory, self.step, self.member_state(member), keep=self.settings.keep_checkpoints)
        self.members[member].logger.flush()

    def member_state(self, member: int) -> dict[str, Any]:
        """Everything needed to continue member `member`'s run exactly, alone or in a population."""
        k = member
        return {
            "config": self.members[k].config,
            "step": self.step,
            "agent": self.agent.member_state(k),
            "buffer": self.buffer.member_state(k),
            "generator": self.generator[k].get_state(),
            "eval_generator": self.eval_generator[k].get_state(),
            "diagnostics_generator": self.diagnostics_generator[k].get_state(),
            "obs": self.obs[k].clone(),
            "mask": None if self.mask is None else self.mask[k].clone(),
            "autoreset": self.autoreset[k].clone(),
            "evaluations": self.evaluations[k],
            "skipped_updates": self.skipped_updates[k],
            "first_solved_step": self.first_solved_step[k],
            "wall_seconds": self.wall_seconds,
            "envs": vector_env_state(self.members[k].envs),
            # some envs' resets depend on the episode before (lbforaging): the evaluations' envs
            # are part of what a resume must continue
            "eval_envs": vector_env_state(self.members[k].eval_envs),
        }

    def load_member_state(self, member: int, state: dict[str, Any]) -> None:
        """Restore what `member_state` returned into member `member`; every member must be
        restored from the same env step."""
        k = member
        self.step = state["step"]
        self.agent.load_member_state(k, state["agent"])
        self.buffer.load_member_state(k, state["buffer"])
        self.generator[k].set_state(state["generator"])
        self.eval_generator[k].set_state(state["eval_generator"])
        self.diagnostics_generator[k].set_state(state["diagnostics_generator"])
        self.obs[k], self.autoreset[k] = state["obs"], state["autoreset"]
        if self.mask is not None:
            self.mask[k] = state["mask"]
        self.skipped_updates[k] = state["skipped_updates"]
        self.evaluations[k] = list(state["evaluations"])
        self.first_solved_step[k] = state["first_solved_step"]
        self.wall_seconds = state["wall_seconds"]
        restore_vector_env_state(self.members[k].envs, state["envs"])
        if "eval_envs" in state:  # checkpoints from before they were stored reset fresh ones
            restore_vector_env_state(self.members[k].eval_envs, state["eval_envs"])

    def summary(self, member: int = 0) -> dict[str, Any]:
        """Final, best and mean evaluation, first solved step, env steps and wall time. The mean
        of the greedy evaluations (the area under the learning curve over its length) is what a
        hyperparameter search maximises: it rewards learning early and staying there."""
        evaluations = self.evaluations[member]
        final = evaluations[-1] if evaluations else (self.step, math.nan, math.nan)
        greedy = [e[1] for e in evaluations]
        return {
            "steps": self.step,
            "wall_seconds": self.wall_seconds,
            "final_eval_return_greedy": final[1],
            "final_eval_return_sampled": final[2],
            "best_eval_return_greedy": max(greedy, default=math.nan),
            "mean_eval_return_greedy": sum(greedy) / len(greedy) if greedy else math.nan,
            "first_solved_step": self.first_solved_step[member],
            "interrupted": self._stop_signal is not None,
        }
