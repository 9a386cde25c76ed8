"""Tests of the sweep report (rlgumbel.report, rlgumbel-report).

Synthetic run folders are written the way a real run writes them: a `.hydra/config.yaml`
and an event file from `rlgumbel.logger.Logger` (HParams session start, scalars, session end
or none), with known eval returns, so that every statistic can be computed by hand.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from rlgumbel import report
from rlgumbel.cli import report as report_cli
from rlgumbel.logger import Logger

METRIC = "charts/eval_return_greedy"
BIN = Path(sys.executable).parent
TARGETS = {
    "argmax": "rlgumbel.selectors.ArgmaxSelector",
    "sample": "rlgumbel.selectors.SampleSelector",
    "gumbel_softmax": "rlgumbel.selectors.GumbelSoftmaxSelector",
}


def run_config(
    seed: int = 0,
    selector: str = "gumbel_softmax",
    hard: bool = False,
    temperature: float = 1.0,
    end: float | None = None,
    env: str = "CartPole-v1",
    solved_return: float = 475.0,
    entropy_coef: float = 0.0,
    **management: Any,
) -> dict[str, Any]:
    """A minimal resolved config; `end` given: an exponential schedule, else a constant one."""
    selector_node: dict[str, Any] = {"_target_": TARGETS[selector]}
    if selector == "gumbel_softmax":
        selector_node["hard"] = hard
    if selector == "argmax":
        selector_node["epsilon"] = {"_target_": "rlgumbel.schedules.LinearSchedule", "start": 1.0, "end": 0.05}
    schedule: dict[str, Any] = {"_target_": "rlgumbel.schedules.ConstantSchedule", "start": temperature}
    if end is not None:
        schedule = {
            "_target_": "rlgumbel.schedules.ExponentialSchedule",
            "start": temperature,
            "end": end,
            "rate": 1e-4,
        }
    return {
        "experiment_name": "test",
        "seed": seed,
        "device": "cpu",
        "num_threads": 1,
        "resume": None,
        "trainer": {"total_steps": 2000, "eval_every": 500, "progress": True},
        "selector": selector_node,
        "schedule": schedule,
        "agent": {"entropy_coef": entropy_coef},
        "env": {"id": env, "num_envs": 1, "solved_return": solved_return},
        **management,
    }


def write_run(
    run_dir: Path,
    config: dict[str, Any],
    evals: dict[int, float],
    status: str | None = "success",
    purge_step: int | None = None,
) -> Path:
    """A run folder: its config and an event session with greedy eval returns `evals` {step: value}.

    Args:
        status: "success", "failure", or None for a session that never ended (killed).
        purge_step: write a resumed session (a second event file) continuing from this step.
    """
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    logger = Logger(run_dir / "tb", {"seed": config["seed"]}, yaml.safe_dump(config), purge_step=purge_step)
    for step, value in evals.items():
        logger.scalars({METRIC: value, "charts/eval_return_sampled": value / 2}, step)
    logger.close(status)
    return run_dir


def curve(final: float, reached_at: int | None = None, level: float = 475.0) -> dict[int, float]:
    """Evals at 500..2000: below `level` until `reached_at` (exactly `level` there), `final` at 2000."""
    evals = dict.fromkeys((500, 1000, 1500), 10.0)
    if reached_at is not None and reached_at < 2000:
        evals[reached_at] = level
    evals[2000] = final if reached_at is None or reached_at < 2000 else max(final, level)
    return evals


def iqm_ci(values: np.ndarray) -> tuple[float, float]:
    """What the report must reproduce: scipy's percentile bootstrap with seed 0, by hand."""
    result = stats.bootstrap(
        (values,),
        lambda x, axis: stats.trim_mean(x, 0.25, axis=axis),
        n_resamples=9999,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    return result.confidence_interval.low, result.confidence_interval.high


@pytest.fixture
def five_seeds(tmp_path: Path) -> Path:
    """One group of five seeds with finals 100, 200, 600, 700, 1000, first reaching 475 at
    env steps never, 1000, 1500, 2000, 500."""
    sweep = tmp_path / "sweep"
    finals = [100.0, 200.0, 600.0, 700.0, 1000.0]
    reached = [None, 1000, 1500, 2000, 500]
    for seed, (final, at) in enumerate(zip(finals, reached)):
        write_run(sweep / f"seed{seed}", run_config(seed), curve(final, at))
    return sweep


def only_summary(result: report.Report) -> report.GroupSummary:
    (summaries,) = result.summaries.values()
    (summary,) = summaries
    return summary


def table_row(markdown: str, ident: str) -> list[str]:
    """The cells of the summary-table row whose id is `ident`."""
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] == ident and len(cells) == 8:
            return cells
    raise AssertionError(f"no row {ident} in\n{markdown}")


