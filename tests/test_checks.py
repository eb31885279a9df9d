"""``manage.py check`` reports configuration mistakes and malformed files, without a database.

These tests are not marked ``django_db``: pytest-django fails any test that touches a database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks

from sqlmigrate_app import directory
from sqlmigrate_app.cache import CleanRecord
from sqlmigrate_app.checks import check_files
from sqlmigrate_app.directory import load_directory, signatures
from sqlmigrate_app.scaffold import create_migration_file
from sqlmigrate_app.statements import with_statements_checked

from .support.target import ROOT

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


@pytest.mark.parametrize(
    "setting",
    [
        lambda base: ("SQLMIGRATE_DIR", base / "migrations_sql"),  # the README's line
        lambda base: ("SQLMIGRATE_DIR", f"{base}/./migrations_sql/"),
        lambda base: ("SQLMIGRATE_DIRS", {"default": base / "migrations_sql"}),
    ],
)
def test_setting_the_default_dir_explicitly_is_the_same_as_leaving_it_out(no_sqlmigrate_settings, tmp_path, setting):
    name, value = setting(tmp_path)
    setattr(no_sqlmigrate_settings, name, value)

    assert messages() == [
        ("sqlmigrate.W001", f"No SQL migrations directory: {tmp_path / 'migrations_sql'} does not exist.")
    ]
    (tmp_path / "migrations_sql").mkdir()
    assert ids() == []
    no_sqlmigrate_settings.SQLMIGRATE_DIR = tmp_path / "migrations-sql"  # not the default: a typo
    assert ids() == ["sqlmigrate.E001"]


@pytest.mark.parametrize("table", ["1abc", "schema-migrations", "a" * 64, "x; DROP TABLE y", 42, "nl_table\n"])
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


@pytest.mark.parametrize("value", [-1, 1.5, "1MB", True])
def test_bad_batch_bytes_is_e013(settings, tmp_path, value):
    settings.SQLMIGRATE_DIR = tmp_path
    settings.SQLMIGRATE_BATCH_BYTES = value
    assert ids() == ["sqlmigrate.E013"]
    settings.SQLMIGRATE_BATCH_BYTES = 0
    assert ids() == []


@pytest.mark.parametrize(
    "lint",
    [{"timeout": 0}, {"timeout": "60s"}, {"timeout": True}, {"timeout": float("nan")}, {"exclude": "rule"}, {"x": 1}],
)
def test_bad_lint_setting_is_e008(settings, tmp_path, lint):
    settings.SQLMIGRATE_DIR = tmp_path
    settings.SQLMIGRATE_LINT = lint
    assert ids() == ["sqlmigrate.E008"]
    settings.SQLMIGRATE_LINT = {"exclude": ["prefer-robust-stmts"], "pg_version": "16", "timeout": 2.5}
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


# Reading only what changed (sqlmigrate_app.cache.CleanRecord) ---------------------------------

BAD_FILES = {
    "20240102000000_no_marker.sql": "CREATE TABLE t (id INTEGER);\n",
    "20240103000000_vacuum.sql": "-- UP\nVACUUM;\n",
    "20240103000000_same_second.sql": GOOD,
    "20240104000000_same_second_as_a_refused_one.sql": GOOD,
    "20240104000000_begin.sql": "-- UP\nBEGIN;\nSELECT 1;\n",
    "not-a-migration.sql": GOOD,
}


@pytest.fixture
def trusting(monkeypatch):
    """Trust a file's signature at once: the files of a test are younger than RACY_NS."""
    monkeypatch.setattr(directory, "RACY_NS", 0)


def write_files(directory, files):
    for name, text in files.items():
        (directory / name).write_text(text)


def errors_of(directory):
    errors, _ = check_files(directory)
    return errors


def validate_says(directory):
    return [str(error) for error in with_statements_checked(load_directory(directory)).errors]


@pytest.mark.usefixtures("trusting")
def test_the_check_reports_what_validate_reports_of_the_files_on_every_run(tmp_path):
    (tmp_path / "20240101000000_good.sql").write_text(GOOD)
    write_files(tmp_path, BAD_FILES)

    first = [str(error) for error in errors_of(tmp_path)]
    second = [str(error) for error in errors_of(tmp_path)]

    assert first == second == validate_says(tmp_path)
    assert len(first) == 5
    assert CleanRecord(tmp_path).read() == {
        CleanRecord.key(name, signature)  # type: ignore[arg-type]  # trusting: never None
        for name, signature in signatures(tmp_path).items()
        if name in ("20240101000000_good.sql", "20240103000000_same_second.sql")
    }


