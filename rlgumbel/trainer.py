"""The training loop: collect → store → update → evaluate → log → checkpoint."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from rlgumbel import layout
from rlgumbel.agents import ActorCritic
from rlgumbel.agents.actor_critic import NonFiniteUpdate
from rlgumbel.buffer import ReplayBuffer
from rlgumbel.checkpoint import save_checkpoint
from rlgumbel.diagnostics import gradient_diagnostics
from rlgumbel.envs import action_mask, restore_vector_env_state, vector_env_state
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


def evaluate(
    agent: ActorCritic,
    envs: gym.vector.VectorEnv,
    greedy: bool,
    seed: int,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One episode in each copy of `envs`, actions from one batched forward pass per step.

    Args:
        greedy: argmax of the logits if true, else a sample of `softmax(logits / temperature)`.
        seed: reset seed, so every evaluation of a run sees the same start states.
    Returns:
        [num_envs] episode returns and [num_envs] episode lengths.
    """
    obs, info = envs.reset(seed=seed)
    num_actions = int(envs.single_action_space.n)
    returns = np.zeros(envs.num_envs)
    lengths = np.zeros(envs.num_envs, dtype=np.int64)
    done = np.zeros(envs.num_envs, dtype=bool)
    while not done.all():
        mask = action_mask(info, envs.num_envs, num_actions)
        logits = agent.logits(torch.as_tensor(obs, dtype=torch.float32), mask)
        action = policy_action(logits, greedy, temperature, generator)
        obs, reward, terminated, truncated, info = envs.step(action.numpy())
        returns += np.where(done, 0.0, reward)
        lengths += ~done
        done |= terminated | truncated
    return returns, lengths


