"""The runner's single-migration steps: what verify runs a round trip with, public API."""

from __future__ import annotations

import pytest

from sqlmigrate_app.errors import MigrationFailed, MigrationFileError
from sqlmigrate_app.executor import Action
from sqlmigrate_app.runner import MigrationRunner

FIRST = "20240101000000_create_a"
SECOND = "20240101000001_create_b"


def test_one_migration_is_applied_and_rolled_back_without_a_plan(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);", "DROP TABLE b;")
    runner = MigrationRunner(target.alias, target.directory)
    first, second = runner.load()
    runner.create_history()

    applied = runner.apply_one(second)  # no plan: the one named, even out of order

    assert (applied.migration, applied.action) == (second, Action.APPLIED)
    assert target.history() == [SECOND] and {"a", "b"} & target.tables() == {"b"}
    assert runner.is_applied(SECOND) and not runner.is_applied(FIRST)
    reverted = runner.revert_one(second)
    assert (reverted.migration, reverted.action) == (second, Action.ROLLED_BACK)
    assert target.history() == [] and {"a", "b"} & target.tables() == set()


def test_a_step_makes_the_checks_up_makes(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);\nCOMMIT;", "DROP TABLE a;")
    runner = MigrationRunner(target.alias, target.directory)
    runner.create_history()
    [row] = runner.status()  # status reads no statement: the file is only pending to it
    assert row.migration is not None

    with pytest.raises(MigrationFileError, match="COMMIT"):
        runner.apply_one(row.migration)

    assert target.history() == []


def test_after_a_reset_the_session_is_a_new_commands(target):
    """What a step leaves in its session (here a temporary table) is gone after
    ``reset_session``, as when ``up`` and ``down`` run as separate commands."""
    target.migration(FIRST, "CREATE TEMPORARY TABLE scratch (id INTEGER);\nCREATE TABLE a (id INTEGER);", "")
    target.migration(SECOND, "INSERT INTO scratch VALUES (1);", "")
    runner = MigrationRunner(target.alias, target.directory)
    first, second = runner.load()
    runner.create_history()
    runner.apply_one(first)

    runner.reset_session()

    with pytest.raises(MigrationFailed, match="scratch"):
        runner.apply_one(second)
    assert target.history() == [FIRST]
