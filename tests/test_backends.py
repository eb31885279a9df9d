"""The backends own every decision that depends on the database: what they tell of real errors
(a lock timeout, a lost connection), and the databases sqlmigrate refuses (one without a
backend, PostgreSQL through psycopg2), each in one line naming the alias and what to do."""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django.db
import psycopg
import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

import sqlmigrate_app
from sqlmigrate_app.backends import backend_for, driver_error
from sqlmigrate_app.errors import ConfigurationError, DatabaseError
from sqlmigrate_app.runner import MigrationRunner

from .support.processes import wait_until
from .support.target import ROOT

PACKAGE = Path(sqlmigrate_app.__file__).parent
NO_BACKEND = "nobackend"
pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
# The alias without a backend is added to DATABASES for the system check, which reads it there.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
# A real manage.py process in which Django's PostgreSQL backend loads psycopg2: psycopg (3)
# cannot be imported there, so Django falls back to psycopg2, as on a machine without it.
WITHOUT_PSYCOPG3 = (
    "import sys; sys.modules['psycopg'] = None; "
    "from django.core.management import execute_from_command_line; execute_from_command_line(sys.argv)"
)


def test_nothing_outside_the_backends_asks_which_database_it_is():
    asking = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file() and path.suffix in (".py", ".html", ".js", ".css") and "backends" not in path.parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search("vendor", line, re.IGNORECASE)
    ]

    assert asking == []


# Databases without a backend --------------------------------------------------------------------


@pytest.fixture
def no_backend_alias(settings: Any, tmp_path: Path) -> Iterator[str]:
    """A database alias on Django's dummy engine (its ENGINE left out): a real Django database
    sqlmigrate has no backend for, as MySQL or Oracle would be, with a migrations directory."""
    (tmp_path / "20240101000000_create_t.sql").write_text("-- UP\nCREATE TABLE t (id INTEGER);\n-- DOWN\n")
    settings.DATABASES = {**settings.DATABASES, NO_BACKEND: {}}
    settings.SQLMIGRATE_DIRS = {NO_BACKEND: tmp_path}
    connections.settings[NO_BACKEND] = connections.configure_settings({"default": {}, NO_BACKEND: {}})[NO_BACKEND]
    yield NO_BACKEND
    del connections[NO_BACKEND]
    del connections.settings[NO_BACKEND]


NO_BACKEND_MESSAGE = (
    f"database {NO_BACKEND!r} is unknown (ENGINE django.db.backends.dummy): sqlmigrate works on PostgreSQL and "
    "SQLite only; use it on an alias of one of those (--database, SQLMIGRATE_DIRS)"
)


@pytest.mark.parametrize(
    "command",
    [
        ["sqlmigrate_status"],
        ["sqlmigrate_up"],
        ["sqlmigrate_up", "--sql"],
        ["sqlmigrate_validate"],
        ["sqlmigrate_verify", "--all"],
        ["sqlmigrate_lint", "--all"],
        ["sqlmigrate_dump"],
    ],
)
def test_a_database_without_a_backend_is_refused_in_one_line(no_backend_alias, command):
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError) as refused:
        call_command(*command, database=no_backend_alias, stdout=out, stderr=err)

    assert str(refused.value) == NO_BACKEND_MESSAGE
    assert refused.value.returncode == 1
    assert out.getvalue() == err.getvalue() == ""


def test_a_runner_of_a_database_without_a_backend_is_a_configuration_error(no_backend_alias):
    with pytest.raises(ConfigurationError, match=re.escape(NO_BACKEND_MESSAGE)):
        MigrationRunner(no_backend_alias)


def test_the_system_check_names_a_database_without_a_backend(no_backend_alias):
    messages = [(message.id, message.msg) for message in run_checks(tags=["sqlmigrate"])]

    assert messages == [("sqlmigrate.E009", f"{NO_BACKEND_MESSAGE}.")]


def test_an_empty_default_database_is_not_one_with_sql_migrations(settings, no_sqlmigrate_settings, tmp_path):
    """Django's ``"default": {}`` for a project of named databases only: no E009 for it."""
    (tmp_path / "migrations_sql").mkdir()
    before = connections.settings["default"]
    connections.settings["default"] = connections.configure_settings({"default": {}})["default"]
    try:
        ids = [message.id for message in run_checks(tags=["sqlmigrate"])]
    finally:
        connections.settings["default"] = before

    assert ids == []


# PostgreSQL through psycopg2 --------------------------------------------------------------------


def manage_without_psycopg3(target, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG3, *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )


PSYCOPG2_MESSAGE = (
    "database 'default' is PostgreSQL through psycopg2: sqlmigrate needs psycopg 3; pip install 'psycopg[binary]' "
    "(Django uses it when it is installed)"
)


@pg_only
def test_postgresql_through_psycopg2_is_refused_in_one_line(target):
    target.migration("20240101000000_create_t", "CREATE TABLE t (id INTEGER);")

    result = manage_without_psycopg3(target, "sqlmigrate_up", "--dir", str(target.directory))

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"CommandError: {PSYCOPG2_MESSAGE}"]
    assert target.tables() == set()