class Trainer:
    """Trains one agent on one vector env and writes everything into `run_dir`.

    Args:
        settings: budget, update rhythm and evaluation cadence.
        envs, eval_envs: training and evaluation vector envs.
        agent: the learning rule (owns the selector).
        temperature: schedule of the selector's temperature over env steps.
        buffer: replay buffer sized for the env.
        logger: TensorBoard writer of this run.
        run_dir: the run's folder; checkpoints go to `run_dir / layout.CHECKPOINT_DIR`.
        seed: seeds the env resets and the run's generator.
        solved_return: greedy eval return that counts as solving the env (for the summary).
        config: the run's resolved config as a plain dict, stored in checkpoints so that a
            resume can tell whether it continues the same experiment.
        video_envs: one copy of the env rendering `rgb_array`, for `settings.video_every`.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        envs: gym.vector.VectorEnv,
        eval_envs: gym.vector.VectorEnv,
        agent: ActorCritic,
        temperature: Schedule,
        buffer: ReplayBuffer,
        logger: Logger,
        run_dir: Path,
        seed: int,
        solved_return: float | None = None,
        config: dict[str, Any] | None = None,
        video_envs: gym.vector.VectorEnv | None = None,
    ) -> None:
        self.settings, self.envs, self.eval_envs, self.video_envs = settings, envs, eval_envs, video_envs
        self.agent, self.temperature, self.buffer, self.logger = agent, temperature, buffer, logger
        self.run_dir, self.seed, self.solved_return = run_dir, seed, solved_return
        self.config = config or {}
        self.generator = torch.Generator().manual_seed(seed)
        self.eval_generator = torch.Generator().manual_seed(seed + 1)
        # Diagnostics draw from their own generator: training is the same with them on or off.
        self.diagnostics_generator = torch.Generator().manual_seed(seed + 2)
        self.num_actions = int(envs.single_action_space.n)
        self.step = 0
        self.evaluations: list[tuple[int, float, float]] = []  # (step, greedy, sampled)
        self.first_solved_step: int | None = None
        self.wall_seconds = 0.0  # training time of earlier sessions of this run
        self.metrics: dict[str, Any] = {}
        obs, info = envs.reset(seed=seed)
        self.obs = torch.as_tensor(obs, dtype=torch.float32)
        self.agent.observe(self.obs)
        self.mask = action_mask(info, envs.num_envs, self.num_actions)  # allowed actions, or None
        self.autoreset = torch.zeros(envs.num_envs, dtype=torch.bool)
        self.skipped_updates = 0
        self._stop_signal: int | None = None
        self._failure: str | None = None

    def run(self) -> dict[str, Any]:
        """Train until `total_steps`, or until SIGINT/SIGTERM (then checkpoint and exit code 128+n).

        Returns:
            The run's summary (final and best evaluations, first solved step, wall time).
        Raises:
            TrainingDiverged: with `strict`, a loss became NaN/inf (after the last good
                parameters were checkpointed).
        """
        s = self.settings
        evaluate_now, log_now, checkpoint_now, diagnose = (
            Every(s.eval_every),
            Every(s.log_every),
            Every(s.checkpoint_every),
            Every(s.diagnostics_every),
        )
        film_now = Every(s.video_every) if s.video_every and self.video_envs is not None else None
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
        status = "failure"
        try:
            while self.step < s.total_steps and self._stop_signal is None and self._failure is None:
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
                    bar.set_postfix(eval_greedy=f"{self.evaluations[-1][1]:.1f}")
                if film_now is not None and film_now(before, self.step):
                    self._video()
                if log_now(before, self.step):
                    self._log(started, started_step)
                if checkpoint_now(before, self.step):
                    self._checkpoint()
                bar.update(self.step - before)
            status = "failure" if self._failure else "success" if self._stop_signal is None else None
        finally:
            bar.close()
            self.wall_seconds += time.perf_counter() - started
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._checkpoint()
            self.logger.close(status)
        if self._failure:
            raise TrainingDiverged(self._failure)
        summary = self.summary()
        (self.run_dir / layout.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    @property
    def interrupted_by(self) -> int | None:
        """The signal number that stopped the run early, if any."""
        return self._stop_signal

    def _collect(self) -> None:
        """One step of every env copy; transitions into the buffer; episode returns logged."""
        if self.step < self.settings.learning_starts:
            action = self._random_action()
        else:
            action = self.agent.act(self.obs, self.temperature(self.step), self.generator, self.step, self.mask)
        next_obs, reward, terminated, truncated, info = self.envs.step(action.numpy())
        next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
        next_mask = action_mask(info, self.envs.num_envs, self.num_actions)
        terminated, truncated = torch.as_tensor(terminated), torch.as_tensor(truncated)
        # After an episode ends, the next step only resets that copy: not a real transition.
        self.buffer.add(
            self.obs,
            action,
            torch.as_tensor(reward, dtype=torch.float32),
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
        self.step += self.envs.num_envs
        if "episode" in info:
            finished = info["_episode"]
            for episodic_return, length in zip(info["episode"]["r"][finished], info["episode"]["l"][finished]):
                self.logger.scalars(
                    {layout.EPISODIC_RETURN: episodic_return, "charts/episodic_length": length}, self.step
                )

    def _random_action(self) -> torch.Tensor:
        """Uniform actions among the allowed ones: [N] int64."""
        if self.mask is None:
            return torch.randint(self.num_actions, (self.envs.num_envs,), generator=self.generator)
        uniform = torch.zeros(self.mask.shape).masked_fill(~self.mask, float("-inf"))
        return gumbel_max_sample(uniform, self.generator)

    def _update(self) -> None:
        temperature = self.temperature(self.step)
        self.agent.set_step(self.step)
        for _ in range(self.settings.updates_per_round):
            batch = self.buffer.sample(self.settings.batch_size, self.generator, horizon=self.agent.n_step)
            try:
                self.metrics = self.agent.update(batch, temperature, self.generator)
            except NonFiniteUpdate as error:
                self._on_non_finite(error)
                if self._failure:
                    return

    def _on_non_finite(self, error: NonFiniteUpdate) -> None:
        """With `strict`, stop the run (the parameters are the last finite ones); otherwise
        count the skipped batch, logged as health/skipped_updates."""
        if not self.settings.strict:
            self.skipped_updates += 1
            return
        last = ", ".join(f"{tag} {float(value):.4g}" for tag, value in sorted(self.metrics.items()))
        self._failure = (
            f"training diverged at env step {self.step}: {error}; the update was not applied. "
            f"Last finite metrics: {last or 'none yet'}. Set trainer.strict=false to skip such batches"
        )

    def _diagnose(self) -> None:
        """The actor gradient's bias and variance against the exact one, under `estimator/`."""
        batch = self.buffer.sample(self.settings.batch_size, self.diagnostics_generator)
        obs = self.agent.network_inputs(batch.obs)
        metrics = gradient_diagnostics(
            self.agent.actor,
            obs,
            self.agent.critic.bind,
            self.agent.selector,
            self.temperature(self.step),
            self.diagnostics_generator,
            self.settings.diagnostics_samples,
        )
        self.logger.scalars(metrics, self.step)

    def _evaluate(self) -> None:
        eval_seed = eval_reset_seed(self.seed)
        greedy = evaluate(self.agent, self.eval_envs, True, eval_seed, self.eval_generator)[0].mean()
        sampled = evaluate(self.agent, self.eval_envs, False, eval_seed, self.eval_generator)[0].mean()
        self.evaluations.append((self.step, float(greedy), float(sampled)))
        if self.first_solved_step is None and self.solved_return is not None and greedy >= self.solved_return:
            self.first_solved_step = self.step
        self.logger.scalars({layout.EVAL_RETURN_GREEDY: greedy, layout.EVAL_RETURN_SAMPLED: sampled}, self.step)

    def _video(self) -> None:
        """A greedy episode from the evaluations' first start state, to TensorBoard as a GIF."""
        frames, _ = record_episode(self.agent, self.video_envs, eval_reset_seed(self.seed), True, self.eval_generator)
        height, width = frames[0].shape[:2]
        self.logger.video(layout.EVAL_VIDEO, gif_bytes(frames, render_fps(self.video_envs)), height, width, self.step)

    def _log(self, started: float, started_step: int) -> None:
        elapsed = time.perf_counter() - started
        perf = {
            "perf/steps_per_second": (self.step - started_step) / max(elapsed, 1e-9),
            layout.WALL_SECONDS: self.wall_seconds + elapsed,
        }
        policy = {
            layout.TEMPERATURE: self.temperature(self.step),
            layout.EPSILON: self.agent.selector.epsilon(self.step),
            "health/skipped_updates": self.skipped_updates,
        }
        self.logger.scalars({**self.metrics, **policy, **perf}, self.step)

    def _checkpoint(self) -> None:
        save_checkpoint(
            self.run_dir / layout.CHECKPOINT_DIR, self.step, self.state_dict(), keep=self.settings.keep_checkpoints
        )
        self.logger.flush()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly."""
        return {
            "config": self.config,
            "step": self.step,
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "eval_generator": self.eval_generator.get_state(),
            "diagnostics_generator": self.diagnostics_generator.get_state(),
            "obs": self.obs,
            "mask": self.mask,
            "autoreset": self.autoreset,
            "evaluations": self.evaluations,
            "skipped_updates": self.skipped_updates,
            "first_solved_step": self.first_solved_step,
            "wall_seconds": self.wall_seconds,
            "envs": vector_env_state(self.envs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.step = state["step"]
        self.agent.load_state_dict(state["agent"])
        self.buffer.load_state_dict(state["buffer"])
        self.generator.set_state(state["generator"])
        self.eval_generator.set_state(state["eval_generator"])
        self.diagnostics_generator.set_state(state["diagnostics_generator"])
        self.obs, self.mask, self.autoreset = state["obs"], state["mask"], state["autoreset"]
        self.skipped_updates = state["skipped_updates"]
        self.evaluations = list(state["evaluations"])
        self.first_solved_step = state["first_solved_step"]
        self.wall_seconds = state["wall_seconds"]
        restore_vector_env_state(self.envs, state["envs"])

    def summary(self) -> dict[str, Any]:
        """Final, best and mean evaluation, first solved step, env steps and wall time. The mean
        of the greedy evaluations (the area under the learning curve over its length) is what a
        hyperparameter search maximises: it rewards learning early and staying there."""
        final = self.evaluations[-1] if self.evaluations else (self.step, math.nan, math.nan)
        greedy = [e[1] for e in self.evaluations]
        return {
            "steps": self.step,
            "wall_seconds": self.wall_seconds,
            "final_eval_return_greedy": final[1],
            "final_eval_return_sampled": final[2],
            "best_eval_return_greedy": max(greedy, default=math.nan),
            "mean_eval_return_greedy": sum(greedy) / len(greedy) if greedy else math.nan,
            "first_solved_step": self.first_solved_step,
            "interrupted": self._stop_signal is not None,
        }
