"""Sweeps: the experiment presets expand to the grids they promise, and a multirun through the real
CLI gives one run folder per job (event file, .hydra/config.yaml, distinct name) with each launcher:
joblib (parallel worker processes, single-threaded torch), submitit_local, and SLURM up to the
sbatch script it submits."""

from __future__ import annotations

import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import pytest
from conftest import CONFIG_DIR, TINY, TRAIN_SCRIPT
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rlgumbel.checkpoint import list_checkpoints
from rlgumbel.config import build_trainer, register_with_hydra
from rlgumbel.names import option_name
from rlgumbel.report import COMPLETED, read_events

SEEDS = set(range(5))
# A 2×2 grid through the CLI: two selectors × two seeds, four runs.
GRID = ["selector=argmax,gumbel_softmax", "seed=0,1"]
GRID_RUNS = {
    "argmax_exponential_T1.0_seed0_job0",
    "argmax_exponential_T1.0_seed1_job1",
    "gumbel_softmax_exponential_T1.0_seed0_job2",
    "gumbel_softmax_exponential_T1.0_seed1_job3",
}


# --------------------------------------------------------------------------- presets


@dataclass
class Job:
    """One job of an expanded sweep: its overrides, its composed config and its run folder name."""

    overrides: list[str]
    cfg: DictConfig
    name: str


def expand_sweep(*overrides: str) -> list[Job]:
    """The jobs `rlgumbel-train -m *overrides` would launch, in launch order: the sweeper params of
    the composed config plus the command line, expanded by Hydra's own basic sweeper; each job is
    composed as the launcher would compose it and its `hydra.sweep.subdir` resolved."""
    register_with_hydra()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        parser = OverridesParser.create()
        fixed = [o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_sweep_override()]
        root = compose("train", overrides=fixed, return_hydra_config=True)
        params = [f"{key}={value}" for key, value in (root.hydra.sweeper.params or {}).items()]
        parsed = parser.parse_overrides([*params, *overrides])
        [batch] = BasicSweeper.split_arguments(parsed, max_batch_size=None)
        jobs = []
        try:
            for number, job_overrides in enumerate(batch):
                cfg = compose("train", overrides=job_overrides, return_hydra_config=True)
                cfg.hydra.job.num = number
                HydraConfig.instance().set_config(cfg)  # `${hydra:...}` in the subdir reads it
                jobs.append(Job(job_overrides, cfg, str(cfg.hydra.sweep.subdir)))
        finally:
            HydraConfig.instance().cfg = None
    return jobs


def _arms(jobs: list[Job], arm) -> dict:
    """arm value → seeds of the jobs with that value."""
    seeds: dict = {}
    for job in jobs:
        seeds.setdefault(arm(job.cfg), set()).add(job.cfg.seed)
    return seeds


def _check_common(jobs: list[Job], experiment: str, count: int) -> None:
    assert len(jobs) == count
    assert len({job.name for job in jobs}) == count  # one folder per run
    assert {job.cfg.experiment_name for job in jobs} == {experiment}
    assert all(str(job.cfg.hydra.sweep.dir).startswith(f"runs/{experiment}/") for job in jobs)


def _builds(cfg: DictConfig, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        tiny = compose("train", overrides=[*cfg.hydra.overrides.task, *TINY])
    trainer = build_trainer(tiny, tmp_path)
    trainer.members[0].logger.close(None)


def test_compare_selectors_is_four_selector_variants_by_five_seeds(tmp_path: Path):
    jobs = expand_sweep("+experiment=compare_selectors")
    _check_common(jobs, "compare_selectors", 20)
    seeds = _arms(jobs, lambda cfg: (option_name(cfg.selector._target_), cfg.selector.get("hard")))
    assert seeds == {
        ("argmax", None): SEEDS,
        ("sample", None): SEEDS,
        ("gumbel_softmax", False): SEEDS,
        ("gumbel_softmax", True): SEEDS,
    }
    assert {job.name.split("_exponential")[0] for job in jobs} == {
        "argmax",
        "sample",
        "gumbel_softmax",
        "gumbel_softmax-hard",
    }
    for job in jobs[::5]:  # one job of each arm builds
        _builds(job.cfg, tmp_path / job.name)


def test_temperature_sweep_is_a_log_grid_of_constant_temperatures(tmp_path: Path):
    jobs = expand_sweep("+experiment=temperature_sweep")
    _check_common(jobs, "temperature_sweep", 30)
    assert {(option_name(job.cfg.selector._target_), job.cfg.selector.hard) for job in jobs} == {
        ("gumbel_softmax", False)
    }
    assert {option_name(job.cfg.schedule._target_) for job in jobs} == {"constant"}
    seeds = _arms(jobs, lambda cfg: cfg.schedule.start)
    assert sorted(seeds) == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0] and all(s == SEEDS for s in seeds.values())
    ratios = {b / a for a, b in zip(sorted(seeds), sorted(seeds)[1:])}
    assert ratios == {2.0}  # evenly spaced in log τ
    _builds(jobs[0].cfg, tmp_path)


