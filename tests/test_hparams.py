"""The HParams columns a run flags for the dashboard: the hparams its sweep varies, then the
study's, never more study columns than leave the swept ones among the five the dashboard ticks."""

from __future__ import annotations

import pytest

from rlgumbel.config import hparams
from rlgumbel.hparams import COLUMNS_SHOWN, CONFIG_KEYS, STUDY_COLUMNS, columns_to_show, swept_keys

NAMES = list(CONFIG_KEYS)


def test_every_hparam_names_the_config_keys_it_is_read_from(compose_config):
    assert set(hparams(compose_config())) == set(CONFIG_KEYS)


def test_swept_keys_are_those_whose_last_override_is_a_sweep():
    preset_then_command_line = [
        "schedule.start=0.125,0.25,0.5",  # a preset's sweeper params …
        "seed=range(5)",
        "+experiment=temperature_sweep",
        "schedule.start=0.5",  # … a fixed value on the command line replaces the preset's sweep
        "agent.gamma=0.9,0.99",
        "+experiment/annealing=constant,linear",
    ]
    assert swept_keys(preset_then_command_line) == ["seed", "agent.gamma", "experiment/annealing"]


@pytest.mark.parametrize(
    "swept,shown",
    [
        ([], list(STUDY_COLUMNS)),
        (["schedule.start"], ["temperature_start", "selector", "schedule", "temperature_end"]),
        (["agent.gamma", "seed"], ["seed", "gamma", "selector", "schedule", "temperature_start"]),
        (
            ["env", "agent.actor.lr", "agent.critic.lr", "agent.gamma", "seed"],
            ["env", "seed", "actor_lr", "critic_lr", "gamma"],
        ),
        (
            ["env", "agent.actor.lr", "agent.critic.lr", "agent.gamma", "seed", "trainer.batch_size"],
            ["env", "seed", "actor_lr", "critic_lr", "gamma", "batch_size"],
        ),
        (["experiment/annealing"], list(STUDY_COLUMNS)),  # a preset's arms: no hparam names them
    ],
)
def test_swept_columns_come_first_and_study_columns_fill_the_rest(swept, shown):
    columns = columns_to_show(NAMES, swept)
    assert columns == shown
    assert len(columns) <= max(COLUMNS_SHOWN, len(swept))
