"""`hydra/launcher=population`: the jobs of a multirun that can share a process train there together.

    rlgumbel-train -m schedule.start=0.5,1 seed=0,1,2,3 hydra/launcher=population
    rlgumbel-train -m +experiment=temperature_sweep hydra/launcher=population hydra.launcher.n_jobs=2

For each batch of jobs the sweeper hands over (a whole grid from the basic sweeper, a few trials
at a time from `hydra/sweeper=optuna`), the launcher works in two phases.

1. Every job is prepared as Hydra's basic launcher runs it: its config is composed, its run folder
   and `.hydra/` files are written, and the callbacks' `on_job_start` fires (rlgumbel's prints
   `[k/N] <overrides>`). Instead of training, the launcher records the job's config, folder and
   overrides.
2. The jobs are grouped (rlgumbel/population.py): jobs that differ only in seeds, temperature
   schedules and scalar hyperparameters of the learning rule form one population of at most
   `max_members` members, trained in one process by one call of
   `rlgumbel.cli.train.train_population(cfgs, run_dirs, overrides)`. With `n_jobs` > 1, up to
   `n_jobs` populations train at once, each in a worker process (joblib's loky backend).

The sweeper gets one JobReturn per job, in job order: completed with the run's objective (the
mean of its greedy evaluations), or failed with `RunFailed` and the member's one-line error. The
callbacks' `on_job_end` fires once a job's population has trained, with that result; so every
job's `on_job_start` comes before the first `on_job_end`.

Unlike the basic launcher, `hydra.job.chdir=true` does not move a job into its folder while it
trains (the members of a population share one process), and a population's training sees the
Hydra config (`HydraConfig.get()`) and `hydra.job.env_set` of its first member.

Settings (`PopulationLauncherConf`): `hydra.launcher.n_jobs`, `hydra.launcher.max_members`.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses look string annotations up.
import copy
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, env_override, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from rlgumbel.layout import FAILURE_FILE  # names only: the training code (torch) is imported when a batch launches

if TYPE_CHECKING:
    from rlgumbel.population import MemberOutcome

log = logging.getLogger(__name__)


@dataclass
class PopulationLauncherConf:
    """`hydra/launcher=population`; each key is `hydra.launcher.<key>` on the command line."""

    _target_: str = "hydra_plugins.rlgumbel_population_launcher.population_launcher.PopulationLauncher"
    # populations that train at once: above 1, each in a worker process of its own; 1 trains
    # them one after another in the launching process
    n_jobs: int = 1
    # most members (jobs) of one population, so of one process; a larger group is split into
    # nearly equal parts (40 jobs at 16: 14 + 13 + 13)
    max_members: int = 16


ConfigStore.instance().store(
    group="hydra/launcher", name="population", node=PopulationLauncherConf, provider="rlgumbel"
)


@dataclass
class Member:
    """What a population's trainer needs of one job: its task config, run folder and overrides."""

    cfg: DictConfig
    plain: dict[str, Any]  # `cfg` resolved into plain containers, for grouping
    run_dir: Path
    overrides: list[str]


@dataclass
class PreparedJob:
    """A job whose run folder Hydra has made; `member` is None when its config did not resolve."""

    sweep_config: DictConfig  # the job's config with its `hydra` node, as run_job left it
    job_return: JobReturn  # run_job's record of the job; its status and value are set after training
    member: Member | None


class _Capture:
    """A task function for `run_job` that records the job instead of training it."""

    def __init__(self) -> None:
        self.member: Member | None = None

    def __call__(self, cfg: DictConfig) -> None:
        hydra = HydraConfig.get()
        self.member = Member(
            cfg=copy.deepcopy(cfg),
            plain=OmegaConf.to_container(cfg, resolve=True),
            run_dir=Path(hydra.runtime.output_dir),
            overrides=list(hydra.overrides.task),
        )


class _JobEndDeferred:
    """The sweep's callbacks as `run_job` calls them: `on_job_start` goes through, with the real
    task function; `on_job_end` waits until the job's population has trained."""

    def __init__(self, callbacks: Any, task_function: TaskFunction) -> None:
        self.callbacks = callbacks
        self.task_function = task_function

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.callbacks.on_job_start(config=config, task_function=self.task_function)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        pass


