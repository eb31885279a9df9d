"""Which command reads a migration's statements: ``validate`` all of them, ``up`` and ``down`` the
migrations they will run, ``status`` none. A statement that cannot run as written (here VACUUM in
a transactional migration) is a bad file to ``validate``; to ``status`` it is just its state."""

from __future__ import annotations

import json

from django.db import connections

from sqlmigrate_app.backends import backend_for
from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.files import checksum, display_name
from sqlmigrate_app.history import HistoryTable
from sqlmigrate_app.management.base import EXIT_CODES

GOOD = "20240101000000_good"
REFUSED = "20240101000001_refused"
LATER = "20240101000002_later"
VACUUM = "CREATE TABLE refused (id INTEGER);\nVACUUM;"
VACUUM_MESSAGE = "'VACUUM ...' cannot run inside a transaction"


def record_as_applied(target, migration_id: str) -> None:
    """A history row for a file, as if an older sqlmigrate (without today's checks) had run it."""
    HistoryTable(backend_for(connections[target.alias]), "schema_migrations").create()
    text = (target.directory / f"{migration_id}.sql").read_text()
    target.query(
        "INSERT INTO schema_migrations (id, name, checksum) VALUES (%s, %s, %s)",
        [migration_id, display_name(migration_id), checksum(text)],
    )


def test_status_shows_a_pending_migration_with_a_refused_statement_as_pending(target):
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")
    target.migration(REFUSED, VACUUM)

    status = target.call("sqlmigrate_status", json=True)
    checked = target.call("sqlmigrate_status", check=True)
    validated = target.call("sqlmigrate_validate")

    assert status.code == 0, status.text
    assert [(row["id"], row["state"]) for row in json.loads(status.out)] == [(GOOD, "pending"), (REFUSED, "pending")]
    assert checked.code == EXIT_CODES[ProblemKind.PENDING]
    assert validated.code == EXIT_CODES[ProblemKind.BAD_FILE]
    assert f"{REFUSED}.sql:3: {VACUUM_MESSAGE}" in validated.err


def test_up_and_its_plan_refuse_it_before_anything_runs(target):
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")
    target.migration(REFUSED, VACUUM)

    planned = target.call("sqlmigrate_up", plan=True)
    applied = target.call("sqlmigrate_up")

    for result in (planned, applied):
        assert result.code == 1
        assert f"{REFUSED}.sql:3: {VACUUM_MESSAGE}" in result.err
    assert target.tables() == set()  # not the good migration, not even the history table


def test_up_scans_only_the_migrations_it_runs(target):
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")
    target.migration(REFUSED, VACUUM)

    result = target.call("sqlmigrate_up", to=GOOD)

    assert result.code == 0, result.text
    assert target.history() == [GOOD]


def test_an_applied_migration_with_a_refused_statement_does_not_stop_up_but_validate_reports_it(target):
    target.migration(REFUSED, VACUUM, "DROP TABLE refused;")
    record_as_applied(target, REFUSED)
    target.migration(LATER, "CREATE TABLE later (id INTEGER);", "DROP TABLE later;")

    applied = target.call("sqlmigrate_up")
    validated = target.call("sqlmigrate_validate")

    assert applied.code == 0, applied.text
    assert target.history() == [REFUSED, LATER]
    assert validated.code == EXIT_CODES[ProblemKind.BAD_FILE]
    assert [line.split(": ", 1)[0] for line in validated.err.splitlines()[:-1]] == ["bad_file"]


def test_down_refuses_a_rollback_whose_down_section_cannot_run(target):
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;\nVACUUM;")
    target.query("CREATE TABLE good (id INTEGER)")
    record_as_applied(target, GOOD)

    planned = target.call("sqlmigrate_down", plan=True)
    rolled_back = target.call("sqlmigrate_down")

    for result in (planned, rolled_back):
        assert result.code == 1
        assert f"{GOOD}.sql:5: {VACUUM_MESSAGE}" in result.err
    assert "good" in target.tables() and target.history() == [GOOD]
