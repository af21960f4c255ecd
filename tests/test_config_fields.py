"""Misspelt and renamed config fields end in one line: the closest existing names (difflib) or
the field's new place; through main.py, exit status 2 and nothing written."""

import subprocess
import sys

import pytest

from conftest import make_tiny_config
from diffmtl import config_fields
from diffmtl.errors import UserError
from main_runs import ROOT, config_flags


def test_existing_fields_and_sections_pass():
    config = make_tiny_config()
    for field in ("train.batch_size", "mtl.uw.learning_rate", "mtl", "seed"):
        config_fields.check_field(config, field)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            "mtl.uw_learning_rat",
            "mtl.uw_learning_rat does not exist; did you mean mtl.uw.learning_rate",
        ),
        ("trian.batch_size", "trian.batch_size does not exist; did you mean train.batch_size"),
        ("mtl.nash_update_every", "mtl.nash_update_every was renamed to mtl.nash_mtl.update_every"),
        ("zzzz", "zzzz does not exist; the fields are in docs/configs.md"),
        ("seed.k", "seed.k does not exist"),
    ],
)
def test_unknown_fields_name_the_closest_or_the_new_place(field, message):
    with pytest.raises(UserError, match=message):
        config_fields.check_field(make_tiny_config(), field)


def test_every_rename_points_to_an_existing_field():
    config = make_tiny_config()
    for old, new in config_fields.RENAMES.items():
        assert config_fields.has_field(config, new) and not config_fields.has_field(config, old)


MISSPELT = (
    "error: config field mtl.uw_learning_rat does not exist; did you mean mtl.uw.learning_rate "
    "or mtl.famo.learning_rate or train.learning_rate?"
)
RENAMED = (
    "error: config field mtl.uw_learning_rate was renamed to mtl.uw.learning_rate (CHANGELOG.md)"
)


@pytest.mark.parametrize(
    ("flag", "line"),
    [
        ("--config.mtl.uw_learning_rat=0.1", MISSPELT),
        ("--config.mtl.uw_learning_rate=0.1", RENAMED),
    ],
)
def test_main_ends_a_misspelt_field_in_one_line_and_writes_nothing(flag, line, tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, "main.py", *config_flags(), flag, f"--workdir={workdir}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line]
    assert not workdir.exists()
