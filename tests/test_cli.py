"""A few real ``python manage.py`` runs: what a user at a shell sees."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from .support.target import ROOT

DEMO = sorted(path.name[:-4] for path in (ROOT / "migrations_sql").glob("*.sql"))
DEMO_TABLES = {"client_registrations", "agent_definitions", "workflow_definitions", "tool_definitions", "rag_databases"}


def copy_demo(target):
    for path in (ROOT / "migrations_sql").glob("*.sql"):
        shutil.copy(path, target.directory / path.name)


def test_demo_quick_start_up_status_and_all_the_way_down(target):
    copy_demo(target)
    up = target.manage("sqlmigrate_up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.count("... OK (") == 5
    assert "Applied 5 migrations in" in up.stdout
    assert target.tables() >= DEMO_TABLES

    status = target.manage("sqlmigrate_status")
    assert status.returncode == 0, status.stderr
    *lines, summary = status.stdout.splitlines()
    assert [line.split(" | ")[1] for line in lines] == DEMO
    assert summary == "5 migrations: 5 applied, 0 pending"
    assert lines[0].startswith(
        "✅ Executed | 20241201000001_create_client_registrations | Create Client Registrations | "
    )

    assert target.manage("sqlmigrate_status", "--check").returncode == 0
    assert target.manage("sqlmigrate_validate").returncode == 0

    down = target.manage("sqlmigrate_down", "5")
    assert down.returncode == 0, down.stderr
    assert "Rolled back 5 migrations" in down.stdout
    assert not DEMO_TABLES & target.tables()
    assert target.history() == []


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_errors_are_one_line_on_stderr_without_a_traceback(target):
    target.migration("20240101000000_broken", "SELECT * FROM no_such_table;")
    result = target.manage("sqlmigrate_up")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "20240101000000_broken.sql:2: 20240101000000_broken failed: no such table: no_such_table" in lines[0]

    with_traceback = target.manage("sqlmigrate_up", "--traceback")
    assert with_traceback.returncode == 1
    assert "Traceback (most recent call last)" in with_traceback.stderr


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_status_check_exit_code_reaches_the_shell(target):
    copy_demo(target)
    result = target.manage("sqlmigrate_status", "--check")
    assert result.returncode == 3
    assert result.stderr == "5 pending migrations: run sqlmigrate_up\n"  # calm: nothing is wrong
    rows = json.loads(target.manage("sqlmigrate_status", "--json").stdout)
    assert {row["state"] for row in rows} == {"pending"}


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_verbosity_0_silences_progress_and_no_color_has_no_escapes(target):
    copy_demo(target)
    quiet = target.manage("sqlmigrate_up", "-v", "0")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    assert len(target.history()) == 5

    colored = target.manage("sqlmigrate_status", "--force-color")
    assert "\x1b[" in colored.stdout
    plain = target.manage("sqlmigrate_status", "--no-color")
    assert plain.returncode == 0
    assert "\x1b[" not in plain.stdout
    assert plain.stdout.count("✅ Executed | ") == 5


def test_readme_quick_start_in_a_copy_of_the_demo_project(tmp_path):
    """``python manage.py sqlmigrate_up && python manage.py sqlmigrate_status`` with no DATABASE_URL:
    the demo's SQLite default, db.sqlite3 next to manage.py."""
    shutil.copy(ROOT / "manage.py", tmp_path / "manage.py")
    shutil.copytree(ROOT / "project", tmp_path / "project", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "migrations_sql", tmp_path / "migrations_sql")
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    for command in ("sqlmigrate_up", "sqlmigrate_status"):
        result = subprocess.run(
            [sys.executable, "manage.py", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
    assert result.stdout.count("✅ Executed") == 5
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables >= DEMO_TABLES | {"schema_migrations"}


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("locale", "mark"),
    [
        ({"LANG": "C"}, "✅ Executed"),  # Python 3.7+ writes UTF-8 under the C locale (PEP 538, 540)
        ({"LC_ALL": "C", "PYTHONUTF8": "0"}, "[x] Executed"),  # unless told not to: then ASCII
    ],
)
def test_under_lang_c_status_keeps_its_symbols_as_docs_commands_md_says(target, locale, mark):
    target.env.update({"LANG": "", "LC_ALL": "", "LC_CTYPE": "", "PYTHONIOENCODING": "", "PYTHONUTF8": "", **locale})
    target.migration("20240101000000_create_a", "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    assert target.manage("sqlmigrate_up").returncode == 0

    status = target.manage("sqlmigrate_status")

    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{mark} | 20240101000000_create_a | Create A | ")


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_a_console_that_cannot_show_the_symbols_gets_readable_ascii(target, encoding):
    target.env["PYTHONIOENCODING"] = encoding
    target.migration("20240101000000_cafe", "CREATE TABLE café (note TEXT DEFAULT '⚠️ ✅');", "DROP TABLE café;")
    target.migration("20240101000001_later", "CREATE TABLE later (note TEXT DEFAULT '⏳');")
    assert target.manage("sqlmigrate_up", "--to", "20240101000000_cafe").returncode == 0

    status = target.manage("sqlmigrate_status")
    plan = target.manage("sqlmigrate_up", "--plan", "-v", "2")
    as_json = target.manage("sqlmigrate_status", "--json")
    validate = target.manage("sqlmigrate_validate")

    for result in (status, plan, as_json, validate):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    assert status.stdout.splitlines()[0].startswith("[x] Executed | 20240101000000_cafe | Cafe | ")
    assert status.stdout.splitlines()[1] == "[ ] Pending  | 20240101000001_later | Later (irreversible)"
    assert "CREATE TABLE later (note TEXT DEFAULT '\\u23f3');" in plan.stdout  # escaped, not a crash
    assert [row["state"] for row in json.loads(as_json.stdout)] == ["applied", "pending"]


def into_a_closed_pipe(target, *args: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS | true``: standard output is a pipe whose reader has gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args, "--dir", str(target.directory)],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings"},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "command",
    [("sqlmigrate_status",), ("sqlmigrate_status", "--json"), ("sqlmigrate_up", "--sql"), ("sqlmigrate_up",)],
    ids=" ".join,
)
def test_a_reader_that_went_away_stops_the_command_quietly_with_141(target, command):
    copy_demo(target)

    result = into_a_closed_pipe(target, *command)

    assert result.returncode == 141  # 128 + SIGPIPE, as a shell tool killed by it
    assert result.stderr == ""  # no traceback, and no "Exception ignored" at exit
    if command == ("sqlmigrate_up",):
        assert target.history() == []  # it stopped at its first line, before the first migration
