"""Concurrent deploys: several real ``manage.py`` processes against one database."""

from __future__ import annotations

import fcntl
import sqlite3

import psycopg
import pytest

from sqlmigrate_app.backends.postgresql import advisory_lock_key

from .support.processes import Output, spawn

MIGRATIONS = 50
RUNNERS = 8


def write_logging_migrations(target, count, start=0):
    """``count`` migrations, each inserting its own number into ``log`` (and deleting it on DOWN)."""
    ids = []
    for number in range(start, start + count):
        migration_id = f"20240101{number // 60:04d}{number % 60:02d}_step_{number}"
        target.migration(
            migration_id, f"INSERT INTO log (step) VALUES ({number});", f"DELETE FROM log WHERE step = {number};"
        )
        ids.append(migration_id)
    return ids


def test_eight_runners_apply_each_migration_exactly_once(target):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    ids = write_logging_migrations(target, MIGRATIONS)

    runners = [spawn(target, "sqlmigrate_up") for _ in range(RUNNERS)]
    outputs = [runner.communicate(timeout=300) for runner in runners]

    for runner, (out, err) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, out + err
        assert "Traceback" not in err
    assert target.query("SELECT COUNT(*), COUNT(DISTINCT step) FROM log")[0] == (MIGRATIONS, MIGRATIONS)
    assert target.history() == ids
    applied = sum(out.count(" OK (") for out, _ in outputs)
    assert applied == MIGRATIONS


def test_up_and_down_at_once_leave_history_and_schema_in_step(target):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    ids = write_logging_migrations(target, 10)
    assert target.call("sqlmigrate_up").code == 0
    ids += write_logging_migrations(target, 10, start=10)

    up, down = spawn(target, "sqlmigrate_up"), spawn(target, "sqlmigrate_down", "3")
    for runner in (up, down):
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, out + err

    # Either order is fine (down first: 7 + 13 applied = 20; up first: 20 - 3 = 17), but the
    # history must be a prefix of the files, with exactly the matching log rows.
    history = target.history()
    assert history in (ids, ids[:17]), history
    steps = sorted(row[0] for row in target.query("SELECT step FROM log"))
    assert steps == [int(migration_id.rsplit("_", 1)[1]) for migration_id in history]


@pytest.fixture
def held_lock(target):
    """Hold the migration lock from outside, as another runner would; yield a release function."""
    if target.vendor == "postgresql":
        holder = psycopg.connect(target.url, autocommit=True)
        key = advisory_lock_key(holder.execute("SELECT current_schema()").fetchone()[0], "schema_migrations")  # type: ignore[index]
        holder.execute("SELECT pg_advisory_lock(%s)", [key])
        yield lambda: holder.execute("SELECT pg_advisory_unlock(%s)", [key])
        holder.close()
    else:
        with open(target.url.removeprefix("sqlite:///") + ".schema_migrations.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield lambda: fcntl.flock(handle, fcntl.LOCK_UN)


def test_lock_timeout_gives_a_clear_error(target, held_lock):
    target.migration("20240101000000_things", "CREATE TABLE things (id INTEGER);", "DROP TABLE things;")

    result = target.manage("sqlmigrate_up", "--wait", "1")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "another sqlmigrate runner" in error or "lock" in error
    assert "1 s" in error
    held_lock()
    assert "things" not in target.tables()


def test_waiter_says_it_is_waiting_then_applies(target, held_lock):
    target.migration("20240101000000_things", "CREATE TABLE things (id INTEGER);", "DROP TABLE things;")

    waiter = spawn(target, "sqlmigrate_up")
    out = Output(waiter.stdout)
    out.wait_for("Waiting for another sqlmigrate runner")
    assert waiter.poll() is None and "things" not in target.tables()
    held_lock()
    waiter.wait(timeout=60)

    assert waiter.returncode == 0, out.text + waiter.stderr.read()  # type: ignore[union-attr]
    assert "Applied 1 migration" in out.text
    assert target.history() == ["20240101000000_things"]


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_sqlite_writer_outside_sqlmigrate_is_waited_for_up_to_the_lock_timeout(target):
    target.migration("20240101000000_things", "CREATE TABLE things (id INTEGER);", "DROP TABLE things;")
    holder = sqlite3.connect(target.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("CREATE TABLE keep_busy (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")

    result = target.manage("sqlmigrate_up", "--wait", "1")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["CommandError: database 'default': database is locked"]
    holder.execute("COMMIT")
    holder.close()
    assert "things" not in target.tables()


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_the_lock_timeout_names_who_holds_the_lock(target):
    target.migration("20240101000000_things", "CREATE TABLE things (id INTEGER);", "DROP TABLE things;")
    holder = psycopg.connect(target.url, autocommit=True, application_name="deploy-7")
    key = advisory_lock_key("public", "schema_migrations")
    holder.execute(f"SELECT pg_advisory_lock({key})")
    pid = holder.info.backend_pid

    try:
        result = target.manage("sqlmigrate_up", "--wait", "1")
    finally:
        holder.close()

    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1
    assert f"server process {pid} (application 'deploy-7', from 127.0.0.1), idle since" in error[0]
    assert f"last query: 'SELECT pg_advisory_lock({key})'" in error[0]
    assert f"SELECT pg_terminate_backend({pid})" in error[0]
