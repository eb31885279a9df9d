"""What reaches the database is the file's SQL: only a BOM is dropped. Bytes no database takes as
SQL (NUL) and entries named like migrations that are not files are reported, never skipped."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from sqlmigrate_app.directory import load_directory
from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES

CRLF_FILE = (
    "-- UP\r\n"
    "CREATE TABLE notes (body text);\r\n"
    "INSERT INTO notes VALUES ('a\r\nb');\r\n"
    "-- DOWN\r\n"
    "DROP TABLE notes;\r\n"
)


def test_crlf_stays_crlf_in_the_sql_sent_and_the_checksum_reads_lf(target):
    target.write("20240101000001_notes.sql", CRLF_FILE.encode())

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT body FROM notes") == [("a\r\nb",)]  # what psql -f stores
    lf = load_directory(target.directory).migrations[0].checksum
    target.write("20240101000001_notes.sql", CRLF_FILE.replace("\r\n", "\n").encode())
    assert load_directory(target.directory).migrations[0].checksum == lf
    assert target.call("sqlmigrate_status", "--check").code == 0


def test_a_nul_byte_is_refused_at_load_naming_the_line_and_nothing_runs(target):
    target.write("20240101000001_half.sql", b"-- UP\nCREATE TABLE half (id integer);\nSELECT '\x00';\nCOMMIT;\n")

    validated = target.manage("sqlmigrate_validate")
    applied = target.manage("sqlmigrate_up")

    assert validated.returncode == EXIT_CODES[ProblemKind.BAD_FILE] == 7
    assert "20240101000001_half.sql:3: holds a NUL byte" in validated.stderr
    assert applied.returncode == 1 and "Traceback" not in applied.stderr
    assert "20240101000001_half.sql:3: holds a NUL byte" in applied.stderr
    assert target.tables() == set()


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_entries_named_like_migrations_that_are_not_files_are_reported(target):
    target.migration("20240101000001_good", "CREATE TABLE good (id integer);")
    os.mkfifo(target.directory / "20240101000002_pipe.sql")
    (target.directory / "20240101000003_folder.sql").mkdir()
    (target.directory / "20240101000004_broken.sql").symlink_to(target.directory / "nowhere.sql")

    # A named pipe with no writer: reading it would wait for ever.
    validated = target.manage("sqlmigrate_validate", timeout=30)
    applied = target.manage("sqlmigrate_up", timeout=30)

    assert validated.returncode == 7, validated.stderr
    assert "20240101000002_pipe.sql: is a named pipe (FIFO), not a regular file" in validated.stderr
    assert "20240101000003_folder.sql: is a directory, not a regular file" in validated.stderr
    assert "20240101000004_broken.sql: is a symbolic link to " in validated.stderr
    assert "which does not exist" in validated.stderr
    assert applied.returncode == 1 and "20240101000002_pipe.sql" in applied.stderr
    assert target.tables() == set()


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_a_symbolic_link_to_a_migration_file_is_read(target):
    elsewhere = target.directory.parent / "shared.sql"
    elsewhere.write_text("-- UP\nCREATE TABLE shared (id integer);\n")
    (target.directory / "20240101000001_shared.sql").symlink_to(elsewhere)

    assert target.call("sqlmigrate_up").code == 0
    assert "shared" in target.tables()


def test_executed_at_is_utc_whatever_the_session_time_zone(target, settings):
    """Without USE_TZ Django sets the PostgreSQL session to TIME_ZONE; the history still holds UTC."""
    settings.USE_TZ, settings.TIME_ZONE = False, "Asia/Tokyo"
    target.migration("20240101000001_one", "CREATE TABLE one (id integer);")
    from django.db import connections

    connections[target.alias].close()  # reconnect with the new zone
    assert target.call("sqlmigrate_up").code == 0

    utc_now = "SELECT CURRENT_TIMESTAMP AT TIME ZONE 'UTC'" if target.vendor == "postgresql" else None
    rows = target.query("SELECT executed_at FROM schema_migrations")
    if utc_now:
        (now,) = target.query(utc_now)[0]
        assert abs((now - rows[0][0]).total_seconds()) < 60
    status = json.loads(target.call("sqlmigrate_status", "--json").out)
    # The same shape from both databases: to the second, in UTC.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", status[0]["executed_at"])


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_the_sql_script_run_in_another_time_zone_records_utc(target):
    target.migration("20240101000001_one", "CREATE TABLE one (id integer);")
    script = target.call("sqlmigrate_up", "--sql").out

    ran = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", target.url],
        input=script,
        capture_output=True,
        text=True,
        env={**os.environ, "PGTZ": "Asia/Tokyo"},
        timeout=60,
    )

    assert ran.returncode == 0, ran.stderr
    (delta,) = target.query(
        "SELECT abs(extract(epoch FROM (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') - executed_at)) FROM schema_migrations"
    )[0]
    assert delta < 60