def test_annealing_schedules_share_start_end_and_horizon(tmp_path: Path):
    jobs = expand_sweep("+experiment=annealing")
    _check_common(jobs, "annealing", 20)
    seeds = _arms(jobs, lambda cfg: option_name(cfg.schedule._target_))
    assert seeds == dict.fromkeys(["constant", "linear", "exponential", "cosine"], SEEDS)
    for job in jobs[::5]:
        schedule = instantiate(job.cfg.schedule)
        assert schedule(0) == 1.0
        if option_name(job.cfg.schedule._target_) == "constant":
            assert schedule(30_000) == 1.0
        else:  # every decaying schedule reaches 0.1 at env step 30,000, not before
            assert schedule(29_000) > 0.1 + 1e-3 and math.isclose(schedule(30_000), 0.1, rel_tol=1e-9)
        _builds(job.cfg, tmp_path / job.name)


def test_presets_keep_env_and_command_line_values():
    # the env preset keeps its own budget; a command-line value replaces a sweep axis
    jobs = expand_sweep("+experiment=compare_selectors", "env=acrobot", "seed=0")
    assert len(jobs) == 4
    assert {(job.cfg.env.id, job.cfg.trainer.total_steps) for job in jobs} == {("Acrobot-v1", 100_000)}
    jobs = expand_sweep("+experiment=temperature_sweep", "schedule.start=0.5,1.0", "seed=3", "selector.hard=true")
    assert [job.name for job in jobs] == [
        "gumbel_softmax-hard_constant_T0.5_seed3_job0",
        "gumbel_softmax-hard_constant_T1.0_seed3_job1",
    ]


def test_slurm_launcher_needs_a_partition_and_asks_one_core_per_thread(monkeypatch):
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    register_with_hydra()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "num_threads=2"],
            return_hydra_config=True,
        )
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        assert launcher["_target_"].endswith("SlurmLauncher")
        assert (launcher["partition"], launcher["cpus_per_task"]) == ("gpu", 2)
        assert launcher["additional_parameters"]["signal"] == f"TERM@{launcher['signal_delay_s']}"
        unset = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
        with pytest.raises(Exception, match="SBATCH_PARTITION"):
            OmegaConf.to_container(unset.hydra.launcher, resolve=True)
        monkeypatch.setenv("SBATCH_PARTITION", "cpu")
        assert OmegaConf.to_container(unset.hydra.launcher, resolve=True)["partition"] == "cpu"


# --------------------------------------------------------------------------- multiruns through the CLI