@pg_only
def test_the_system_check_names_postgresql_through_psycopg2(target):
    result = manage_without_psycopg3(target, "check")

    assert result.returncode == 1
    assert f"(sqlmigrate.E009) {PSYCOPG2_MESSAGE}." in result.stderr


# What a backend tells of an error ----------------------------------------------------------------


def locked_out(target) -> Exception:
    """The error of a statement that gave up waiting for a lock another session holds: on
    PostgreSQL after its lock_timeout; on SQLite (which has none) after its busy timeout."""
    backend = backend_for(connections[target.alias])
    target.query("CREATE TABLE busy (id INTEGER)")
    holder: Any
    if target.vendor == "sqlite":
        holder = sqlite3.connect(target.url.removeprefix("sqlite:///"))
        holder.execute("BEGIN EXCLUSIVE")
        statements = ["PRAGMA busy_timeout = 100", "INSERT INTO busy VALUES (1)"]
    else:
        holder = psycopg.connect(target.url)
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        statements = ["SET lock_timeout = '100ms'", "ALTER TABLE busy ADD COLUMN x INTEGER"]
    try:
        cursor = backend.raw_cursor()
        with pytest.raises(driver_error(connections[target.alias])) as caught:
            for sql in statements:
                cursor.execute(sql)
    finally:
        holder.close()
    return caught.value


def test_a_lock_timeout_is_told_by_the_backend(target):
    backend = backend_for(connections[target.alias])

    error = locked_out(target)

    # Only PostgreSQL's lock_timeout is one: a migration it stopped was rolled back whole and may
    # be tried again. SQLite has no lock timeout of a statement, so nothing is retried there.
    assert backend.is_lock_timeout(error) == (target.vendor == "postgresql")
    assert not backend.connection_lost(error)


def test_another_error_is_neither_a_lock_timeout_nor_a_lost_connection(target):
    backend = backend_for(connections[target.alias])
    with pytest.raises(driver_error(connections[target.alias])) as caught:
        backend.raw_cursor().execute("SELECT * FROM nowhere")

    assert not backend.is_lock_timeout(caught.value)
    assert not backend.connection_lost(caught.value)


@pg_only
def test_a_terminated_session_is_a_lost_connection(target):
    backend = backend_for(connections[target.alias])
    cursor = backend.raw_cursor()
    cursor.execute("SELECT pg_catalog.pg_backend_pid()")
    [pid] = cursor.fetchone()

    def terminate() -> None:
        sleeping = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE 'SELECT pg_sleep%%'"
        with psycopg.connect(target.url, autocommit=True) as admin:
            wait_until(lambda: admin.execute(sleeping, [pid]).fetchone() is not None, what="the sleeping session")
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    killer = threading.Thread(target=terminate)
    killer.start()
    with pytest.raises(driver_error(connections[target.alias])) as caught:
        cursor.execute("SELECT pg_sleep(30)")
    killer.join(timeout=60)

    assert getattr(caught.value, "sqlstate", None) == "57P01"  # admin_shutdown: the server says why it ends the session
    assert backend.connection_lost(caught.value)
    assert backend.connection_lost()  # and the connection is seen gone afterwards


def test_a_closed_connection_is_lost(target):
    backend = backend_for(connections[target.alias])
    backend.raw_cursor().execute("SELECT 1")

    connections[target.alias].close()

    assert backend.connection_lost()


# A database error in one line --------------------------------------------------------------------


def test_a_database_error_keeps_its_kind_sqlstate_and_alias(target):
    """A history table that cannot be read (here a view whose query fails) is one line naming the
    database, and still the database's error underneath."""
    if target.vendor == "postgresql":
        target.query(
            "CREATE VIEW schema_migrations AS SELECT '1' AS id, 'n' AS name, NULL::timestamp AS executed_at, "
            "(1 / 0)::text AS checksum"
        )
    else:  # SQLite lets the table under a view go, and fails when the view is read
        target.query("CREATE TABLE gone (x TEXT)")
        target.query(
            "CREATE VIEW schema_migrations AS SELECT x AS id, x AS name, x AS executed_at, x AS checksum FROM gone"
        )
        target.query("DROP TABLE gone")
    runner = MigrationRunner(target.alias, target.directory)

    with pytest.raises(DatabaseError) as caught:
        runner.status()

    error = caught.value
    assert error.using == target.alias
    assert isinstance(error.__cause__, django.db.Error)  # Django's cursor's error, as it was raised
    assert isinstance(error.error, driver_error(connections[target.alias]))  # the driver's, under it
    assert str(error).startswith(f"database {target.alias!r}: ") and "\n" not in str(error)
    if target.vendor == "postgresql":
        assert (error.sqlstate, str(error)) == ("22012", f"database {target.alias!r}: division by zero")
    else:
        assert (error.sqlstate, str(error)) == (None, f"database {target.alias!r}: no such table: main.gone")
    assert target.call("sqlmigrate_status").err.splitlines()[-1] == str(error)
