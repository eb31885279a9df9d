"""Living with migrations: repair, redo, down --all, retries on lock timeout, the SQL script for a
DBA, and the command-line edges (--to by timestamp, --wait, --version, status for people and
pipelines)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading

import psycopg
import pytest

from sqlmigrate_app.errors import MigrationInterrupted
from sqlmigrate_app.executor import Reporter
from sqlmigrate_app.runner import MigrationRunner

from .conftest import ROOT
from .processes import Output, spawn

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
FIRST, SECOND, THIRD = "20240101000000_create_a", "20240102000000_create_b", "20240103000000_create_c"


def three(target, down_for_second: str = "DROP TABLE b;") -> None:
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);", down_for_second)
    target.migration(THIRD, "CREATE TABLE c (id INTEGER);", "DROP TABLE c;")


def edit(target, migration_id: str, extra: str = "-- a reviewed comment fix\n") -> None:
    path = target.directory / f"{migration_id}.sql"
    path.write_text(path.read_text() + extra)


def checksums(target) -> dict[str, str]:
    return dict(target.query("SELECT id, checksum FROM schema_migrations"))


# Repair ----------------------------------------------------------------------------------------


def test_repair_records_edited_files_and_forgets_missing_ones_without_touching_the_schema(target):
    three(target)
    assert target.call("sqlmigrate_up").code == 0
    edit(target, SECOND)
    (target.directory / f"{THIRD}.sql").unlink()
    before = checksums(target)
    tables = target.tables()

    result = target.call("sqlmigrate_repair", interactive=False)

    assert result.code == 0, result.text
    new = target.call("sqlmigrate_status", json=True)
    rows = {row["id"]: row for row in json.loads(new.out)}
    assert result.out.splitlines() == [
        "Repairs to the history of database 'target':",
        f"  {SECOND}: checksum {before[SECOND][:12]} -> {rows[SECOND]['checksum'][:12]}",
        f"  {THIRD}: history row deleted (its file is missing)",
        "Repaired 2 history rows.",
    ]
    assert {row["state"] for row in rows.values()} == {"applied"} and THIRD not in rows
    assert target.tables() == tables  # the schema is as it was: c stays
    assert target.call("sqlmigrate_validate").code == 0
    assert target.call("sqlmigrate_repair", interactive=False).out == "Nothing to repair.\n"


def test_repair_of_named_migrations_only(target):
    three(target)
    target.call("sqlmigrate_up")
    edit(target, FIRST)
    edit(target, SECOND)

    result = target.call("sqlmigrate_repair", f"{SECOND}.sql", interactive=False)

    assert result.code == 0, result.text
    states = {row["id"]: row["state"] for row in json.loads(target.call("sqlmigrate_status", json=True).out)}
    assert states == {FIRST: "modified", SECOND: "applied", THIRD: "applied"}
    refused = target.call("sqlmigrate_repair", THIRD, interactive=False)
    assert refused.code == 1
    assert f"{THIRD} is applied: only modified and missing migrations are repaired" in refused.err
    unknown = target.call("sqlmigrate_repair", "20240103000000_create_cc", interactive=False)
    assert f"no such migration in {target.directory} or in the history; did you mean {THIRD}?" in unknown.err


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("answer", "repaired"), [("no\n", False), ("yes\n", True)])
def test_repair_asks_first_at_a_terminal(target, answer, repaired):
    three(target)
    target.call("sqlmigrate_up")
    edit(target, SECOND)
    recorded = checksums(target)[SECOND]

    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "sqlmigrate_repair", "--dir", str(target.directory)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        input=answer,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "Type 'yes' to continue" in result.stdout
    assert (checksums(target)[SECOND] != recorded) is repaired
    assert ("Repair cancelled." in result.stdout) is not repaired


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_repair_at_the_end_of_its_input_is_a_no_in_one_line(target):
    three(target)
    target.call("sqlmigrate_up")
    edit(target, SECOND)
    recorded = checksums(target)[SECOND]

    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "sqlmigrate_repair", "--dir", str(target.directory)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[-2:] == [
        "Only the history table changes, never the schema. Type 'yes' to continue, or 'no' to cancel: ",
        "Repair cancelled: no answer (end of input); --noinput repairs without asking.",
    ]
    assert checksums(target)[SECOND] == recorded


# Redo and down --all -----------------------------------------------------------------------------


def test_redo_rolls_back_and_applies_again_an_edited_migration(target):
    three(target)
    target.call("sqlmigrate_up")
    path = target.directory / f"{THIRD}.sql"
    path.write_text(path.read_text().replace("CREATE TABLE c (id INTEGER);", "CREATE TABLE c (id INTEGER, note TEXT);"))

    result = target.call("sqlmigrate_redo")

    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert lines[0].startswith(f"Rolling back {THIRD}... OK (") and lines[1].startswith(f"Applying {THIRD}... OK (")
    assert lines[2].startswith("Redid 1 migration in ")
    assert target.call("sqlmigrate_validate").code == 0  # the new checksum is recorded
    target.query("INSERT INTO c (id, note) VALUES (1, 'the edit is there')")
    assert target.call("sqlmigrate_redo", "2").code == 0
    assert target.history() == [FIRST, SECOND, THIRD] and target.query("SELECT count(*) FROM c") == [(0,)]


@pytest.mark.parametrize(("failing", "left"), [(SECOND, [SECOND, THIRD]), (THIRD, [THIRD])])
def test_redo_that_fails_part_way_names_every_migration_it_left_rolled_back(target, failing, left):
    three(target)
    target.call("sqlmigrate_up")
    table = failing[-1]
    path = target.migration(failing, f"CREATE TABLE {table} (id INTEGER);\nSELECT * FROM nope;", f"DROP TABLE {table};")

    result = target.call("sqlmigrate_redo", "2")

    assert result.code == 1, result.text
    assert result.err.startswith(f"{path}:3: {failing} failed: ")
    assert result.err.endswith(
        f"; redo left {len(left)} migration{'s' * (len(left) > 1)} rolled back and not applied again: "
        f"{', '.join(left)} (run sqlmigrate_up to apply {'them' if len(left) > 1 else 'it'})"
    )
    assert target.history() == [m for m in (FIRST, SECOND, THIRD) if m not in left]


def test_redo_interrupted_between_two_migrations_names_what_it_left_rolled_back(target):
    three(target)
    target.call("sqlmigrate_up")

    class StopAfterRollingBack(Reporter):
        def finished(self, result):
            if result.migration.id == SECOND:
                raise KeyboardInterrupt

    runner = MigrationRunner(target.alias, target.directory, reporter=StopAfterRollingBack())
    with pytest.raises(KeyboardInterrupt) as stopped:
        runner.redo(2)

    assert isinstance(stopped.value, MigrationInterrupted)
    assert str(stopped.value) == (
        f"redo interrupted (Ctrl-C); redo left 2 migrations rolled back and not applied again: {SECOND}, {THIRD} "
        "(run sqlmigrate_up to apply them)"
    )
    assert target.history() == [FIRST]


def test_down_all_rolls_everything_back_and_names_every_irreversible_migration(target):
    three(target, down_for_second="")
    target.migration("20240104000000_create_d", "CREATE TABLE d (id INTEGER);")
    target.call("sqlmigrate_up")

    refused = target.call("sqlmigrate_down", everything=True)

    assert refused.code == 1
    assert refused.err == (
        "cannot roll back 2 migrations: their -- DOWN sections are empty: "
        f"{target.directory / '20240104000000_create_d.sql'}, {target.directory / (SECOND + '.sql')}"
    )
    assert len(target.history()) == 4  # refused whole: nothing was rolled back
    three(target)  # both get a DOWN section, and the history their new checksums
    target.migration("20240104000000_create_d", "CREATE TABLE d (id INTEGER);", "DROP TABLE d;")
    assert target.call("sqlmigrate_repair", interactive=False).code == 0
    done = target.call("sqlmigrate_down", everything=True)
    assert done.code == 0, done.text
    assert target.history() == [] and not {"a", "b", "c", "d"} & target.tables()
    assert target.call("sqlmigrate_down", everything=True).out == "Nothing to roll back.\n"


# Retries on lock timeout --------------------------------------------------------------------------


def hold_lock_on(target, table: str) -> tuple[psycopg.Connection, threading.Event]:
    """Another session holding ``table`` locked until the returned event is set."""
    holder = psycopg.connect(target.url)
    holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    release = threading.Event()

    def wait_then_release() -> None:
        release.wait(60)
        holder.rollback()
        holder.close()

    threading.Thread(target=wait_then_release, daemon=True).start()
    return holder, release


@pg_only
def test_a_lock_timeout_is_retried_with_a_growing_pause_until_the_lock_is_free(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);")
    assert target.call("sqlmigrate_up").code == 0
    target.migration(SECOND, "ALTER TABLE a ADD COLUMN b INTEGER;", header="-- sqlmigrate: lock-timeout=100ms\n")
    _, release = hold_lock_on(target, "a")
    runner = spawn(target, "sqlmigrate_up", "--retries", "5")
    out = Output(runner.stdout)

    out.wait_for("LOCK TIMEOUT, try 3 of 6 in 1 s...")
    release.set()
    runner.wait(timeout=60)

    assert runner.returncode == 0, out.text
    assert out.text.startswith(f"Applying {SECOND}... LOCK TIMEOUT, try 2 of 6 in 0.5 s... LOCK TIMEOUT, try 3 of 6")
    assert " OK (" in out.text and target.history() == [FIRST, SECOND]


@pg_only
def test_retries_spent_fail_with_the_usual_message_and_other_errors_are_never_retried(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);")
    assert target.call("sqlmigrate_up").code == 0
    target.migration(SECOND, "ALTER TABLE a ADD COLUMN b INTEGER;", header="-- sqlmigrate: lock-timeout=50ms\n")
    _, release = hold_lock_on(target, "a")
    try:
        spent = target.call("sqlmigrate_up", retries=1)
    finally:
        release.set()
    target.migration(SECOND, "SELECT 1/0;", header="-- sqlmigrate: lock-timeout=50ms\n")
    other = target.call("sqlmigrate_up", retries=3)

    assert spent.code == 1 and spent.out.count("LOCK TIMEOUT") == 1
    assert "canceling statement due to lock timeout [rolled back, nothing of it was applied or recorded]" in spent.err
    assert other.code == 1 and "LOCK TIMEOUT" not in other.out and "division by zero" in other.err


# The SQL a DBA could run ------------------------------------------------------------------------------


def run_script(target, script: str) -> None:
    if target.vendor == "postgresql":
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", target.url], input=script, text=True, check=True)
    else:
        with sqlite3.connect(target.url.removeprefix("sqlite:///"), isolation_level=None) as connection:
            connection.executescript(script)


def test_up_and_down_sql_print_the_script_and_change_nothing(target):
    three(target)
    target.migration(
        "20240104000000_index",
        "CREATE INDEX a_id ON a (id)",
        "DROP INDEX a_id",
        header="-- sqlmigrate: lock-timeout=5s\n",
    )

    script = target.call("sqlmigrate_up", sql=True)

    assert script.code == 0, script.text
    assert target.tables() == set()  # not even the history table
    assert script.out.count("BEGIN;") == 4 and script.out.count("COMMIT;") == 4
    if target.vendor == "postgresql":
        assert "SET LOCAL lock_timeout = '5s';" in script.out
    run_script(target, script.out)
    assert target.history() == [FIRST, SECOND, THIRD, "20240104000000_index"]
    assert target.call("sqlmigrate_validate").code == 0  # the same rows sqlmigrate_up writes

    down = target.call("sqlmigrate_down", "2", sql=True)
    assert target.history() == [FIRST, SECOND, THIRD, "20240104000000_index"]
    run_script(target, down.out)
    assert target.history() == [FIRST, SECOND]


# Command-line edges ----------------------------------------------------------------------------------


def test_to_takes_a_timestamp_or_a_file_name_and_an_unknown_one_suggests_the_closest(target):
    three(target)

    assert target.call("sqlmigrate_up", to="20240101000000").code == 0
    assert target.call("sqlmigrate_up", to=f"{SECOND}.sql").code == 0
    assert target.history() == [FIRST, SECOND]
    wrong = target.call("sqlmigrate_up", to="20240103000000_create_cc")
    assert wrong.err.endswith(f"no such migration in {target.directory}; did you mean {THIRD}?")
    assert target.call("sqlmigrate_down", to="20240101000000").code == 0
    assert target.history() == [FIRST]


def test_did_you_mean_names_the_migration_with_the_given_timestamp_so_following_it_cuts_there(target):
    ids = [f"2024010{day}000000_add_column_{day}" for day in range(1, 10)]
    ids[4] = "20240105000000_add_email"  # the slug the user misremembers as add_column_5
    for number, migration_id in enumerate(ids):
        target.migration(migration_id, f"CREATE TABLE t{number} (id INTEGER);", f"DROP TABLE t{number};")
    target.call("sqlmigrate_up")

    wrong = target.call("sqlmigrate_down", to="20240105000000_add_column_5")
    suggested = wrong.err.rsplit("did you mean ", 1)[1].rstrip("?")
    followed = target.call("sqlmigrate_down", to=suggested)

    assert wrong.code == 1 and suggested == ids[4]
    assert followed.code == 0 and target.history() == ids[:5]
    assert target.call("sqlmigrate_down", to="20240150000000_add_email").err.endswith(f"did you mean {ids[4]}?")
    assert target.call("sqlmigrate_up", to="add_column_7").err.endswith(f"did you mean {ids[6]}?")


def test_status_json_says_whether_a_migration_can_be_rolled_back_and_when_it_ran_in_utc(target):
    three(target, down_for_second="")
    target.call("sqlmigrate_up", to=SECOND)

    rows = json.loads(target.call("sqlmigrate_status", json=True).out)

    assert [row["reversible"] for row in rows] == [True, False, True]
    assert rows[0]["executed_at"].endswith("+00:00") and rows[2]["executed_at"] is None
    assert f"{SECOND} | Create B (irreversible) | " in target.call("sqlmigrate_status").out


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_wait_is_the_option_and_lock_timeout_is_not(target):
    three(target)

    old = target.manage("sqlmigrate_up", "--lock-timeout", "5")
    new = target.manage("sqlmigrate_up", "--wait", "5")

    assert old.returncode == 2 and "unrecognized arguments: --lock-timeout" in old.stderr
    assert new.returncode == 0 and new.stderr == ""
    assert "--wait SECONDS" in target.manage("sqlmigrate_up", "--help").stdout
    assert "--lock-timeout" not in target.manage("sqlmigrate_up", "--help").stdout


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_version_and_help_say_what_they_should(target):
    from sqlmigrate_app import __version__

    version = target.manage("sqlmigrate_status", "--version").stdout.strip()
    status_help = " ".join(target.manage("sqlmigrate_status", "--help").stdout.split())
    validate_help = " ".join(target.manage("sqlmigrate_validate", "--help").stdout.split())
    create_help = " ".join(target.manage("sqlmigrate_create", "--help").stdout.split())

    assert version.startswith(f"django-sqlmigrate {__version__} (Django ")
    assert "2 usage; 3 pending; 4 out of order; 5 modified; 6 missing; 7 bad file; 8 history table" in status_help
    assert "2 usage; 4 out of order; 5 modified; 6 missing; 7 bad file; 8 history table" in validate_help
    assert "3 pending" not in validate_help  # validate never exits 3
    assert "130 Ctrl-C, 143 SIGTERM" in status_help and "130 Ctrl-C, 143 SIGTERM" in validate_help
    assert "10 lint" in validate_help and "10 lint" not in status_help  # only validate --lint finds it
    assert "Only picks the directory" in create_help
    for command, code in (
        ("verify", "9 a round trip did not match"),
        ("lint", "10 squawk found"),
        ("dump", "11 --check"),
    ):
        text = " ".join(target.manage(f"sqlmigrate_{command}", "--help").stdout.split())
        assert "Exit codes: 0 " in text and code in text and "130 Ctrl-C, 143 SIGTERM" in text, command