def test_final_return_iqm_and_ci(five_seeds: Path) -> None:
    summary = only_summary(report.write_report(five_seeds))
    finals = np.array([100.0, 200.0, 600.0, 700.0, 1000.0])
    # trim_mean(x, 0.25) of 5 values drops int(0.25 * 5) = 1 from each end: mean(200, 600, 700).
    assert summary.iqm == 500.0
    assert summary.mean == 520.0
    np.testing.assert_array_equal(np.sort(summary.finals), finals)
    low, high = iqm_ci(finals)
    assert (summary.ci_low, summary.ci_high) == (low, high)
    assert summary.ci_low <= summary.iqm <= summary.ci_high


def test_steps_to_threshold_default_is_solved_return(five_seeds: Path) -> None:
    result = report.write_report(five_seeds)
    summary = only_summary(result)
    # Reached never, at 1000, 1500, 2000, 500: sorted 500, 1000, 1500, 2000, ∞ → median 1500.
    assert sorted(summary.steps, key=lambda s: float("inf") if s is None else s) == [500, 1000, 1500, 2000, None]
    assert summary.median_steps == 1500
    assert table_row(result.markdown, "G1")[5] == "1,500 (4/5 reached)"
    assert table_row(result.markdown, "G1")[4].startswith("500.0 [")
    assert "median env steps to ≥ 475" in result.markdown


def test_steps_to_threshold_given_threshold(five_seeds: Path, tmp_path: Path) -> None:
    # Every curve starts at 10 (step 500): with threshold 10 all seeds reach it at step 500.
    summary = only_summary(report.write_report(five_seeds, tmp_path / "low", threshold=10.0))
    assert summary.steps == [500] * 5 and summary.median_steps == 500
    # Above every value: nobody reaches it.
    result = report.write_report(five_seeds, tmp_path / "high", threshold=5000.0)
    assert table_row(result.markdown, "G1")[5] == "not reached (0/5 reached)"


def test_median_steps_counts_unreached_as_infinite() -> None:
    assert report.median_steps([1000, 3000, 5000, None]) == 4000
    assert report.median_steps([1000, None]) == float("inf")
    assert report.median_steps([None, None, 7]) == float("inf")
    series = report.Series(np.array([1, 2, 3]), np.array([0.0, 5.0, 4.0]))
    assert report.steps_to_threshold(series, 5.0) == 2
    assert report.steps_to_threshold(series, 5.5) is None


