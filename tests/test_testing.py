"""A project's own tests get test databases with its SQL migrations applied, under Django's test
runner (``TEST_RUNNER``) and pytest-django (``conftest.py``), with --keepdb / --reuse-db; the
production ``migrate`` never applies them.

Each test runs the demo project in a subprocess against the ``target`` database server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from .support.target import ROOT

DEMO_MIGRATIONS = ROOT / "migrations_sql"
SQL_TABLES = {"client_registrations", "agent_definitions", "schema_migrations"}
EXTRA = "-- UP\nCREATE TABLE audit_log (id INTEGER PRIMARY KEY);\n-- DOWN\nDROP TABLE audit_log;\n"


def run(target, *args: str, directory: Path | None = None, test_db: str | None = None) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": target.url,
        "DJANGO_SETTINGS_MODULE": "tests.settings_demo",
        "SQLMIGRATE_TEST_DIR": str(directory or DEMO_MIGRATIONS),
        "DJANGO_TEST_DATABASE_NAME": test_db or "",
    }
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture
def kept_test_db(target, tmp_path):
    """A name for a test database that survives the run; dropped (PostgreSQL) at the end."""
    if target.vendor == "sqlite":
        yield str(tmp_path / "test_db.sqlite3")
        return
    name = target.url.rsplit("/", 1)[1] + "_kept"
    yield name
    with psycopg.connect(target.url, autocommit=True) as admin:
        for kept in (name, f"{name}_1", f"{name}_2"):  # and the --parallel clones
            admin.execute(f"DROP DATABASE IF EXISTS {kept} WITH (FORCE)")


def copy_of_demo_migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations_sql"
    shutil.copytree(DEMO_MIGRATIONS, directory)
    return directory


def test_manage_py_test_applies_sql_migrations_and_keepdb_applies_only_new_ones(target, tmp_path, kept_test_db):
    directory = copy_of_demo_migrations(tmp_path)
    manage_test = ["manage.py", "test", "project", "--noinput", "--keepdb"]

    first = run(target, *manage_test, "--parallel", "2", directory=directory, test_db=kept_test_db)
    assert "Applied 5 SQL migrations to test database for alias 'default'." in first
    # Django clones the test database for --parallel after the SQL migrations ran ("Using existing clone" with --keepdb)
    assert first.index("Applied 5 SQL migrations") < first.index("existing clone for alias 'default'")
    assert "Ran 2 tests" in first and "OK" in first

    again = run(target, *manage_test, directory=directory, test_db=kept_test_db)  # kept, already migrated
    assert "SQL migration" not in again
    assert "Ran 2 tests" in again

    (directory / "20250101000000_create_audit_log.sql").write_text(EXTRA)
    newer = run(target, *manage_test, directory=directory, test_db=kept_test_db)
    assert "Applied 1 SQL migration to test database for alias 'default'." in newer
    assert "Ran 2 tests" in newer


def test_pytest_django_applies_sql_migrations_and_reuse_db_applies_only_new_ones(target, tmp_path, kept_test_db):
    directory = copy_of_demo_migrations(tmp_path)
    pytest_run = ["-m", "pytest", "project", "-p", "no:cacheprovider", "-s", "-v", "--reuse-db"]

    first = run(target, *pytest_run, directory=directory, test_db=kept_test_db)
    assert "2 passed" in first
    assert "Applied 5 SQL migrations" in first

    again = run(target, *pytest_run, directory=directory, test_db=kept_test_db)
    assert "2 passed" in again
    assert "SQL migration" not in again

    (directory / "20250101000000_create_audit_log.sql").write_text(EXTRA)
    newer = run(target, *pytest_run, directory=directory, test_db=kept_test_db)
    assert "2 passed" in newer
    assert "Applied 1 SQL migration" in newer


def test_production_migrate_and_server_start_never_apply_sql_migrations(target):
    run(target, "manage.py", "migrate", "--noinput")
    run(target, "-c", "import django; django.setup(); from project.wsgi import application")
    tables = target.tables()
    assert "auth_user" in tables  # Django's migrations ran...
    assert not SQL_TABLES & tables  # ...the SQL ones did not


def test_migrate_outside_test_setup_leaves_sql_migrations_alone_in_process(target, settings):
    from django.core.management import call_command

    settings.SQLMIGRATE_DIR = DEMO_MIGRATIONS
    call_command("migrate", "contenttypes", database=target.alias, verbosity=0)
    assert "schema_migrations" not in target.tables()


def test_which_test_databases_get_sql_migrations(target, settings, tmp_path):
    from sqlmigrate_app.errors import SqlMigrateError
    from sqlmigrate_app.testing import migrate_test_database

    target.migration("20240101000000_create_things", "CREATE TABLE things (id INTEGER);", "DROP TABLE things;")
    settings.SQLMIGRATE_DIR = tmp_path / "not_used"
    assert migrate_test_database(target.alias) == 0  # not 'default' and not in SQLMIGRATE_DIRS: left alone
    assert "schema_migrations" not in target.tables()

    settings.SQLMIGRATE_DIRS = {target.alias: target.directory}
    assert migrate_test_database(target.alias, verbosity=0) == 1
    assert migrate_test_database(target.alias, verbosity=0) == 0  # already up to date
    assert target.history() == ["20240101000000_create_things"]

    settings.BASE_DIR = tmp_path
    settings.SQLMIGRATE_DIRS = {target.alias: tmp_path / "migrations_sql"}  # the default, not made yet
    assert migrate_test_database(target.alias) == 0  # left alone, as when it is not set (W001 says so)
    settings.SQLMIGRATE_DIRS = {target.alias: tmp_path / "typo"}  # set explicitly but missing: an error
    with pytest.raises(SqlMigrateError, match="cannot apply the SQL migrations to test database"):
        migrate_test_database(target.alias)
