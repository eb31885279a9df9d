"""Faults leave nothing half done: failures, SIGKILL, a terminated backend, timeouts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import pytest

from .support.processes import Output, spawn, wait_until

FIRST = "20240101000000_create_a"
SLOW = "20240101000001_slow"
LAST = "20240101000002_create_c"
# Keeps SQLite busy for many seconds, so the process can be killed in the middle.
SQLITE_BURN = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) SELECT count(*) FROM c;"
)


def write_three(target, middle_up):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SLOW, middle_up, "DROP TABLE b;")
    target.migration(LAST, "CREATE TABLE c (id INTEGER);", "DROP TABLE c;")


def assert_stopped_before_middle(target):
    assert target.history() == [FIRST]
    assert {"a", "b", "c"} & target.tables() == {"a"}


def test_failing_migration_is_rolled_back_and_applied_once_fixed(target):
    write_three(target, "CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);\nINSERT INTO nowhere VALUES (1);")

    result = target.manage("sqlmigrate_up")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert f"{SLOW}.sql:4: {SLOW} failed:" in error and "nowhere" in error
    assert "rolled back, nothing of it was applied" in error
    assert_stopped_before_middle(target)

    write_three(target, "CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);")
    assert target.manage("sqlmigrate_up").returncode == 0
    assert target.history() == [FIRST, SLOW, LAST]
    assert target.query("SELECT id FROM b") == [(1,)]


def test_sigkill_mid_migration_leaves_nothing_half_done(target):
    slow = "SELECT pg_sleep(30);" if target.vendor == "postgresql" else SQLITE_BURN
    write_three(target, f"CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);\n{slow}")

    runner = spawn(target, "sqlmigrate_up")
    out = Output(runner.stdout)
    out.wait_for(f"Applying {SLOW}...")
    if target.vendor == "postgresql":
        wait_until(
            lambda: target.query(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
            )
        )
    else:
        journal = Path(target.url.removeprefix("sqlite:///") + "-journal")
        wait_until(journal.exists, what="SQLite's rollback journal (a write transaction under way)")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)

    assert_stopped_before_middle(target)
    write_three(target, "CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);")
    # The killed session's lock must not outlive it for long (PG notices the dead client).
    result = target.manage("sqlmigrate_up", "--wait", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.history() == [FIRST, SLOW, LAST]
    assert target.query("SELECT id FROM b") == [(1,)]


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_terminated_backend_is_reported_as_a_lost_connection(target):
    write_three(target, "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(30);")

    runner = spawn(target, "sqlmigrate_up")
    query = "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
    wait_until(lambda: target.query(query), what="the migration's backend")
    target.query("SELECT pg_terminate_backend(%s)", [target.query(query)[0][0]])
    out, err = runner.communicate(timeout=60)

    assert runner.returncode == 1, out + err
    assert "Traceback" not in err
    error = err.strip().splitlines()[-1]
    assert f"{SLOW}.sql" in error and "lost the connection to database 'default'" in error
    assert_stopped_before_middle(target)


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_statement_timeout_directive_applies_to_that_migration_only(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);\nSELECT pg_sleep(0.5);", "DROP TABLE a;")
    target.migration(
        SLOW, "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(5);", "", header="-- sqlmigrate: statement-timeout=200ms\n"
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "canceling statement due to statement timeout" in result.err
    assert "rolled back" in result.err
    assert_stopped_before_middle(target)


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_statement_timeout_setting_is_the_default(target, settings):
    settings.SQLMIGRATE_STATEMENT_TIMEOUT = "200ms"
    write_three(target, "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(5);")

    result = target.call("sqlmigrate_up")

    assert result.code == 1 and "canceling statement due to statement timeout" in result.err
    assert_stopped_before_middle(target)
    assert target.query("SHOW statement_timeout") != [("200ms",)]  # SET LOCAL: gone after the transaction


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
@pytest.mark.parametrize("source", ["directive", "setting"])
def test_lock_timeout_gives_up_on_a_locked_table(target, settings, source):
    target.query("CREATE TABLE busy (id INTEGER)")
    header = ""
    if source == "directive":
        header = "-- sqlmigrate: lock-timeout=200ms\n"
    else:
        settings.SQLMIGRATE_LOCK_TIMEOUT = "200ms"
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SLOW, "CREATE TABLE b (id INTEGER);\nALTER TABLE busy ADD COLUMN x INTEGER;", "", header=header)

    with psycopg.connect(target.url) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert f"{SLOW}.sql:" in result.err and "canceling statement due to lock timeout" in result.err
    assert_stopped_before_middle(target)
    assert target.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy'") == [(1,)]
