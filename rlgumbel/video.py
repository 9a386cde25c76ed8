"""Episode videos: the frames of one episode of the agent, as an mp4 file (moviepy) or a GIF (Pillow)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

from rlgumbel.agents import ActorCritic
from rlgumbel.envs import action_mask, env_actions, env_shape
from rlgumbel.selectors import policy_action

# pygame (the classic-control and Box2D renderers) draws off-screen; without a display it would
# warn about one on every render
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

RENDER_KWARGS = {"render_mode": "rgb_array"}


def record_episode(
    agent: ActorCritic,
    envs: gym.vector.VectorEnv,
    seed: int,
    greedy: bool,
    generator: torch.Generator,
    temperature: float = 1.0,
    member: int = 0,
) -> tuple[list[np.ndarray], float]:
    """The frames ([H, W, 3] uint8, the start state's first: episode length + 1 of them) and the
    return of one episode of the agent's member `member` in the only copy of `envs`, which renders
    `rgb_array` (`RENDER_KWARGS`); actions as in `rlgumbel.trainer.evaluate`."""
    obs, info = envs.reset(seed=seed)
    frames, total = [video_frame(envs.render()[0])], 0.0
    num_actions = env_shape(envs).num_actions
    while True:
        observation = torch.as_tensor(obs, dtype=torch.float32)
        logits = agent.member_logits(member, observation, action_mask(info, 1, num_actions))
        action = policy_action(logits, greedy, temperature, generator)
        obs, reward, terminated, truncated, info = envs.step(env_actions(action, envs))
        total += float(reward[0])
        frames.append(video_frame(envs.render()[0]))  # the copy resets only on the next step: this shows where it ended
        if terminated[0] or truncated[0]:
            return frames, total


def check_renders(envs: gym.vector.VectorEnv, context: str) -> None:
    """Raise `ConfigError` (naming `context`) unless `envs` (made with `RENDER_KWARGS`) renders
    `rgb_array` frames here: some envs render only to a window (lbforaging, rware: pyglet)."""
    from rlgumbel.schema import ConfigError

    try:
        envs.reset()
        frames = envs.render()
    except Exception as error:  # each env fails its own way (no display, no rgb_array mode)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{context} renders no rgb_array frames here ({type(error).__name__}: {reason})") from None
    if frames is None or frames[0] is None or np.asarray(frames[0]).ndim != 3:
        raise ConfigError(f"{context} renders no rgb_array frames (it gave {type(frames).__name__})")


MIN_SIDE = 160  # pixels: smaller renders (MinAtar's 10x10) are enlarged by whole-number factors


def video_frame(frame: np.ndarray) -> np.ndarray:
    """A rendered frame as [H, W, 3] uint8 of at least `MIN_SIDE` pixels a side: float renders
    (values in [0, 1], as MinAtar's) are scaled to 0-255, small ones repeated pixel by pixel."""
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0.0, 1.0) * 255).round().astype(np.uint8)
    factor = -(-MIN_SIDE // min(frame.shape[:2]))
    return frame.repeat(factor, 0).repeat(factor, 1) if factor > 1 else frame


def write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """`frames` as an H.264 mp4 at `fps` frames per second."""
    from moviepy.video.io.ImageSequenceClip import ImageSequenceClip  # slow to import: only here

    path.parent.mkdir(parents=True, exist_ok=True)
    ImageSequenceClip(list(frames), fps=fps).write_videofile(str(path), logger=None, audio=False)
    return path


def gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    """`frames` as an animated GIF (what TensorBoard's Images dashboard plays)."""
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    duration_ms = round(1000 / fps)
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


def render_fps(envs: gym.vector.VectorEnv) -> float:
    """The env's own frame rate (`metadata["render_fps"]`), 30 if it states none."""
    return float(envs.metadata.get("render_fps") or 30)
