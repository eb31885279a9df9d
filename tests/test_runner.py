"""``MigrationRunner``, the public API: its single-migration steps (what verify runs a round trip
with), the data its methods return, the history read once per command."""

from __future__ import annotations

import re

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from sqlmigrate_app.errors import MigrationFailed, MigrationFileError
from sqlmigrate_app.executor import Action
from sqlmigrate_app.runner import MigrationRunner

from .support.migrations import FIRST, SECOND, THIRD, three
from .support.target import ok


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


@pytest.mark.parametrize(
    "command, args, options",
    [
        ("sqlmigrate_up", (), {}),
        ("sqlmigrate_up", (), {"plan": True}),
        ("sqlmigrate_up", (), {"fake": True}),
        ("sqlmigrate_down", ("3",), {}),
        ("sqlmigrate_down", (), {"plan": True}),
        ("sqlmigrate_status", (), {}),
        ("sqlmigrate_status", (), {"json": True, "check": True}),
        ("sqlmigrate_validate", (), {}),
    ],
)
def test_the_history_is_read_once_per_command(target, command, args, options):
    three(target)
    if command == "sqlmigrate_down":
        ok(target.call("sqlmigrate_up"))
    else:
        ok(target.call("sqlmigrate_up", to=FIRST))
    with CaptureQueriesContext(connections[target.alias]) as captured:
        result = target.call(command, *args, **options)
    assert result.code in (0, 3), result.text
    reads = [
        q["sql"]
        for q in captured.captured_queries
        if re.match(r"\s*SELECT\b.*\bFROM\s+(\"?\w+\"?\.)?\"?schema_migrations\b", q["sql"], re.I | re.S)
    ]
    assert len(reads) == 1, reads


def test_the_runner_api_returns_data(target):
    three(target)
    runner = MigrationRunner(using=target.alias, directory=target.directory)
    assert [m.id for m in runner.pending()] == [FIRST, SECOND, THIRD]
    results = runner.migrate(to=SECOND)
    assert [(r.migration.id, r.action) for r in results] == [(FIRST, "applied"), (SECOND, "applied")]
    assert [(row.id, row.state) for row in runner.status()] == [
        (FIRST, "applied"),
        (SECOND, "applied"),
        (THIRD, "pending"),
    ]
    assert runner.validate() == []
    assert [r.migration.id for r in runner.rollback(steps=2)] == [SECOND, FIRST]
    assert target.history() == []
