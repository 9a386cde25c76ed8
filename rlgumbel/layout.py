"""The names every module agrees on: a run folder's parts, shared TensorBoard tags, config key sets."""

# A run folder (Hydra's output folder of one job) holds:
HYDRA_DIR = ".hydra"  # Hydra's own files
CONFIG_FILE = f"{HYDRA_DIR}/config.yaml"  # the resolved config the run was started with
TB_DIR = "tb"  # the event files
CHECKPOINT_DIR = "checkpoints"
FAILURE_FILE = "error.txt"  # written by rlgumbel-train into the folder of a run that failed
SUMMARY_FILE = "summary.json"  # final, best and mean evaluations of a run that ended (Trainer.summary)
EVALUATION_FILE = "evaluation.json"  # written by rlgumbel-evaluate
VIDEO_DIR = "videos"  # mp4 files of rlgumbel-evaluate --video

# Scalar tags the trainer writes and other modules read.
EVAL_RETURN_GREEDY = "charts/eval_return_greedy"
EVAL_RETURN_SAMPLED = "charts/eval_return_sampled"
EPISODIC_RETURN = "charts/episodic_return"
TEMPERATURE = "policy/temperature"
EPSILON = "policy/epsilon"
ENTROPY = "policy/entropy"
WALL_SECONDS = "perf/wall_seconds"
EVAL_VIDEO = "videos/eval_greedy"  # an image summary holding an animated GIF

# Config keys that say how a run is started and displayed, never what it computes.
_BOOKKEEPING_KEYS = frozenset({"resume", "trainer.progress"})
# Two sets, as resuming and grouping ignore different keys: a resumed run may extend its budget
# (trainer.total_steps, which splits groups) but must keep its seed (which does not).
# Keys a resumed run may change from the config it was started with:
RESUME_FREE_KEYS = _BOOKKEEPING_KEYS | {"trainer.total_steps"}
# Keys that never split runs into groups (the seeds of one experiment differ only in these):
RUN_MANAGEMENT_KEYS = _BOOKKEEPING_KEYS | {"seed", "device", "num_threads", "experiment_name"}
