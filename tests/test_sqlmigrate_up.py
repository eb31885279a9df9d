"""sqlmigrate_up: each pending migration applied, with --plan, --fake, --to and
--allow-out-of-order; what it refuses before running anything."""

from __future__ import annotations

import hashlib
import re

from .support.migrations import FIRST, SECOND, THIRD, three
from .support.target import ok


def test_up_applies_each_pending_migration_with_its_duration_and_a_summary(target):
    three(target)
    result = ok(target.call("sqlmigrate_up"))
    lines = result.out.splitlines()
    for line, migration_id in zip(lines[:3], (FIRST, SECOND, THIRD), strict=True):
        assert re.fullmatch(rf"Applying {migration_id}\.\.\. OK \(\d+ ms\)", line), line
    assert re.fullmatch(r"Applied 3 migrations in \d+ ms\.", lines[3])
    assert {"a", "b", "c"} <= target.tables()
    assert target.history() == [FIRST, SECOND, THIRD]
    rows = target.query("SELECT id, name, checksum, executed_at FROM schema_migrations ORDER BY id")
    assert rows[0][1] == "Create A"
    assert rows[0][2] == hashlib.sha256((target.directory / f"{FIRST}.sql").read_bytes()).hexdigest()
    assert rows[0][3] is not None


def test_up_with_nothing_pending_says_so(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    assert ok(target.call("sqlmigrate_up")).out == "No pending migrations.\n"


def test_a_failing_migration_stops_the_run_and_reports_file_line_and_database_message(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);\nINSERT INTO nope VALUES (1);", "DROP TABLE b;")
    target.migration(THIRD, "CREATE TABLE c (id INTEGER);", "DROP TABLE c;")
    result = target.call("sqlmigrate_up")
    assert result.code == 1
    assert f"Applying {SECOND}... FAILED" in result.out
    path = target.directory / f"{SECOND}.sql"
    assert f"{path}:3: {SECOND} failed: " in result.err
    assert "nope" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert target.history() == [FIRST]
    assert "b" not in target.tables() and "c" not in target.tables()


def test_plan_shows_what_would_run_and_changes_nothing(target):
    three(target)
    result = ok(target.call("sqlmigrate_up", plan=True))
    assert result.out == f"Planned migrations:\n  {FIRST}\n  {SECOND}\n  {THIRD}\n"
    assert "schema_migrations" not in target.tables()
    assert "a" not in target.tables()
    verbose = ok(target.call("sqlmigrate_up", plan=True, verbosity=2))
    assert "CREATE TABLE b (id INTEGER PRIMARY KEY);" in verbose.out
    assert "schema_migrations" not in target.tables()


def test_plan_with_nothing_pending(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    assert ok(target.call("sqlmigrate_up", plan=True)).out == "No pending migrations.\n"


def test_fake_records_without_running(target):
    three(target)
    result = ok(target.call("sqlmigrate_up", fake=True))
    assert f"Faking {FIRST}... FAKED" in result.out
    assert "Faked 3 migrations" in result.out
    assert target.history() == [FIRST, SECOND, THIRD]
    assert not {"a", "b", "c"} & target.tables()


def test_to_stops_after_the_given_migration(target):
    three(target)
    ok(target.call("sqlmigrate_up", to=SECOND))
    assert target.history() == [FIRST, SECOND]
    assert "c" not in target.tables()


def test_to_an_unknown_id_is_an_error_and_runs_nothing(target):
    three(target)
    result = target.call("sqlmigrate_up", to="20240105000000_nope")
    assert result.code == 1
    assert "--to 20240105000000_nope: no such migration" in result.err
    assert "a" not in target.tables()


def test_out_of_order_pending_migration_is_refused_unless_allowed(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(THIRD, "CREATE TABLE c (id INTEGER);", "DROP TABLE c;")
    ok(target.call("sqlmigrate_up"))
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);", "DROP TABLE b;")
    refused = target.call("sqlmigrate_up")
    assert refused.code == 1
    assert f"{SECOND}.sql: pending migration is older than the newest applied one ({THIRD})" in refused.err
    assert "--allow-out-of-order" in refused.err
    assert "b" not in target.tables()
    ok(target.call("sqlmigrate_up", allow_out_of_order=True))
    assert target.history() == [FIRST, SECOND, THIRD]


def test_up_refuses_a_modified_or_missing_applied_migration_before_running_anything(target):
    three(target)
    ok(target.call("sqlmigrate_up", to=FIRST))
    path = target.directory / f"{FIRST}.sql"
    path.write_text(path.read_text() + "-- edited\n")
    modified = target.call("sqlmigrate_up")
    assert modified.code == 1 and "changed since it was applied" in modified.err
    path.unlink()
    missing = target.call("sqlmigrate_up")
    assert missing.code == 1 and f"{FIRST} was applied but its file is missing" in missing.err
    assert target.history() == [FIRST]
    assert "b" not in target.tables()


def test_up_refuses_a_bad_file_before_running_anything(target):
    three(target)
    target.write("20240104000000_Bad.sql", "-- UP\nSELECT 1;\n")
    result = target.call("sqlmigrate_up")
    assert result.code == 1
    assert "20240104000000_Bad.sql: bad file name" in result.err
    assert "a" not in target.tables()


def test_a_modified_migration_stops_up_and_its_own_rollback_and_the_message_names_repair(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    first = target.directory / f"{FIRST}.sql"
    first.write_text(first.read_text() + "-- a comment fix\n")

    up = target.call("sqlmigrate_up")
    newer = target.call("sqlmigrate_down", "2")
    own = target.call("sqlmigrate_down", everything=True)

    repair = (
        f"or if the edit was reviewed and the schema is right, record it with 'manage.py sqlmigrate_repair {FIRST}'"
    )
    assert up.code == 1 and up.err.endswith(f"new migration, {repair}")
    assert newer.code == 0, newer.err  # rolling back newer migrations does not run its DOWN
    assert own.code == 1 and f"cannot roll back {FIRST}: changed since it was applied" in own.err and repair in own.err
    assert target.history() == [FIRST]


def test_up_and_status(target):
    target.migration(
        "20240101000000_create_things", "CREATE TABLE things (id INTEGER PRIMARY KEY);", "DROP TABLE things;"
    )
    result = target.call("sqlmigrate_up")
    assert result.code == 0, result.text
    assert "things" in target.tables()
    assert target.history() == ["20240101000000_create_things"]