class PopulationLauncher(Launcher):
    """Prepares every job of a batch like Hydra's basic launcher, then trains them by populations."""

    def __init__(self, n_jobs: int = 1, max_members: int = 16) -> None:
        if n_jobs < 1:
            raise ValueError(f"hydra.launcher.n_jobs must be >= 1, got {n_jobs}")
        if max_members < 1:
            raise ValueError(f"hydra.launcher.max_members must be >= 1, got {max_members}")
        self.n_jobs = n_jobs
        self.max_members = max_members
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Prepare the jobs, train them by populations, and return one JobReturn per job, in order.

        Args:
            job_overrides: each job's overrides.
            initial_job_idx: the number of the first job (sweepers that launch in batches count on).
        """
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Preparing {len(job_overrides)} jobs for populations of at most {self.max_members}")
        jobs = [self._prepare(initial_job_idx + offset, overrides) for offset, overrides in enumerate(job_overrides)]
        trainable = [job for job in jobs if job.member is not None]
        for job, result in zip(trainable, self._train(trainable)):
            _settle(job.job_return, result)
        for job in jobs:
            self._end(job)
        return [job.job_return for job in jobs]

    def _prepare(self, number: int, overrides: Sequence[str]) -> PreparedJob:
        """Phase 1 for one job: what the basic launcher does, with `_Capture` as the task."""
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = number
            sweep_config.hydra.job.num = number
        capture = _Capture()
        callbacks = _JobEndDeferred(self.hydra_context.callbacks, self.task_function)
        job_return = run_job(
            hydra_context=HydraContext(config_loader=self.hydra_context.config_loader, callbacks=callbacks),
            task_function=capture,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return PreparedJob(sweep_config, job_return, capture.member)

    def _train(self, jobs: list[PreparedJob]) -> list["MemberOutcome | Exception"]:
        """Phase 2: each job's `MemberOutcome`, or the exception its population's training raised."""
        from rlgumbel.population import group_jobs, resume_step

        members = [job.member for job in jobs]
        steps = [resume_step(member.cfg, member.run_dir) for member in members]
        groups = group_jobs([member.plain for member in members], steps, self.max_members)
        populations = [([members[i] for i in group], jobs[group[0]].sweep_config) for group in groups]
        for count, group in enumerate(groups, start=1):
            numbers = ", ".join(str(jobs[i].sweep_config.hydra.job.num) for i in group)
            log.info(f"Population {count}/{len(groups)}: jobs {numbers}")
        by_job = {}
        for group, outcomes in zip(groups, self._train_populations(populations)):
            by_job.update(zip(group, outcomes))
        return [by_job[index] for index in range(len(jobs))]

    def _train_populations(
        self, populations: list[tuple[list[Member], DictConfig]]
    ) -> list[list["MemberOutcome | Exception"]]:
        """Each population's outcomes; in worker processes when more than one trains at once."""
        trainer = population_trainer()
        workers = min(self.n_jobs, len(populations))
        if workers <= 1:
            return [train_one_population(trainer, members, config) for members, config in populations]
        from joblib import Parallel, delayed

        state = Singleton.get_state()
        run = delayed(train_one_population_in_worker)
        return Parallel(n_jobs=workers, backend="loky")(
            run(trainer, members, config, state) for members, config in populations
        )

    def _end(self, job: PreparedJob) -> None:
        """The `on_job_end` that `run_job` held back, with the job's result."""
        assert self.hydra_context is not None
        previous = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(job.sweep_config)
        try:
            self.hydra_context.callbacks.on_job_end(config=job.sweep_config, job_return=job.job_return)
        finally:
            HydraConfig.instance().cfg = previous


def population_trainer() -> Callable[..., Sequence["MemberOutcome"]]:
    """`rlgumbel.cli.train.train_population`, looked up when a batch launches (a test replaces it
    with a fake by setting that module attribute)."""
    from rlgumbel.cli import train

    return train.train_population


def train_one_population(
    trainer: Callable[..., Sequence["MemberOutcome"]], members: list[Member], sweep_config: DictConfig
) -> list["MemberOutcome | Exception"]:
    """`trainer(cfgs, run_dirs, overrides)` for one population, under the Hydra config and
    `hydra.job.env_set` of its first job (`sweep_config`).

    Returns:
        One `MemberOutcome` per member, in order; if `trainer` raised, that exception for every
        member, its traceback written to each member's failure file that does not exist yet.
    """
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(sweep_config)
    try:
        with env_override(sweep_config.hydra.job.env_set):
            outcomes = list(
                trainer([m.cfg for m in members], [m.run_dir for m in members], [m.overrides for m in members])
            )
        if len(outcomes) != len(members):
            raise RuntimeError(f"train_population returned {len(outcomes)} outcomes for {len(members)} members")
        return outcomes
    except Exception as error:
        _record_crash(members, traceback.format_exc())
        return [error] * len(members)
    finally:
        HydraConfig.instance().cfg = previous


def train_one_population_in_worker(
    trainer: Callable[..., Sequence["MemberOutcome"]],
    members: list[Member],
    sweep_config: DictConfig,
    singleton_state: dict[str, Any],
) -> list["MemberOutcome | Exception"]:
    """`train_one_population` in a worker process, after restoring the launching process's Hydra
    singletons (config store, job runtime, resolvers) as Hydra's joblib launcher does."""
    setup_globals()
    Singleton.set_state(singleton_state)
    return train_one_population(trainer, members, sweep_config)


def _record_crash(members: list[Member], text: str) -> None:
    for member in members:
        failure = member.run_dir / FAILURE_FILE
        if member.run_dir.is_dir() and not failure.exists():
            failure.write_text(text)


def _settle(job_return: JobReturn, result: "MemberOutcome | Exception") -> None:
    """Set a prepared job's status and value from its population's result for it."""
    if isinstance(result, Exception):
        job_return.status, job_return.return_value = JobStatus.FAILED, result
    elif result.error is not None:
        from rlgumbel.cli.train import RunFailed

        job_return.status, job_return.return_value = JobStatus.FAILED, RunFailed(result.error)
    else:
        job_return.status, job_return.return_value = JobStatus.COMPLETED, result.value
