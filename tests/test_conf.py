"""The settings, read in conf.py: the app works with none at all (every default, end to end),
``SQLMIGRATE_TABLE``, the directory from ``SQLMIGRATE_DIR`` / ``SQLMIGRATE_DIRS`` with a
directory and a history table per database alias, and an alias ``DATABASES`` does not have."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from sqlmigrate_app import conf

from .support.migrations import FIRST, SECOND, THIRD, three
from .support.target import ROOT, ok, register_alias, unregister_alias


def test_defaults(no_sqlmigrate_settings, tmp_path):
    assert conf.migrations_dir() == tmp_path / "migrations_sql"
    assert conf.migrations_dir("any_alias") == tmp_path / "migrations_sql"
    assert conf.table_name() == "schema_migrations"
    assert conf.lock_timeout() is None and conf.statement_timeout() is None
    assert conf.migrated_aliases() == ["default"]


def test_commands_work_with_no_settings(no_sqlmigrate_settings, tmp_path, target):
    def run(command, *args):
        out = io.StringIO()
        call_command(command, *args, database=target.alias, stdout=out, no_color=True)
        return out.getvalue()

    run("sqlmigrate_create", "create_notes")  # makes BASE_DIR / "migrations_sql"
    [path] = (tmp_path / "migrations_sql").glob("*_create_notes.sql")
    path.write_text("-- UP\nCREATE TABLE notes (id INTEGER);\n-- DOWN\nDROP TABLE notes;\n")
    run("sqlmigrate_up")
    assert "notes" in target.tables() and target.history() == [path.stem]
    assert "Create Notes" in run("sqlmigrate_status", "--check")
    run("sqlmigrate_validate")
    run("sqlmigrate_down")
    assert "notes" not in target.tables() and target.history() == []


def test_sqlmigrate_table_setting_is_honoured(target, settings):
    settings.SQLMIGRATE_TABLE = "my_history"
    three(target)
    ok(target.call("sqlmigrate_up"))
    assert "my_history" in target.tables() and "schema_migrations" not in target.tables()
    assert [row[0] for row in target.query("SELECT id FROM my_history ORDER BY id")] == [FIRST, SECOND, THIRD]
    assert '"state": "applied"' in ok(target.call("sqlmigrate_status", json=True)).out
    ok(target.call("sqlmigrate_down"))
    assert len(target.query("SELECT id FROM my_history")) == 2


def test_an_unknown_database_alias_is_a_one_line_error(target):
    result = target.call("sqlmigrate_status", database="nope")
    assert result.code == 1
    assert "unknown database alias 'nope'" in result.err


def test_the_directory_defaults_to_the_settings(target, settings, tmp_path):
    three(target)
    settings.SQLMIGRATE_DIR = str(target.directory)
    ok(target.call("sqlmigrate_up", to=FIRST, directory=None))
    assert target.history() == [FIRST]
    settings.SQLMIGRATE_DIRS = {target.alias: str(tmp_path / "elsewhere")}
    result = target.call("sqlmigrate_status", directory=None)
    assert result.code == 1
    assert f"{tmp_path / 'elsewhere'}: migrations directory does not exist" in result.err


COMMANDS = ["sqlmigrate_up", "sqlmigrate_down", "sqlmigrate_status", "sqlmigrate_validate", "sqlmigrate_create"]


@pytest.fixture
def analytics(tmp_path, django_db_blocker):
    """A second database (SQLite file), the Django alias ``analytics``."""
    with django_db_blocker.unblock():
        register_alias("analytics", f"sqlite:///{tmp_path / 'analytics.sqlite3'}")
        yield "analytics"
        unregister_alias("analytics")


def tables(alias):
    with connections[alias].cursor() as cursor:
        return set(connections[alias].introspection.table_names(cursor))


def history(alias):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT id FROM schema_migrations ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def run(command, *args, **options):
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO(), no_color=True, **options)
    return out.getvalue()


def write(directory, migration_id, table):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{migration_id}.sql").write_text(
        f"-- UP\nCREATE TABLE {table} (id INTEGER PRIMARY KEY);\n-- DOWN\nDROP TABLE {table};\n"
    )


def test_each_alias_applies_its_own_directory_and_keeps_its_own_history(target, analytics, settings, tmp_path):
    main_dir, analytics_dir = tmp_path / "sql" / "main", tmp_path / "sql" / "analytics"
    settings.SQLMIGRATE_DIRS = {target.alias: main_dir, analytics: analytics_dir}
    write(main_dir, "20240101000000_create_orders", "orders")
    write(main_dir, "20240102000000_create_customers", "customers")
    write(analytics_dir, "20240105000000_create_page_views", "page_views")

    created = run("sqlmigrate_create", "add_events", database=analytics)
    assert str(analytics_dir) in created
    new_file = next(analytics_dir.glob("*_add_events.sql"))
    new_file.write_text("-- UP\nCREATE TABLE events (id INTEGER);\n-- DOWN\nDROP TABLE events;\n")

    run("sqlmigrate_up", database=target.alias)
    run("sqlmigrate_up", database=analytics)
    assert {"orders", "customers"} <= target.tables() and not {"page_views", "events"} & target.tables()
    assert {"page_views", "events"} <= tables(analytics) and not {"orders", "customers"} & tables(analytics)
    assert target.history() == ["20240101000000_create_orders", "20240102000000_create_customers"]
    assert history(analytics) == ["20240105000000_create_page_views", new_file.stem]

    assert "Create Page Views" in run("sqlmigrate_status", "--check", database=analytics)
    assert "Create Orders" in run("sqlmigrate_status", "--check", database=target.alias)
    run("sqlmigrate_validate", database=analytics)
    run("sqlmigrate_validate", database=target.alias)

    run("sqlmigrate_down", database=analytics)
    assert history(analytics) == ["20240105000000_create_page_views"]
    assert "events" not in tables(analytics)
    assert target.history() == ["20240101000000_create_orders", "20240102000000_create_customers"]


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_alias_is_a_one_line_error(command, db):
    args = ["some_name"] if command == "sqlmigrate_create" else []
    with pytest.raises(CommandError) as raised:
        run(command, *args, database="replica")
    assert raised.value.returncode == 1
    assert str(raised.value) == "unknown database alias 'replica' (DATABASES has: default)"


def test_unknown_alias_exits_1_with_one_line_from_manage_py(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    done = subprocess.run(
        [sys.executable, "manage.py", "sqlmigrate_up", "--database", "replica"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == "CommandError: unknown database alias 'replica' (DATABASES has: default)\n"
