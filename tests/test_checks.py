"""``manage.py check`` reports configuration mistakes and malformed files, without a database.

These tests are not marked ``django_db``: pytest-django fails any test that touches a database.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks

from .conftest import ROOT

GOOD = "-- UP\nCREATE TABLE t (id INTEGER);\n-- DOWN\nDROP TABLE t;\n"


def messages():
    return [(message.id, message.msg) for message in run_checks(tags=["sqlmigrate"])]


def ids():
    return sorted(message.id for message in run_checks(tags=["sqlmigrate"]))


def test_valid_configuration_has_no_messages(settings, tmp_path):
    (tmp_path / "20240101000000_create_t.sql").write_text(GOOD)
    settings.SQLMIGRATE_DIR = tmp_path
    assert ids() == []


def test_missing_explicit_dir_is_e001(settings, tmp_path):
    settings.SQLMIGRATE_DIR = tmp_path / "nope"
    assert messages() == [("sqlmigrate.E001", f"SQLMIGRATE_DIR {tmp_path / 'nope'} does not exist.")]


def test_dir_that_is_a_file_is_e001(settings, tmp_path):
    (tmp_path / "file").write_text("")
    settings.SQLMIGRATE_DIR = tmp_path / "file"
    assert messages() == [("sqlmigrate.E001", f"SQLMIGRATE_DIR {tmp_path / 'file'} is not a directory.")]


def test_no_settings_and_no_default_dir_is_only_a_warning(no_sqlmigrate_settings, tmp_path):
    assert ids() == ["sqlmigrate.W001"]
    (tmp_path / "migrations_sql").mkdir()
    assert ids() == []


@pytest.mark.parametrize("table", ["1abc", "schema-migrations", "a" * 64, "x; DROP TABLE y", 42])
def test_invalid_table_is_e002(settings, tmp_path, table):
    settings.SQLMIGRATE_DIR = tmp_path
    settings.SQLMIGRATE_TABLE = table
    assert ids() == ["sqlmigrate.E002"]


def test_each_malformed_file_is_an_e003_with_file_and_line(settings, tmp_path):
    (tmp_path / "20240101000000_good.sql").write_text(GOOD)
    (tmp_path / "20240102000000_no_marker.sql").write_text("CREATE TABLE t (id INTEGER);\n")
    (tmp_path / "20240103000000_bad_directive.sql").write_text("-- sqlmigrate: retry\n-- UP\nSELECT 1;\n")
    (tmp_path / "bad-name.sql").write_text(GOOD)
    settings.SQLMIGRATE_DIR = tmp_path
    found = sorted(msg for message_id, msg in messages() if message_id == "sqlmigrate.E003")
    assert len(found) == 3
    assert found[0].startswith(f"{tmp_path / '20240102000000_no_marker.sql'}:1: SQL before the -- UP marker")
    assert found[1].startswith(f"{tmp_path / '20240103000000_bad_directive.sql'}:1: unknown directive")
    assert found[2].startswith(f"{tmp_path / 'bad-name.sql'}: bad file name")


def test_dirs_naming_an_unknown_alias_is_e004(settings, tmp_path):
    settings.SQLMIGRATE_DIR = tmp_path
    settings.SQLMIGRATE_DIRS = {"analytcs": tmp_path}
    assert messages() == [
        ("sqlmigrate.E004", "SQLMIGRATE_DIRS names the database alias 'analytcs', which is not in DATABASES.")
    ]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_every_directory_of_dirs_is_checked(settings, tmp_path):
    settings.SQLMIGRATE_DIR = tmp_path
    settings.DATABASES = {**settings.DATABASES, "analytics": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}
    settings.SQLMIGRATE_DIRS = {"analytics": tmp_path / "analytics"}
    assert messages() == [("sqlmigrate.E001", f"SQLMIGRATE_DIRS['analytics'] {tmp_path / 'analytics'} does not exist.")]


@pytest.mark.parametrize("setting", ["SQLMIGRATE_LOCK_TIMEOUT", "SQLMIGRATE_STATEMENT_TIMEOUT"])
def test_bad_timeout_is_e005(settings, tmp_path, setting):
    settings.SQLMIGRATE_DIR = tmp_path
    setattr(settings, setting, "5s'; DROP TABLE x; --")
    assert ids() == ["sqlmigrate.E005"]
    setattr(settings, setting, "5s")
    assert ids() == []


def test_dirs_not_a_dict_is_e006(settings, tmp_path):
    settings.SQLMIGRATE_DIR = tmp_path
    settings.SQLMIGRATE_DIRS = [tmp_path]
    assert ids() == ["sqlmigrate.E006"]


def test_manage_py_check_reports_without_connecting_to_the_database(tmp_path):
    (tmp_path / "20240101000000_broken.sql").write_text("-- UP\nSELECT 1;\n-- UP\nSELECT 2;\n")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_demo",
        "SQLMIGRATE_TEST_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://nobody:secret@127.0.0.1:9/unreachable",  # any connection would fail
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert (
        f"?: (sqlmigrate.E003) {tmp_path / '20240101000000_broken.sql'}:3: second -- UP marker (the first is on line 1)"
        in done.stderr
    )
    assert "connection" not in done.stderr.lower()
