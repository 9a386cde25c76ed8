"""TensorBoard logging: scalars, the resolved config, a custom-scalars layout, and HParams
written into the run's own event file."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from rlgumbel.hparams import HParamValue, columns_to_show_in_this_run
from rlgumbel.layout import (
    ENTROPY,
    EPISODIC_RETURN,
    EPSILON,
    EVAL_RETURN_GREEDY,
    EVAL_RETURN_SAMPLED,
    TEMPERATURE,
)

# Scalars that the HParams dashboard shows for each run (their last value).
HPARAM_METRICS = (EVAL_RETURN_GREEDY, EVAL_RETURN_SAMPLED, EPISODIC_RETURN)

LAYOUT = {
    "evaluation": {
        "eval return (greedy vs sampled)": ["Multiline", [EVAL_RETURN_GREEDY, EVAL_RETURN_SAMPLED]],
        "training episodes": ["Multiline", [EPISODIC_RETURN]],
    },
    "policy": {
        "temperature and epsilon": ["Multiline", [TEMPERATURE, EPSILON]],
        "entropy": ["Multiline", [ENTROPY]],
    },
}

STATUS = {"success": api_pb2.STATUS_SUCCESS, "failure": api_pb2.STATUS_FAILURE, "running": api_pb2.STATUS_RUNNING}


def _session_end(status: str) -> Summary:
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=STATUS[status]), version=PLUGIN_DATA_VERSION)
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content.SerializeToString())
    )
    return Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=metadata)])


def _flag_differs(experiment: Summary, names: Collection[str]) -> Summary:
    """`experiment`, an HParams experiment summary, with `differs` set on the hparams `names`
    and cleared on the others: the HParams dashboard ticks the first five columns after moving
    the flagged ones to the top (see `rlgumbel.hparams`)."""
    value = experiment.value[0]
    content = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in content.experiment.hparam_infos:
        info.differs = info.name in names
    value.metadata.plugin_data.content = content.SerializeToString()
    return experiment


class Logger:
    """Writes one run's event files under `log_dir`; the x-axis is always env steps.

    Args:
        log_dir: the run's `tb/` folder.
        hparams: the run's hyperparameters, one fixed key set for every run of a sweep. The
            HParams dashboard opens on the columns the run's Hydra multirun sweeps, then on the
            selector, schedule and temperatures (`rlgumbel.hparams.columns_to_show`).
        config_text: the resolved config as YAML, shown in the Text dashboard.
        purge_step: when resuming from a checkpoint at step k, k + 1: events the interrupted
            run wrote after its checkpoint are hidden by TensorBoard, so curves do not double
            back (those at step k were written before the checkpoint and are kept).
    """

    def __init__(
        self, log_dir: Path, hparams: Mapping[str, HParamValue], config_text: str, purge_step: int | None = None
    ) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step, flush_secs=30)
        if purge_step is None:
            experiment, session_start, _ = hparams_summaries(dict(hparams), dict.fromkeys(HPARAM_METRICS, 0.0))
            self.writer.file_writer.add_summary(_flag_differs(experiment, columns_to_show_in_this_run(hparams)))
            self.writer.file_writer.add_summary(session_start)
            self.writer.add_text("config", f"```yaml\n{config_text}\n```", 0)
            self.writer.add_custom_scalars(LAYOUT)
        self.closed = False

    def scalars(self, metrics: Mapping[str, float | Tensor], step: int) -> None:
        """Write each metric under its tag at env step `step`."""
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, float(value), step)

    def video(self, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
        """An animated GIF (`rlgumbel.video.gif_bytes`) under `tag`, shown in the Images dashboard."""
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, status: str | None) -> None:
        """Mark the HParams session `status` ("success", "failure"; None leaves it open, as
        for an interrupted run that will be resumed), flush and close. Idempotent."""
        if self.closed:
            return
        if status is not None:
            self.writer.file_writer.add_summary(_session_end(status))
        self.writer.close()
        self.closed = True