def test_groups_split_by_config_but_not_by_seed_or_run_management(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    variants = [
        {"selector": "argmax"},
        {"selector": "gumbel_softmax", "hard": False},
        {"selector": "gumbel_softmax", "hard": True},
        {"selector": "gumbel_softmax", "temperature": 0.5},
        {"selector": "sample", "entropy_coef": 0.01},
        {"selector": "sample", "temperature": 2.0, "end": 0.1},
    ]
    for index, variant in enumerate(variants):
        for seed in range(2):
            # Run management differs between seeds and must not split a group.
            config = run_config(
                seed,
                **variant,
                device=f"cpu{seed}",
                num_threads=seed + 1,
                experiment_name=f"e{seed}",
                resume=None if seed == 0 else "somewhere",
            )
            config["trainer"]["progress"] = seed == 0
            write_run(sweep / f"v{index}" / f"seed{seed}", config, curve(float(index)))
    result = report.write_report(sweep)
    (summaries,) = result.summaries.values()
    labels = [s.group.label.text() for s in summaries]
    assert labels == [
        "argmax, constant τ=1, agent.entropy_coef=0",
        "gumbel_softmax (hard), constant τ=1, agent.entropy_coef=0",
        "gumbel_softmax (soft), constant τ=0.5, agent.entropy_coef=0",
        "gumbel_softmax (soft), constant τ=1, agent.entropy_coef=0",
        "sample, constant τ=1, agent.entropy_coef=0.01",
        "sample, exponential τ 2→0.1, agent.entropy_coef=0",
    ]
    assert [len(s.finals) for s in summaries] == [2] * 6
    assert [sorted(run.seed for run in s.group.runs) for s in summaries] == [[0, 1]] * 6
    # Each group's runs come from one variant folder: the finals are that variant's index.
    assert [s.mean for s in summaries] == [0.0, 2.0, 3.0, 1.0, 4.0, 5.0]
    assert [s.group.ident for s in summaries] == ["G1", "G2", "G3", "G4", "G5", "G6"]


def test_run_saved_before_a_key_existed_groups_with_runs_at_its_default(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep / "old_seed0", run_config(0), curve(1.0))  # its config has no agent.n_step
    for seed, n_step in [(1, 1), (2, 1), (3, 5)]:
        config = run_config(seed)
        config["agent"]["n_step"] = n_step
        write_run(sweep / f"new_seed{seed}", config, curve(float(n_step)))
    assert report.read_config(sweep / "old_seed0")["agent.n_step"] == 1
    summaries = report.write_report(sweep).summaries["CartPole-v1"]
    assert sorted(sorted(run.name for run in s.group.runs) for s in summaries) == [
        ["new_seed1", "new_seed2", "old_seed0"],
        ["new_seed3"],
    ]


def test_groups_per_env_and_nested_runs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep / "a" / "run0", run_config(0, env="CartPole-v1"), curve(100.0))  # one level deeper
    write_run(sweep / "run0", run_config(0, env="Acrobot-v1", solved_return=-100.0), curve(-90.0))
    write_run(sweep / "b" / "c" / "too_deep", run_config(1, env="Acrobot-v1"), curve(-90.0))
    result = report.write_report(sweep)
    assert sorted(result.summaries) == ["Acrobot-v1", "CartPole-v1"]
    assert [run.name for s in result.summaries["Acrobot-v1"] for run in s.group.runs] == ["run0"]
    assert "## Acrobot-v1" in result.markdown and "## CartPole-v1" in result.markdown
    assert (sweep / "report" / "learning_curves_Acrobot-v1.png").is_file()


