"""Defence in depth: a section that ends its own transaction never leaves a history that lies.

The checks at load refuse transaction control (tests/test_statements_transaction_control.py).
Here they are switched off, so the statements reach the database as a section that escaped them would: the
history row is written last, after a guard (PostgreSQL) or a look at the transaction after each
statement (SQLite), so it never commits with part of the SQL; the error names the migration, the
statement that ended the transaction and what it committed.
"""

from __future__ import annotations

import pytest

from sqlmigrate_app import directory, files, statements
from sqlmigrate_app.errors import SqlMigrateError
from sqlmigrate_app.runner import MigrationRunner


@pytest.fixture
def unchecked(monkeypatch):
    """The checks at load switched off: every section reaches the database."""
    monkeypatch.setattr(statements, "statement_error", lambda migration: None)


def test_a_rollback_inside_a_migration_applies_and_records_nothing(target, unchecked):
    target.migration(
        "20240101000001_sneaky", "CREATE TABLE first (id integer);\nROLLBACK;\nCREATE TABLE second (id integer);"
    )

    for _ in range(3):
        result = target.call("sqlmigrate_up")

        assert result.code == 1
        assert "20240101000001_sneaky.sql:3: 20240101000001_sneaky failed:" in result.err
        assert "its own 'ROLLBACK' on line 3 ended the migration's transaction" in result.err
        assert "nothing of it was committed or recorded" in result.err
        assert not {"first", "second"} & target.tables()
        assert target.history() == []


def test_a_commit_inside_a_migration_is_reported_with_what_it_committed(target, unchecked):
    target.migration(
        "20240101000001_sneaky",
        "CREATE TABLE first (id integer);\nINSERT INTO first VALUES (1);\nCOMMIT;\nCREATE TABLE second (id integer);",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000001_sneaky.sql:4: 20240101000001_sneaky failed:" in result.err
    assert "committed the statements of lines 2-4 without a history row" in result.err
    assert "not recorded as applied" in result.err
    assert "first" in target.tables() and "second" not in target.tables()
    assert target.history() == []


def test_a_commit_then_a_failure_says_what_was_committed_not_that_nothing_was(target, unchecked):
    target.migration(
        "20240101000001_sneaky",
        "CREATE TABLE first (id integer);\nCOMMIT;\nCREATE TABLE second (id integer);\nINSERT INTO nowhere VALUES (1);",
    )

    result = target.call("sqlmigrate_up")

    # SQLite runs statement by statement: it stops at the COMMIT. PostgreSQL gets the section
    # whole: it stops at the failure, which rolls back what ran after the COMMIT.
    where = {"sqlite": "3", "postgresql": "5"}[target.vendor]
    assert result.code == 1
    assert f"20240101000001_sneaky.sql:{where}: 20240101000001_sneaky failed:" in result.err
    assert ("nowhere" in result.err) == (target.vendor == "postgresql")
    assert "committed the statements of lines 2-3 without a history row" in result.err
    assert "nothing of it was applied" not in result.err
    assert "first" in target.tables() and "second" not in target.tables()
    assert target.history() == []


def test_a_rollback_then_a_new_transaction_commits_nothing(target, unchecked):
    target.migration(
        "20240101000001_sneaky",
        "CREATE TABLE first (id integer);\nROLLBACK;\nBEGIN;\nCREATE TABLE second (id integer);",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "its own 'ROLLBACK' on line 3 ended the migration's transaction" in result.err
    assert not {"first", "second"} & target.tables()
    assert target.history() == []
    assert target.call("sqlmigrate_status").code == 0


def test_a_commit_inside_a_down_leaves_the_migration_recorded(target, unchecked):
    target.migration(
        "20240101000001_pair",
        "CREATE TABLE first (id integer);\nCREATE TABLE second (id integer);",
        "DROP TABLE second;\nCOMMIT;\nDROP TABLE first;",
    )
    assert target.call("sqlmigrate_up").code == 0

    result = target.call("sqlmigrate_down")

    assert result.code == 1
    assert "20240101000001_pair.sql:6:" in result.err
    assert "committed the statements of lines 5-6 without a history row" in result.err
    assert "second" not in target.tables() and "first" in target.tables()
    assert target.history() == ["20240101000001_pair"]


def test_the_statements_after_the_migration_still_run_as_their_own(target, unchecked):
    target.migration("20240101000001_sneaky", "CREATE TABLE first (id integer);\nROLLBACK;")
    target.migration("20240101000002_next", "CREATE TABLE next (id integer);")

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "next" not in target.tables()
    assert target.history() == []


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_a_section_that_moves_the_guard_setting_is_caught_too(target):
    """The guard fails unless the transaction-local setting holds this run's token: a section
    that sets it (not knowing the token) is stopped before its history row, rolled back whole."""
    target.migration(
        "20240101000001_meddles",
        "CREATE TABLE first (id integer);\nSELECT pg_catalog.set_config('sqlmigrate.migration', 'x', true);",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "ended the migration's transaction" in result.err
    assert "first" not in target.tables() and target.history() == []


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_names_begin_end_and_case_do_not_hide_a_rollback(target):
    """Issue 18's first escape, through the checks at load: a parameter named begin made the
    scanner (psql's heuristic) read the ROLLBACK as part of the function."""
    target.migration(
        "20240101000001_shift",
        "CREATE TABLE t (x integer);\n"
        "CREATE FUNCTION shift(begin int, x int) RETURNS int LANGUAGE sql RETURN x + begin;\n"
        "ROLLBACK;\nINSERT INTO t VALUES (1);",
    )

    validated = target.call("sqlmigrate_validate")
    result = target.call("sqlmigrate_up")

    assert validated.code == 7 and "20240101000001_shift.sql:4: 'ROLLBACK' ends the migration's" in validated.text
    assert result.code == 1 and "20240101000001_shift.sql:4: 'ROLLBACK' ends" in result.err
    assert not {"t", "schema_migrations"} & target.tables()


def test_a_nul_byte_that_reaches_the_database_fails_whole(target):
    """The files refuse NUL bytes at load; a migration made another way (the API) with one is
    refused by the backend, never cut short at the NUL with the rest of it lost."""
    text = "-- UP\nCREATE TABLE first (id integer);\nSELECT '\0';\nCREATE TABLE second (id integer);\n"
    migration = files.parse_text(target.directory, "20240101000001_nul", text)
    runner = MigrationRunner(using=target.alias, loader=lambda path: directory.assemble(path, [migration]))

    with pytest.raises(SqlMigrateError, match="NUL byte"):
        runner.migrate()

    assert not {"first", "second"} & target.tables()
    assert target.history() == []
