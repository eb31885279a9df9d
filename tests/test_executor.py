"""A migration's history row, timeouts and SQL travel together (one round trip on PostgreSQL,
with the BEGIN psycopg would otherwise send alone): what that must not change."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from django.db import connections
from psycopg import IsolationLevel

from sqlmigrate_app.executor import Reporter
from sqlmigrate_app.files import Migration
from sqlmigrate_app.runner import MigrationRunner

from .support.migrations import big_section
from .support.wire import queries_on_the_wire


def other_connection_runs(target, sql: str, params: tuple[str, ...]) -> None:
    """Run one statement through a connection of its own, as another runner would."""
    if target.vendor == "postgresql":
        with psycopg.connect(target.url, autocommit=True) as other:
            other.execute(sql, params)
    else:
        other_file = sqlite3.connect(target.url.removeprefix("sqlite:///"))
        with other_file:
            other_file.execute(sql.replace("%s", "?"), params)
        other_file.close()


class DeletesRowFirst(Reporter):
    """Another runner rolls back ``migration_id`` (deletes its row) just before we do."""

    def __init__(self, target, migration_id: str) -> None:
        self.target = target
        self.migration_id = migration_id

    def starting(self, migration: Migration, action: str) -> None:
        if migration.id == self.migration_id:
            other_connection_runs(self.target, "DELETE FROM schema_migrations WHERE id = %s", (migration.id,))


class InsertsRowFirst(Reporter):
    """Another runner writes the history row of ``migration_id`` just before we claim it."""

    def __init__(self, target, migration_id: str) -> None:
        self.target = target
        self.migration_id = migration_id

    def starting(self, migration: Migration, action: str) -> None:
        if migration.id != self.migration_id:
            return
        row = (migration.id, migration.name, migration.checksum)
        if self.target.vendor == "postgresql":
            with psycopg.connect(self.target.url, autocommit=True) as other:
                other.execute("INSERT INTO schema_migrations (id, name, checksum) VALUES (%s, %s, %s)", row)
        else:
            other_file = sqlite3.connect(self.target.url.removeprefix("sqlite:///"))
            with other_file:
                other_file.execute("INSERT INTO schema_migrations (id, name, checksum) VALUES (?, ?, ?)", row)
            other_file.close()


def test_a_migration_claimed_by_another_runner_is_skipped_and_its_sql_not_run(target, settings):
    # The reporter's hook runs before the migration's SQL only when each migration travels alone
    # (in a batch the line starts once its block has begun): tests/test_executor_batches.py has
    # the batch's own case.
    settings.SQLMIGRATE_BATCH_BYTES = 0
    target.migration("20240101000001_one", "CREATE TABLE one (id integer);")
    target.migration("20240101000002_two", "CREATE TABLE two (id integer);")
    target.migration("20240101000003_three", "CREATE TABLE three (id integer);")
    runner = MigrationRunner(
        using=target.alias,
        directory=target.directory,
        reporter=InsertsRowFirst(target, "20240101000002_two"),
    )

    results = runner.migrate()

    assert [(r.migration.id, r.action) for r in results] == [
        ("20240101000001_one", "applied"),
        ("20240101000002_two", "skipped"),
        ("20240101000003_three", "applied"),
    ]
    assert {"one", "three"} <= target.tables() and "two" not in target.tables()
    assert target.history() == ["20240101000001_one", "20240101000002_two", "20240101000003_three"]


def test_error_line_is_right_with_timeouts_and_history_row_sent_ahead(target):
    target.migration(
        "20240101000001_broken",
        "CREATE TABLE ok (id integer);\nSELECT 1;\nSELEC oops;\n",
        header="-- sqlmigrate: lock-timeout=5s\n-- sqlmigrate: statement-timeout=1min\n",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000001_broken.sql:6:" in result.err
    assert "ok" not in target.tables()
    assert target.history() == []


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ("read committed", "off")),
        ({"isolation_level": IsolationLevel.SERIALIZABLE}, ("serializable", "off")),
        ({"isolation_level": IsolationLevel.REPEATABLE_READ}, ("repeatable read", "off")),
    ],
)
def test_the_transaction_begins_with_the_connections_own_options(target, options, expected):
    connections[target.alias].close()
    connections.settings[target.alias].setdefault("OPTIONS", {}).update(options)
    connections[target.alias].settings_dict.setdefault("OPTIONS", {}).update(options)
    target.migration(
        "20240101000001_seen",
        "CREATE TABLE seen AS SELECT current_setting('transaction_isolation') AS isolation,"
        " current_setting('transaction_read_only') AS read_only;",
    )

    assert target.call("sqlmigrate_up").code == 0

    assert target.query("SELECT isolation, read_only FROM seen") == [expected]


@pytest.mark.parametrize("savepoint", [True, False])
def test_inside_the_callers_atomic_block_nothing_is_committed_behind_its_back(target, savepoint):
    from django.db import transaction

    target.migration("20240101000001_one", "CREATE TABLE one (id integer);")
    target.migration("20240101000002_two", "CREATE TABLE two (id integer);")
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    with pytest.raises(RuntimeError), transaction.atomic(using=target.alias):
        with transaction.atomic(using=target.alias, savepoint=savepoint):
            assert [r.action for r in runner.migrate()] == ["applied", "applied"]
        raise RuntimeError("the caller changes its mind")

    # Even the history table went with the caller's transaction.
    assert not {"one", "two", "schema_migrations"} & target.tables()


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_a_constraint_checked_at_commit_fails_the_migration_and_rolls_it_back(target):
    target.migration(
        "20240101000001_deferred",
        "CREATE TABLE parent (id integer PRIMARY KEY);\n"
        "CREATE TABLE child (parent_id integer REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO child VALUES (42);\n",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000001_deferred failed: insert or update on table" in result.err
    assert "rolled back, nothing of it was applied" in result.err
    assert not {"parent", "child"} & target.tables()
    assert target.history() == []
    assert target.call("sqlmigrate_status").code == 0


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_a_big_section_still_names_the_failing_line(target):
    up = big_section(bad_line=15_000)
    assert len(up) > 1 << 20
    target.migration("20240101000001_big", up, header="-- sqlmigrate: lock-timeout=5s\n")

    result = target.call("sqlmigrate_up")

    # Line 1 the directive, 2 "-- UP", 3 the CREATE TABLE, 4 the first INSERT.
    assert result.code == 1
    assert f"20240101000001_big.sql:{4 + 15_000}: 20240101000001_big failed:" in result.err
    assert "big" not in target.tables() and target.history() == []

    target.migration("20240101000001_big", big_section(), header="-- sqlmigrate: lock-timeout=5s\n")
    assert target.call("sqlmigrate_up").code == 0
    assert target.query("SELECT count(*) FROM big") == [(20_000,)]
    assert target.history() == ["20240101000001_big"]


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_a_big_section_claimed_by_another_runner_is_skipped(target):
    target.migration("20240101000001_big", big_section())
    runner = MigrationRunner(
        using=target.alias, directory=target.directory, reporter=InsertsRowFirst(target, "20240101000001_big")
    )

    assert [r.action for r in runner.migrate()] == ["skipped"]
    assert "big" not in target.tables()


def rollback_raced_by_another_runner(target, settings, up: str) -> None:
    # The reporter's hook runs before the DOWN only when each migration travels alone:
    # tests/test_executor_batches.py has the batch's own case.
    settings.SQLMIGRATE_BATCH_BYTES = 0
    target.migration("20240101000001_big", up, "DROP TABLE big;")
    target.migration("20240101000002_two", "CREATE TABLE two (id integer);", "DROP TABLE two;")
    assert target.call("sqlmigrate_up").code == 0
    runner = MigrationRunner(
        using=target.alias, directory=target.directory, reporter=DeletesRowFirst(target, "20240101000001_big")
    )

    results = runner.rollback(steps=2)

    assert [(r.migration.id, r.action) for r in results] == [
        ("20240101000002_two", "rolled back"),
        ("20240101000001_big", "skipped"),
    ]
    assert "big" in target.tables() and "two" not in target.tables()
    assert target.history() == []


def test_a_rollback_done_by_another_runner_first_is_skipped_and_its_down_not_run(target, settings):
    rollback_raced_by_another_runner(target, settings, "CREATE TABLE big (id integer, pad text);")


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_a_big_migration_rolled_back_by_another_runner_first_is_skipped(target, settings):
    rollback_raced_by_another_runner(target, settings, big_section())


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_each_migration_is_one_query_on_the_wire(target, tmp_path, settings):
    """libpq's own protocol trace: every migration is a single Query message holding BEGIN,
    the history row, its SQL and COMMIT; no BEGIN or COMMIT travels on its own. (Several in one
    message: tests/test_executor_batches.py.)"""
    settings.SQLMIGRATE_BATCH_BYTES = 0
    for number in range(1, 4):
        target.migration(f"2024010100000{number}_t{number}", f"CREATE TABLE t{number} (id integer);")
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    queries = queries_on_the_wire(target.alias, tmp_path / "wire.trace", runner.migrate)

    migrations = [query for query in queries if "CREATE TABLE t" in query]
    assert len(migrations) == 3
    for number, query in enumerate(migrations, start=1):
        assert "BEGIN;" in query and "INSERT INTO" in query and f"CREATE TABLE t{number} " in query
        assert query.endswith("COMMIT")
    assert not [query for query in queries if query.rstrip(";") in ("BEGIN", "COMMIT")]