@pytest.mark.usefixtures("trusting")
def test_a_file_recorded_clean_is_not_read_again_until_its_signature_changes(tmp_path):
    path = tmp_path / "20240101000000_good.sql"
    path.write_text(GOOD)
    assert errors_of(tmp_path) == []
    record = CleanRecord(tmp_path)
    [key] = record.read()

    path.write_text("nonsense\n")  # a new signature: read, and reported
    assert [error.message for error in errors_of(tmp_path)] == ["SQL before the -- UP marker"]
    assert record.read() == set()

    [(name, signature)] = signatures(tmp_path).items()
    assert signature is not None  # trusting: a signature is taken at once
    record.write({CleanRecord.key(name, signature)})  # as if the nonsense had been found clean
    assert errors_of(tmp_path) == []


@pytest.mark.usefixtures("trusting")
def test_a_record_of_other_rules_or_another_directory_is_ignored(tmp_path):
    path = tmp_path / "20240101000000_bad.sql"
    path.write_text("nonsense\n")
    record = CleanRecord(tmp_path)
    [(name, signature)] = signatures(tmp_path).items()
    assert signature is not None  # trusting: a signature is taken at once
    record.write({CleanRecord.key(name, signature)})
    data = json.loads(record.path.read_text())

    record.path.write_text(json.dumps({**data, "rules": "0.0.0:1:2"}))
    assert len(errors_of(tmp_path)) == 1
    record.path.write_text(json.dumps({**data, "directory": "/elsewhere"}))
    assert len(errors_of(tmp_path)) == 1
    record.path.write_text("{not json")
    assert len(errors_of(tmp_path)) == 1


def test_a_file_changed_within_racy_ns_is_read_every_time_and_not_recorded(tmp_path):
    (tmp_path / "20240101000000_good.sql").write_text(GOOD)

    assert errors_of(tmp_path) == []
    assert CleanRecord(tmp_path).read() == set()


@pytest.mark.usefixtures("trusting")
def test_without_a_writable_cache_directory_every_file_is_read(tmp_path, monkeypatch):
    (tmp_path / "not-a-directory").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-directory"))
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "20240101000000_good.sql").write_text(GOOD)
    (migrations / "20240102000000_bad.sql").write_text("-- UP\nCOMMIT;\n")

    assert [error.line for error in errors_of(migrations)] == [2]
    assert [error.line for error in errors_of(migrations)] == [2]


def test_a_refused_statement_is_an_e003(settings, tmp_path):
    (tmp_path / "20240101000000_index.sql").write_text("-- UP\nCREATE INDEX CONCURRENTLY i ON t (n);\n")
    settings.SQLMIGRATE_DIR = tmp_path
    [(message_id, message)] = messages()
    assert message_id == "sqlmigrate.E003"
    assert message.startswith(f"{tmp_path / '20240101000000_index.sql'}:2: 'CREATE INDEX CONCURRENTLY ...' cannot run")


@pytest.mark.usefixtures("trusting")
def test_files_with_requires_or_an_empty_up_are_read_by_every_check(settings, tmp_path):
    (tmp_path / "20240101000000_needs.sql").write_text("-- sqlmigrate: requires=auth.0099_nothing\n-- UP\nSELECT 1;\n")
    (tmp_path / "20240101000001_fresh.sql").write_text("-- UP\n-- nothing yet\n")
    settings.SQLMIGRATE_DIR = tmp_path

    assert ids() == ["sqlmigrate.E007", "sqlmigrate.W002"]
    assert ids() == ["sqlmigrate.E007", "sqlmigrate.W002"]
    assert CleanRecord(tmp_path).read() == set()


def test_a_file_fresh_from_create_is_only_a_warning_for_the_system_check(settings, tmp_path):
    settings.SQLMIGRATE_DIR = tmp_path
    path = create_migration_file(tmp_path, "not written yet")

    [(check_id, message)] = messages()

    assert check_id == "sqlmigrate.W002"
    assert message.startswith(f"{path}:4: the -- UP section is empty: write its SQL, or add '-- sqlmigrate: empty'")
