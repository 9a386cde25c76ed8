"""`tensorboard --logdir <sweep>` on a real sweep: a TensorBoard server over a tiny two-run multirun
lists every run, each run's scalar tags, and in the HParams plugin one session group per run with
its hyperparameters, as a user browsing the sweep would see them."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY

from rlgumbel.logger import HPARAM_METRICS

TENSORBOARD = Path(sys.executable).with_name("tensorboard")
READY_SECONDS = 60  # bound on the server's start and its first load of the event files
SELECTORS = ("argmax", "gumbel_softmax")
SEED = 7
RUNS = {f"{selector}_exponential_T1.0_seed{SEED}_job{number}/tb": selector for number, selector in enumerate(SELECTORS)}
# the logging contract's tags (README, "What a run writes"), a subset of what a run writes
SCALAR_TAGS = {
    "charts/episodic_return",
    "charts/eval_return_greedy",
    "charts/eval_return_sampled",
    "losses/critic",
    "losses/actor",
    "policy/temperature",
    "policy/entropy",
    "perf/steps_per_second",
    "perf/wall_seconds",
}
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it for a socket bound to port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sweep(run_cli, tmp_path: Path) -> Path:
    """A finished two-run multirun: two selectors, one seed."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        "-m", f"selector={','.join(SELECTORS)}", f"seed={SEED}", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return sweep


@contextlib.contextmanager
def tensorboard(runs: Path, log_path: Path) -> Iterator[Callable[..., Any]]:
    """A TensorBoard server on the folder `runs`; yields `query(route, body=None)`: the route's JSON (POST
    when a body is given). The server is stopped on exit, whatever the caller did."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(TENSORBOARD), "--logdir", str(runs), "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def query(route: str, body: dict | None = None) -> Any:
        if process.poll() is not None:
            pytest.fail(f"tensorboard exited with {process.returncode}:\n{log_path.read_text()}")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{route}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    try:
        yield query
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(sweep: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A TensorBoard server on `sweep` (see `tensorboard`), stopped on teardown."""
    with tensorboard(sweep, tmp_path / "tensorboard.log") as query:
        yield query


def poll(query: Callable[..., Any], route: str, ready: Callable[[Any], bool], body: dict | None = None) -> Any:
    """The route's answer once `ready(answer)`: the server loads event files in the background."""
    deadline = time.monotonic() + READY_SECONDS
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = query(route, body)
            if ready(answer):
                return answer
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet
        time.sleep(0.25)
    pytest.fail(f"{route} not ready after {READY_SECONDS} s; last answer: {answer!r}")


def test_tensorboard_serves_every_run_its_scalars_and_hparams(server):
    runs = poll(server, "/data/runs", lambda runs: set(RUNS) <= set(runs))
    assert sorted(runs) == sorted(RUNS)

    tags = poll(
        server, "/data/plugin/scalars/tags", lambda tags: all(set(tags.get(run, {})) >= SCALAR_TAGS for run in RUNS)
    )
    assert set(tags) == set(RUNS)

    experiment = server("/data/plugin/hparams/experiment", {"experimentName": ""})
    assert {"selector", "selector_hard", "schedule", "temperature_start", "seed", "env"} <= {
        info["name"] for info in experiment["hparamInfos"]
    }
    assert "charts/eval_return_greedy" in {info["name"]["tag"] for info in experiment["metricInfos"]}

    request = {"experimentName": "", "allowedStatuses": ALL_STATUSES, "startIndex": 0, "sliceSize": 100}
    groups = poll(
        server,
        "/data/plugin/hparams/session_groups",
        lambda answer: len(answer.get("sessionGroups", [])) == len(RUNS),
        request,
    )["sessionGroups"]
    by_run = {session["name"]: (group, session) for group in groups for session in group["sessions"]}
    assert set(by_run) == set(RUNS)
    for run, selector in RUNS.items():
        group, session = by_run[run]
        hparams = group["hparams"]
        assert (hparams["selector"], hparams["seed"], hparams["env"]) == (selector, SEED, "CartPole-v1")
        assert hparams["temperature_start"] == 1.0
        assert session["status"] == "STATUS_SUCCESS"
        metrics = {value["name"]["tag"]: value for value in session["metricValues"]}
        assert metrics["charts/eval_return_greedy"]["trainingStep"] == 400  # the run's last evaluation


# The HParams dashboard's request for the experiment (its query pane loads up to 1000 hparams).
DASHBOARD_EXPERIMENT_REQUEST = {"experimentName": "", "hparamsLimit": 1000}
COLUMNS_TICKED_BY_DEFAULT = 5  # the query pane's kNumHParamsToDisplayByDefault


def columns_ticked_by_default(experiment: dict) -> list[str]:
    """The hparam columns the HParams dashboard shows when it opens: its query pane
    (`_computeHParams`) moves the infos with `differs` to the top, keeping the server's order
    otherwise (a stable sort), and ticks the first five."""
    infos = sorted(experiment["hparamInfos"], key=lambda info: not info.get("differs", False))
    return [info["name"] for info in infos[:COLUMNS_TICKED_BY_DEFAULT]]


@pytest.mark.parametrize(
    "sweep_overrides,shown",
    [
        (["schedule=constant", "schedule.start=0.5,2.0"], {"temperature_start", "selector", "schedule"}),
        (["agent.gamma=0.9,0.99"], {"gamma", "selector", "schedule", "temperature_start"}),
    ],
    ids=["temperature", "gamma"],
)
def test_hparams_dashboard_opens_on_the_swept_and_the_study_columns(sweep_overrides, shown, run_cli, tmp_path: Path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", *sweep_overrides, "seed=1", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    with tensorboard(sweep, tmp_path / "tensorboard.log") as query:
        experiment = poll(
            query,
            "/data/plugin/hparams/experiment",
            lambda answer: bool(answer.get("hparamInfos")),
            DASHBOARD_EXPERIMENT_REQUEST,
        )
    assert shown <= set(columns_ticked_by_default(experiment)), experiment["hparamInfos"]
    assert [info["name"]["tag"] for info in experiment["metricInfos"]] == list(HPARAM_METRICS)