def multirun(cwd: Path, *args: str, timeout: float = 300) -> tuple[int, subprocess.CompletedProcess]:
    """`rlgumbel-train -m *args` as a subprocess; returns its pid and its completed process."""
    process = subprocess.Popen(
        [str(TRAIN_SCRIPT), "-m", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.pid, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def check_runs(sweep: Path, names: set[str]) -> dict[str, int]:
    """Assert that `sweep` holds exactly the run folders `names`, each a completed run with one
    event file and its resolved config; returns each run's process id (from its event file name)."""
    runs = {p.name: p for p in sweep.iterdir() if (p / ".hydra" / "config.yaml").is_file()}
    assert set(runs) == names
    pids = {}
    for name, run in runs.items():
        config = OmegaConf.load(run / ".hydra" / "config.yaml")
        assert name.startswith(f"{option_name(config.selector._target_)}_") and f"_seed{config.seed}_" in name
        [event_file] = (run / "tb").iterdir()
        assert event_file.name.startswith("events.out.tfevents.")
        assert read_events(run / "tb").status == COMPLETED
        assert list_checkpoints(run / "checkpoints")
        pids[name] = int(event_file.name.split(".")[-2])  # events.out.tfevents.<time>.<host>.<pid>.<n>
    return pids


def test_joblib_runs_the_sweep_in_parallel_worker_processes(tmp_path: Path):
    sweep = tmp_path / "sweep"
    pid, result = multirun(tmp_path, *GRID, *TINY, "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    pids = check_runs(sweep, GRID_RUNS)
    assert pid not in pids.values()
    # n_jobs=-1 (the plugin's default): one worker per core, so the jobs spread over the cores
    assert len(set(pids.values())) >= min(2, joblib.cpu_count())


def test_torch_is_single_threaded_inside_joblib_workers(tmp_path: Path):
    app = tmp_path / "threads_app.py"
    app.write_text(
        textwrap.dedent("""
        import os
        from pathlib import Path

        import hydra
        import torch
        from hydra.core.hydra_config import HydraConfig

        from rlgumbel.cli.train import CONFIG_DIR
        from rlgumbel.config import build_trainer

        @hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
        def main(cfg):
            run_dir = Path(HydraConfig.get().runtime.output_dir)
            build_trainer(cfg, run_dir).members[0].logger.close(None)
            (run_dir / "threads.txt").write_text(f"{os.getpid()} {torch.get_num_threads()}")

        if __name__ == "__main__":
            main()
    """)
    )
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, str(app), "-m", "seed=0,1", *TINY, "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    reports = [path.read_text().split() for path in sorted(sweep.glob("*/threads.txt"))]
    assert len(reports) == 2 and all(threads == "1" for _, threads in reports)
    assert all(int(pid) != os.getpid() for pid, _ in reports)


def test_submitit_local_runs_each_job_in_its_own_process(tmp_path: Path):
    sweep = tmp_path / "sweep"
    pid, result = multirun(tmp_path, *GRID, *TINY, "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    pids = check_runs(sweep, GRID_RUNS)
    assert len(set(pids.values())) == 4 and pid not in pids.values()
    assert (sweep / ".submitit").is_dir()  # submitit's own logs and pickles, beside the runs


def _fake_slurm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH with stand-ins for `sbatch` (copies the script it is given and reports job 4242) and
    `srun` (only looked up by submitit); the environment to run the CLI with and the copy's path."""
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sbatch"
    bin_dir.mkdir()
    for name, body in {
        "sbatch": f'cp "$1" {script}\necho "Submitted batch job 4242"\n',
        "srun": "exit 1\n",
        "sacct": "echo 'JobID|State|NodeList'\n",
    }.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SBATCH_PARTITION", None)
    return env, script


def test_slurm_sweep_submits_one_array_job_with_partition_time_and_cpus(tmp_path: Path):
    env, script = _fake_slurm(tmp_path)
    command = [str(TRAIN_SCRIPT), "-m", *GRID, *TINY, "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}"]

    missing = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "SBATCH_PARTITION" in missing.stderr.strip().splitlines()[-1]
    assert not script.exists()  # nothing was submitted

    # After submitting, the launcher waits for the jobs; the script is all this test needs.
    process = subprocess.Popen(
        [*command, "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=30"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not script.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)  # let `cp` finish writing
        text = script.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    flags = {
        line.split("=")[0][len("#SBATCH ") :]: line.partition("=")[2]
        for line in text.splitlines()
        if line.startswith("#SBATCH")
    }
    assert flags["--partition"] == "debug" and flags["--time"] == "30"
    assert flags["--cpus-per-task"] == "1" and flags["--signal"] == "TERM@120"
    assert flags["--array"] == "0-3%4"  # the four runs as one array job
    assert "submitit.core._submit" in text


# --------------------------------------------------------------------------- interrupting a sweep


@pytest.mark.slow
def test_ctrl_c_on_a_joblib_sweep_checkpoints_every_run_and_resume_true_finishes_them(tmp_path: Path):
    sweep = tmp_path / "sweep"
    budget = [
        "trainer.total_steps=6000",
        "trainer.learning_starts=200",
        "trainer.eval_every=2000",
        "trainer.eval_episodes=2",
        "trainer.log_every=500",
        "trainer.checkpoint_every=500",
        "trainer.batch_size=32",
        "trainer.progress=false",
    ]
    sweep_args = ["seed=0,1", *budget, "hydra/launcher=joblib", f"hydra.sweep.dir={sweep}"]
    # its own process group, as a terminal's Ctrl-C signals the whole foreground group
    process = subprocess.Popen(
        [str(TRAIN_SCRIPT), "-m", *sweep_args],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len({p.parent.parent for p in sweep.glob("*/checkpoints/*.pt")}) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode != 0
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        assert f"rlgumbel-train resume={run}" in stderr
        assert list_checkpoints(run / "checkpoints")[-1].name != "step_000000006000.pt"

    # the same sweep again with resume=true: each job continues its own folder
    resumed = subprocess.run(
        [str(TRAIN_SCRIPT), "-m", *sweep_args, "resume=true"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("resuming ") == 2
    for run in runs:
        assert list_checkpoints(run / "checkpoints")[-1].name == "step_000000006000.pt"
        assert read_events(run / "tb").status == COMPLETED
