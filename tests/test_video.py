"""Episode videos: rlgumbel-evaluate --video writes mp4 files, trainer.video_every GIFs in TensorBoard."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import pytest
from conftest import TINY
from PIL import Image

from rlgumbel import layout
from rlgumbel.cli.evaluate import main as evaluate_main

CARTPOLE_FRAME = (400, 600, 3)  # CartPole-v1's rgb_array frames: height, width, channels


@pytest.fixture(scope="module")
def filmed_run(tmp_path_factory) -> Path:
    """A tiny CartPole run that puts a greedy episode's video into TensorBoard at steps 200 and 400."""
    run_dir = tmp_path_factory.mktemp("video") / "run"
    command = [sys.executable, "-m", "rlgumbel.cli.train", *TINY, "trainer.video_every=200", f"hydra.run.dir={run_dir}"]
    subprocess.run(command, check=True, capture_output=True, cwd=run_dir.parent)
    return run_dir


def _gifs(run_dir: Path) -> list[tuple[int, Image.Image]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / layout.TB_DIR), size_guidance={"images": 0})
    accumulator.Reload()
    if layout.EVAL_VIDEO not in accumulator.Tags()["images"]:
        return []
    return [(e.step, Image.open(io.BytesIO(e.encoded_image_string))) for e in accumulator.Images(layout.EVAL_VIDEO)]


def test_evaluate_writes_an_mp4_per_policy_with_one_frame_per_step_and_one_at_the_start(filmed_run, capsys):
    assert evaluate_main([str(filmed_run), "--video", "--episodes", "2", "--temperature", "0.5"]) == 0
    videos = json.loads((filmed_run / layout.EVALUATION_FILE).read_text())["videos"]
    assert set(videos) == {"greedy", "sampled", "sampled T=0.5"}
    for name, video in videos.items():
        reader = imageio.get_reader(video["path"], "ffmpeg")
        frames = list(reader.iter_data())  # (the reader itself claims an infinite length)
        reader.close()
        # CartPole pays 1 per step: an episode of `return` steps has return + 1 frames
        assert len(frames) == video["frames"] == int(video["return"]) + 1, name
        assert all(frame.shape == CARTPOLE_FRAME for frame in frames)
    assert Path(videos["greedy"]["path"]).parent == filmed_run / layout.VIDEO_DIR
    assert "video of greedy" in capsys.readouterr().out


def test_training_puts_a_greedy_episode_into_tensorboard_every_video_every_steps(filmed_run, capsys):
    gifs = _gifs(filmed_run)
    assert [step for step, _ in gifs] == [200, 400]
    for _, gif in gifs:
        assert gif.format == "GIF" and gif.size == (CARTPOLE_FRAME[1], CARTPOLE_FRAME[0])
        assert gif.n_frames >= 2
    # the last one is the final agent's greedy episode from the evaluation's first start state:
    # the same episode rlgumbel-evaluate films from the final checkpoint
    assert evaluate_main([str(filmed_run), "--video", "--episodes", "1", "--out", str(filmed_run / "e.json")]) == 0
    video = json.loads((filmed_run / "e.json").read_text())["videos"]["greedy"]
    # Pillow merges identical consecutive frames into one of summed duration: count the time, at
    # CartPole's 50 frames per second (20 ms each)
    assert _duration_ms(gifs[-1][1]) == 20 * video["frames"]


def _duration_ms(gif: Image.Image) -> int:
    total = 0
    for index in range(gif.n_frames):
        gif.seek(index)
        total += gif.info["duration"]
    return total


def test_no_videos_unless_asked(tmp_path: Path):
    run_dir = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "rlgumbel.cli.train", *TINY, f"hydra.run.dir={run_dir}"],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    assert _gifs(run_dir) == [] and not (run_dir / layout.VIDEO_DIR).exists()


def test_minatar_renders_become_uint8_frames_large_enough_to_watch(make_agent):
    from rlgumbel.envs import env_shape, make_vector_env
    from rlgumbel.selectors import GumbelSoftmaxSelector
    from rlgumbel.video import RENDER_KWARGS, record_episode

    envs = make_vector_env("MinAtar/Breakout-v1", 1, {"max_episode_steps": 30, **RENDER_KWARGS})
    shape = env_shape(envs)
    agent = make_agent(shape.obs_shape, shape.num_actions, GumbelSoftmaxSelector(hard=False), encoder="cnn")
    frames, _ = record_episode(agent, envs, 0, True, None)
    assert 2 <= len(frames) <= 31
    assert all(f.dtype == "uint8" and f.shape == (160, 160, 3) for f in frames)  # 10x10 cells, 16 pixels each
    assert len({f.tobytes() for f in frames}) > 1  # the ball moves
