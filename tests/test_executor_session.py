"""Each migration starts from the session the run started with: settings, role and user that a
migration changes for the session (not ``LOCAL``) are put back before the next one runs."""

from __future__ import annotations

import pytest

from sqlmigrate_app.runner import MigrationRunner

from .support.migrations import LEAKS
from .support.wire import queries_on_the_wire

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)

FIRST, SECOND = "20240101000001_sets", "20240101000002_plain"


def write_pair(target, sets: str, plain: str, header: str = "") -> None:
    target.migration(FIRST, f"CREATE TABLE first (id integer);\n{sets}", "DROP TABLE first;", header=header)
    target.migration(SECOND, plain, "DROP TABLE second;")


@pg_only
@pytest.mark.parametrize("sets, plain", LEAKS.values(), ids=LEAKS.keys())
def test_a_session_setting_does_not_leak_into_the_next_migration(target, sets, plain):
    target.query("SET TIME ZONE 'UTC'")  # what Django does on connect with USE_TZ
    write_pair(target, sets, plain)

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.history() == [FIRST, SECOND]
    assert {"first", "second"} <= target.tables()
    assert target.query("SELECT current_setting('search_path'), current_setting('TimeZone')") == [
        ('"$user", public', "UTC")
    ]
    assert target.call("sqlmigrate_down", "2").code == 0
    assert target.history() == [] and not {"first", "second"} & target.tables()


@pg_only
def test_set_role_does_not_leak_into_the_next_migration(target):
    role = f"limited_{target.url.rsplit('/', 1)[-1]}"  # roles are cluster-wide: named after the database
    target.query(f"CREATE ROLE {role}")
    try:
        # As the limited role, migration 2 could not create a table in public (PostgreSQL 15+).
        write_pair(target, f"SET ROLE {role};", "CREATE TABLE second (id integer);")

        result = target.call("sqlmigrate_up")

        assert result.code == 0, result.text
        assert target.query("SELECT current_user = session_user, current_setting('role')") == [(True, "none")]
        assert target.query("SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'second'") == [(True,)]
        assert target.call("sqlmigrate_down", "2").code == 0
    finally:
        target.query(f"DROP OWNED BY {role}")
        target.query(f"DROP ROLE {role}")


@pg_only
def test_set_session_authorization_is_put_back(target):
    role = f"other_{target.url.rsplit('/', 1)[-1]}"
    target.query(f"CREATE ROLE {role}")
    try:
        write_pair(target, f"SET SESSION AUTHORIZATION {role};", "CREATE TABLE second (id integer);")

        result = target.call("sqlmigrate_up")

        assert result.code == 0, result.text
        assert target.query("SELECT session_user = current_user, current_setting('role')") == [(True, "none")]
        assert target.query("SELECT session_user <> %s", [role]) == [(True,)]
    finally:
        target.query(f"DROP OWNED BY {role}")
        target.query(f"DROP ROLE {role}")


@pg_only
def test_a_no_transaction_migration_that_empties_search_path_is_still_recorded(target):
    # Its history row is written after its statements, under whatever search_path they left.
    write_pair(
        target,
        "SELECT pg_catalog.set_config('search_path', '', false);\n"
        "CREATE INDEX CONCURRENTLY first_id ON public.first (id);",
        "CREATE TABLE second (id integer);",
        header="-- sqlmigrate: no-transaction\n",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.history() == [FIRST, SECOND]
    assert target.call("sqlmigrate_down", "2").code == 0
    assert target.history() == []


@pg_only
def test_the_apps_own_session_settings_survive_a_run(target):
    # Settings the app made for its session (here statement_timeout and lock_timeout) are what
    # the run started with: a migration's SET, and a no-transaction migration's timeouts, give
    # way to them afterwards rather than to the server's defaults.
    target.query("SET statement_timeout = '45s'")
    target.query("SET lock_timeout = '7s'")
    target.migration(FIRST, "SET statement_timeout = 0;\nCREATE TABLE first (id integer);", "DROP TABLE first;")
    target.migration(
        SECOND,
        "CREATE INDEX CONCURRENTLY first_id ON first (id);",
        "DROP INDEX CONCURRENTLY first_id;",
        header="-- sqlmigrate: no-transaction\n-- sqlmigrate: lock-timeout=1s\n-- sqlmigrate: statement-timeout=1min\n",
    )

    assert target.call("sqlmigrate_up").code == 0

    assert target.query("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')") == [
        ("45s", "7s")
    ]


@pg_only
def test_a_failed_migration_leaves_the_session_as_it_was(target):
    target.migration(FIRST, "SET search_path = nowhere;\nSELECT 1/0;")

    assert target.call("sqlmigrate_up").code == 1

    assert target.query("SELECT current_setting('search_path')") == [('"$user", public',)]


@pg_only
def test_a_failed_no_transaction_migration_puts_the_session_back_too(target):
    target.migration(FIRST, "SET search_path = nowhere;\nSELECT 1/0;", header="-- sqlmigrate: no-transaction\n")

    assert target.call("sqlmigrate_up").code == 1

    assert target.query("SELECT current_setting('search_path')") == [('"$user", public',)]


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_a_pragma_does_not_leak_into_the_next_sqlite_migration(target):
    # SQLite's table-rebuild recipe turns foreign keys off outside any transaction.
    target.migration(
        FIRST,
        "PRAGMA foreign_keys = OFF;\nCREATE TABLE first (id INTEGER);",
        "DROP TABLE first;",
        header="-- sqlmigrate: no-transaction\n",
    )
    target.migration(
        SECOND,
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE child (parent_id INTEGER REFERENCES parent ON DELETE CASCADE);\n"
        "INSERT INTO parent VALUES (1);\nINSERT INTO child VALUES (1);\nDELETE FROM parent;",
        "DROP TABLE child;\nDROP TABLE parent;",
    )
    target.query("PRAGMA foreign_keys = ON")  # Django's own default for its SQLite connections

    assert target.call("sqlmigrate_up").code == 0

    assert target.query("SELECT count(*) FROM child") == [(0,)]  # the cascade ran: keys were on
    assert target.query("PRAGMA foreign_keys") == [(1,)]


@pg_only
def test_migrations_that_cannot_change_the_session_do_not_pay_for_putting_it_back(target, tmp_path):
    # Reading pg_settings costs about 0.7 ms: only a migration that may change a setting pays.
    target.migration("20240101000001_plain", "CREATE TABLE plain (id integer);\nUPDATE plain SET id = 1;")
    target.migration("20240101000002_sets", "SET search_path = nowhere;")
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    queries = queries_on_the_wire(target.alias, tmp_path / "wire.trace", runner.migrate)

    settings_reads = [query for query in queries if "pg_settings" in query]
    assert len(settings_reads) == 2  # the run's settings, read once; then put back after migration 2
    assert queries.index(settings_reads[0]) > queries.index(next(q for q in queries if "CREATE TABLE plain" in q))