def test_failed_and_incomplete_runs_are_listed_not_averaged(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed, final in enumerate([10.0, 20.0, 30.0]):
        write_run(sweep / f"ok{seed}", run_config(seed), curve(final))
    write_run(sweep / "crashed", run_config(3), curve(1000.0), status="failure")
    write_run(sweep / "killed", run_config(4), curve(5000.0), status=None)
    result = report.write_report(sweep)
    summary = only_summary(result)
    assert summary.mean == 20.0 and len(summary.finals) == 3
    statuses = {run.name: run.status for run in summary.group.runs}
    assert statuses == {
        "ok0": "completed",
        "ok1": "completed",
        "ok2": "completed",
        "crashed": "failed",
        "killed": "incomplete",
    }
    row = table_row(result.markdown, "G1")
    assert (row[2], row[3], row[6], row[7]) == ("3", "20.0", "1", "1")
    failed = result.markdown.split("**Failed runs")[1].split("**Incomplete runs")[0]
    incomplete = result.markdown.split("**Incomplete runs")[1]
    assert "`crashed` (seed 3, last logged env step 2,000)" in failed and "killed" not in failed
    assert "`killed` (seed 4, last logged env step 2,000)" in incomplete and "crashed" not in incomplete
    with open(sweep / "report" / "scalars.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {(row["run"], row["status"]) for row in rows} >= {("crashed", "failed"), ("killed", "incomplete")}


def test_group_with_no_completed_run(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep / "ok", run_config(0, selector="argmax"), curve(10.0))
    write_run(sweep / "killed", run_config(0, selector="sample"), curve(20.0), status=None)
    result = report.write_report(sweep)
    row = table_row(result.markdown, "G2")
    assert row[1].startswith("sample") and row[2:6] == ["0", "—", "—", "—"] and row[7] == "1"


def test_resumed_run_reads_both_sessions_and_purges_the_overlap(tmp_path: Path) -> None:
    run_dir = tmp_path / "sweep" / "run"
    # Killed after logging step 1500, resumed with purge_step=1000: TensorBoard hides what the
    # first session logged at steps >= 1000.
    write_run(run_dir, run_config(0), {500: 1.0, 1000: 998.0, 1500: 999.0}, status=None)
    assert report.read_events(run_dir / "tb").status == report.INCOMPLETE
    write_run(run_dir, run_config(0), {1000: 2.0, 1500: 3.0, 2000: 4.0}, status="success", purge_step=1000)
    events = report.read_events(run_dir / "tb")
    assert events.status == report.COMPLETED
    series = events.scalars[METRIC]
    assert series.steps.tolist() == [500, 1000, 1500, 2000] and series.values.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_reader_matches_tensorboard_event_accumulator(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.scalar import summary_v2
    from tensorboard.util import tensor_util

    run_dir = tmp_path / "run"
    logger = Logger(run_dir / "tb", {"seed": 0}, "")
    for step, value in [(1, 0.5), (3, -2.25), (3, 2.0), (7, 1e6), (5, 4.0)]:  # a repeated step, one going back
        logger.scalars({METRIC: value, "losses/critic": -value}, step)
    # How TensorFlow 2 writes scalars: a tensor with the "scalars" plugin.
    logger.writer.file_writer.add_summary(summary_v2.scalar_pb("tf2/scalar", 3.5), global_step=4)
    logger.close("failure")
    accumulator = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    events = report.read_events(run_dir / "tb")
    tensor_scalar = events.scalars.pop("tf2/scalar")
    (expected_tensor,) = accumulator.Tensors("tf2/scalar")
    assert tensor_scalar.steps.tolist() == [4] and tensor_scalar.values.tolist() == [3.5]
    assert float(tensor_util.make_ndarray(expected_tensor.tensor_proto)) == 3.5
    assert sorted(events.scalars) == sorted(accumulator.Tags()["scalars"])
    for tag, series in events.scalars.items():
        expected = accumulator.Scalars(tag)
        assert series.steps.tolist() == [e.step for e in expected]
        assert series.values.tolist() == [e.value for e in expected]
    assert events.status == report.FAILED and len(events.scalars[METRIC].steps) == 5


def test_folder_shared_by_two_runs_is_flagged_and_excluded(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep / "ok", run_config(0), curve(10.0))
    # Two temperatures that the sweep's subdir pattern mapped to one folder: two sessions, one config.
    write_run(sweep / "collided", run_config(1, temperature=0.5), curve(1000.0))
    write_run(sweep / "collided", run_config(1), curve(2000.0))
    result = report.write_report(sweep)
    summary = only_summary(result)
    assert {run.name: run.status for run in summary.group.runs} == {"ok": "completed", "collided": "shared"}
    assert summary.finals.tolist() == [10.0]
    assert "1 completed, 0 failed, 0 incomplete, 1 shared" in result.markdown
    assert "`collided` (seed 1, last logged env step 2,000)" in result.markdown.split("**Run folders shared")[1]


def test_truncated_event_file_keeps_complete_records(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", run_config(0), curve(300.0), status="success")
    (event_file,) = (run_dir / "tb").glob("events.out.tfevents.*")
    data = event_file.read_bytes()
    event_file.write_bytes(data[:-10])  # a writer killed mid-record: the session end is cut off
    events = report.read_events(run_dir / "tb")
    assert events.status == report.INCOMPLETE
    assert events.scalars[METRIC].values.tolist() == [10.0, 10.0, 10.0, 300.0]


def test_probability_of_improvement() -> None:
    x, y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0])
    # Pairs: (1,2) 0, 0; (2,2) ½, ½; (3,2) 1, 1 → 3/6.
    assert report.probability_of_improvement(x, y) == 0.5
    assert report.probability_of_improvement(y, x) == 0.5
    assert report.probability_of_improvement(np.array([5.0]), x) == 1.0
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 7).astype(float), rng.integers(0, 5, 6).astype(float)
    assert report.probability_of_improvement(a, b) == pytest.approx(stats.mannwhitneyu(a, b).statistic / 42)


def test_improvement_table_and_temperature_plot(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for temperature, finals in [(0.5, [1.0, 2.0, 3.0]), (2.0, [2.0, 2.0])]:
        for seed, final in enumerate(finals):
            write_run(sweep / f"t{temperature}_s{seed}", run_config(seed, temperature=temperature), curve(final))
    result = report.write_report(sweep)
    lines = {line.split("|")[1].strip(): line for line in result.markdown.splitlines() if line.startswith("| G")}
    improvement = [line for key, line in lines.items() if key.startswith("G1 ")]
    assert improvement and improvement[0].replace(" ", "").endswith("|—|0.50|")
    assert (sweep / "report" / "return_vs_temperature_CartPole-v1.png").is_file()
    assert "![return vs temperature](return_vs_temperature_CartPole-v1.png)" in result.markdown


def test_no_temperature_plot_without_constant_temperatures(five_seeds: Path) -> None:
    result = report.write_report(five_seeds)
    assert not list((five_seeds / "report").glob("return_vs_temperature_*"))
    assert (five_seeds / "report" / "learning_curves_CartPole-v1.png").is_file()
    assert [path.name for path in result.files] == ["report.md", "learning_curves_CartPole-v1.png", "scalars.csv"]


def test_tidy_csv(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep / "run", run_config(7, temperature=0.5), {500: 1.5, 1000: 2.5})
    report.write_report(sweep)
    with open(sweep / "report" / "scalars.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == list(report.CSV_COLUMNS)
    assert [
        "run",
        "gumbel_softmax (soft), constant τ=0.5",
        "7",
        "CartPole-v1",
        METRIC,
        "1000",
        "2.5",
        "completed",
    ] in rows
    assert len(rows) == 1 + 4  # two tags at two steps


def test_report_is_reproducible(five_seeds: Path, tmp_path: Path) -> None:
    first = report.write_report(five_seeds, tmp_path / "one").markdown
    second = report.write_report(five_seeds, tmp_path / "two").markdown
    assert first.replace(str(tmp_path / "one"), "") == second.replace(str(tmp_path / "two"), "")
    assert (tmp_path / "one" / "scalars.csv").read_bytes() == (tmp_path / "two" / "scalars.csv").read_bytes()


def test_config_interpolations_are_resolved(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_run(run_dir, run_config(0), curve(1.0))
    text = (run_dir / ".hydra" / "config.yaml").read_text().replace("end: 0.05", "end: ${schedule.start}")
    (run_dir / ".hydra" / "config.yaml").write_text(text + "extra: 1e-3\n")
    config = report.read_config(run_dir)
    assert config["schedule.start"] == 1.0 and config["extra"] == 0.001


def test_cli_success_and_errors(five_seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "elsewhere"
    assert report_cli.main([str(five_seeds), "--out", str(out), "--threshold", "10"]) == 0
    printed = capsys.readouterr().out
    assert "500 (5/5 reached)" in printed and printed.strip().endswith(f"report: {out}")
    assert (out / "report.md").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, args in [(empty, []), (tmp_path / "missing", []), (five_seeds, ["--metric", "charts/nope"])]:
        with pytest.raises(SystemExit) as exit_info:
            report_cli.main([str(folder), *args])
        assert exit_info.value.code != 0
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("error: ")
        assert str(folder) in error or "charts/nope" in error


def test_cli_subprocess_on_a_real_sweep(tmp_path: Path) -> None:
    """`rlgumbel-train -m` (2 selectors × 2 seeds, 200 env steps each), then `rlgumbel-report`."""
    sweep = tmp_path / "sweep"
    train = [
        str(BIN / "rlgumbel-train"),
        "-m",
        "seed=0,1",
        "selector=argmax,gumbel_softmax",
        "trainer.total_steps=200",
        "trainer.learning_starts=100",
        "trainer.eval_every=100",
        "trainer.eval_episodes=2",
        "trainer.log_every=100",
        "trainer.batch_size=32",
        "trainer.progress=false",
        f"hydra.sweep.dir={sweep}",
    ]
    subprocess.run(train, check=True, cwd=tmp_path, capture_output=True, timeout=120)
    done = subprocess.run(
        [str(BIN / "rlgumbel-report"), str(sweep)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "| G1 | argmax, exponential τ 1→0.1 | 2 |" in done.stdout
    assert "| G2 | gumbel_softmax (soft), exponential τ 1→0.1 | 2 |" in done.stdout
    assert (sweep / "report" / "learning_curves_CartPole-v1.png").stat().st_size > 0
    with open(sweep / "report" / "scalars.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {row["status"] for row in rows} == {"completed"}
    assert {row["step"] for row in rows if row["tag"] == METRIC} == {"100", "200"}
