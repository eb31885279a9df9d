"""Every command and option, end to end, on SQLite and PostgreSQL (the ``target`` fixture)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES
from sqlmigrate_app.runner import MigrationRunner
from sqlmigrate_app.scaffold import create_migration_file

from .support.migrations import FIRST, SECOND, THIRD, three
from .support.target import ok

# up -----------------------------------------------------------------------------------------


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


# down ---------------------------------------------------------------------------------------


def test_down_rolls_back_the_newest_by_default_and_n_on_request(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    result = ok(target.call("sqlmigrate_down"))
    assert re.fullmatch(rf"Rolling back {THIRD}\.\.\. OK \(\d+ ms\)\nRolled back 1 migration in \d+ ms\.\n", result.out)
    assert target.history() == [FIRST, SECOND]
    assert "c" not in target.tables()
    ok(target.call("sqlmigrate_down", "2"))
    assert target.history() == []
    assert not {"a", "b"} & target.tables()


def test_down_to_rolls_back_everything_newer(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    plan = ok(target.call("sqlmigrate_down", to=FIRST, plan=True))
    assert plan.out == f"Planned rollbacks:\n  {THIRD}\n  {SECOND}\n"
    assert target.history() == [FIRST, SECOND, THIRD]
    ok(target.call("sqlmigrate_down", to=FIRST))
    assert target.history() == [FIRST]
    assert "a" in target.tables() and "b" not in target.tables()
    assert ok(target.call("sqlmigrate_down", to=FIRST)).out == "Nothing to roll back.\n"


@pytest.mark.parametrize(
    "args, options, message",
    [
        (("0",), {}, "cannot roll back 0 migrations: give a number of at least 1"),
        (("-1",), {}, "cannot roll back -1 migrations"),
        (("4",), {}, "cannot roll back 4 migrations: only 3 are applied"),
        ((), {"to": "20230101000000_unknown"}, "--to 20230101000000_unknown: no such migration"),
        (("1",), {"to": FIRST}, "either a number of migrations or --to"),
    ],
)
def test_down_refuses_bad_requests(target, args, options, message):
    three(target)
    ok(target.call("sqlmigrate_up"))
    result = target.call("sqlmigrate_down", *args, **options)
    assert result.code == 1
    assert message in result.err
    assert target.history() == [FIRST, SECOND, THIRD]


def test_down_refuses_missing_modified_or_irreversible_migrations_before_anything_runs(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);", "")
    target.migration(THIRD, "CREATE TABLE c (id INTEGER);", "DROP TABLE c;")
    ok(target.call("sqlmigrate_up"))

    irreversible = target.call("sqlmigrate_down", "2")
    assert irreversible.code == 1
    assert f"cannot roll back {SECOND}: its -- DOWN section is empty" in irreversible.err
    assert target.history() == [FIRST, SECOND, THIRD] and "c" in target.tables()

    third = target.directory / f"{THIRD}.sql"
    third.write_text(third.read_text().replace("DROP TABLE c;", "DROP TABLE c; -- edited"))
    modified = target.call("sqlmigrate_down")
    assert modified.code == 1 and "changed since it was applied" in modified.err

    third.unlink()
    missing = target.call("sqlmigrate_down")
    assert missing.code == 1 and f"cannot roll back {THIRD}: migration {THIRD} was applied but its file" in missing.err
    assert target.history() == [FIRST, SECOND, THIRD] and "c" in target.tables()


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


# status -------------------------------------------------------------------------------------


def states_fixture(target):
    """One migration in each state: applied, modified, missing, pending."""
    three(target)
    target.migration("20231231000000_gone", "CREATE TABLE g (id INTEGER);", "DROP TABLE g;")
    ok(target.call("sqlmigrate_up", to=SECOND))
    (target.directory / "20231231000000_gone.sql").unlink()
    second = target.directory / f"{SECOND}.sql"
    second.write_text(second.read_text() + "-- edited\n")


def test_status_text_marks_each_state_with_executed_at(target):
    states_fixture(target)
    result = ok(target.call("sqlmigrate_status"))
    lines = result.out.splitlines()
    stamp = r"\| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.fullmatch(rf"❌ Missing  \| 20231231000000_gone \| Gone {stamp}", lines[0]), lines[0]
    assert re.fullmatch(rf"✅ Executed \| {FIRST} \| Create A {stamp}", lines[1]), lines[1]
    assert re.fullmatch(rf"⚠️  Modified \| {SECOND} \| Create B {stamp}", lines[2]), lines[2]
    assert lines[3] == f"⏳ Pending  | {THIRD} | Create C"
    assert lines[4] == "4 migrations: 1 applied, 1 pending, 1 modified, 1 missing"
    assert len(lines) == 5


def test_status_json(target):
    states_fixture(target)
    rows = json.loads(ok(target.call("sqlmigrate_status", json=True)).out)
    assert [(row["id"], row["state"]) for row in rows] == [
        ("20231231000000_gone", "missing"),
        (FIRST, "applied"),
        (SECOND, "modified"),
        (THIRD, "pending"),
    ]
    first, second, third = rows[1], rows[2], rows[3]
    assert first["name"] == "Create A"
    assert first["checksum"] == hashlib.sha256((target.directory / f"{FIRST}.sql").read_bytes()).hexdigest()
    assert (
        abs(
            datetime.fromisoformat(first["executed_at"]).replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)
        ).total_seconds()
        < 600
    )
    assert second["checksum"] != second["stored_checksum"]
    assert third["executed_at"] is None
    assert rows[0]["file"] is None


def test_status_check_exit_codes(target):
    three(target)
    assert target.call("sqlmigrate_status", check=True).code == EXIT_CODES[ProblemKind.PENDING] == 3
    ok(target.call("sqlmigrate_up"))
    ok(target.call("sqlmigrate_status", check=True))
    target.migration("20240101120000_late", "SELECT 1;")
    assert target.call("sqlmigrate_status", check=True).code == EXIT_CODES[ProblemKind.OUT_OF_ORDER] == 4
    (target.directory / "20240101120000_late.sql").unlink()
    path = target.directory / f"{SECOND}.sql"
    path.write_text(path.read_text() + "\n-- edited\n")
    assert target.call("sqlmigrate_status", check=True).code == EXIT_CODES[ProblemKind.MODIFIED] == 5
    path.unlink()
    assert target.call("sqlmigrate_status", check=True).code == EXIT_CODES[ProblemKind.MISSING] == 6
    target.write("bad.sql", "-- UP\nSELECT 1;\n")
    assert target.call("sqlmigrate_status", check=True).code == EXIT_CODES[ProblemKind.BAD_FILE] == 7
    assert target.call("sqlmigrate_status").code == 1


# validate -----------------------------------------------------------------------------------


def test_validate_passes_on_a_clean_directory(target):
    three(target)
    ok(target.call("sqlmigrate_up", to=SECOND))
    assert ok(target.call("sqlmigrate_validate")).out == "All migrations are valid.\n"
    assert json.loads(ok(target.call("sqlmigrate_validate", json=True)).out) == []


def test_validate_lists_every_problem_with_file_and_reason(target):
    states_fixture(target)
    target.migration("20240101120000_late", "SELECT 1;")
    target.write("20240103000000_same_stamp.sql", "-- UP\nSELECT 1;\n")
    target.write("20240104000000_no_up.sql", "SELECT 1;\n")
    result = target.call("sqlmigrate_validate")
    assert result.code == EXIT_CODES[ProblemKind.BAD_FILE]
    problems = result.err.splitlines()
    assert problems[-1] == "validation failed: 5 problems"
    directory = target.directory
    expected = [
        f"bad_file: {directory}/20240103000000_same_stamp.sql: timestamp 20240103000000 is also used by",
        f"bad_file: {directory}/20240104000000_no_up.sql:1: SQL before the -- UP marker",
        f"modified: {directory}/{SECOND}.sql: changed since it was applied",
        f"missing: {directory}/20231231000000_gone.sql: migration 20231231000000_gone was applied but its file",
        f"out_of_order: {directory}/20240101120000_late.sql: pending migration is older",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in problems), start
    kinds = [problem["kind"] for problem in json.loads(target.call("sqlmigrate_validate", json=True).out)]
    assert sorted(kinds) == ["bad_file", "bad_file", "missing", "modified", "out_of_order"]


def test_validate_reports_a_foreign_history_table(target):
    three(target)
    target.query("CREATE TABLE schema_migrations (version VARCHAR(255) PRIMARY KEY)")
    result = target.call("sqlmigrate_validate")
    assert result.code == EXIT_CODES[ProblemKind.HISTORY_TABLE] == 8
    assert "is not a sqlmigrate history table (its columns are version" in result.err
    up = target.call("sqlmigrate_up")
    assert up.code == 1 and "SQLMIGRATE_TABLE" in up.err
    assert "a" not in target.tables()


@pytest.mark.parametrize(
    "command, options", [("sqlmigrate_status", {}), ("sqlmigrate_status", {"json": True}), ("sqlmigrate_validate", {})]
)
def test_status_and_validate_never_create_the_history_table(target, command, options):
    three(target)
    target.call(command, **options)
    assert "schema_migrations" not in target.tables()


# create -------------------------------------------------------------------------------------


def test_create_writes_a_template_and_prints_its_path(target):
    directory = target.directory / "new" / "dir"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = ok(target.call("sqlmigrate_create", "Add User Preferences-Table", directory=str(directory)))
    (path,) = directory.iterdir()
    assert result.out == f"Created {path}\n"
    assert path.name.endswith("_add_user_preferences_table.sql")
    stamp = datetime.strptime(path.name[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    assert before <= stamp <= datetime.now(timezone.utc)
    text = path.read_text()
    assert "\n-- UP\n" in text and "\n-- DOWN\n" in text


def test_create_takes_the_next_free_second_and_never_overwrites(tmp_path):
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    first = create_migration_file(tmp_path, "first", now)
    first.write_text("-- UP\nSELECT 1;\n")
    second = create_migration_file(tmp_path, "first", now)
    third = create_migration_file(tmp_path, "other", now)
    assert [first.name, second.name, third.name] == [
        "20240501120000_first.sql",
        "20240501120001_first.sql",
        "20240501120002_other.sql",
    ]
    assert first.read_text() == "-- UP\nSELECT 1;\n"


@pytest.mark.parametrize("name", ["", "   ", "../x", "a/b", "a\\b", "!!!"])
def test_create_refuses_empty_names_and_paths(target, name):
    result = target.call("sqlmigrate_create", name)
    assert result.code == 1
    assert "migration name" in result.err
    assert list(target.directory.iterdir()) == []


def test_create_normalises_accents_and_refuses_very_long_names(target):
    ok(target.call("sqlmigrate_create", "Café Menü"))
    assert [path.name[15:] for path in target.directory.iterdir()] == ["cafe_menu.sql"]
    assert "too long" in target.call("sqlmigrate_create", "x" * 300).err


@pytest.mark.parametrize(
    ("name", "letter"), [("таблица", "т"), ("add таблица users", "т"), ("日本語", "日"), ("straße", "ß")]
)
def test_create_refuses_letters_with_no_ascii_form_and_says_so(target, name, letter):
    result = target.call("sqlmigrate_create", name)

    assert result.code == 1
    assert f"migration name {name!r} has a letter with no ASCII form ({letter!r}): file names take a-z" in result.err
    assert "is empty" not in result.err
    assert list(target.directory.iterdir()) == []  # not add_users, not a name the author did not write


# history table ------------------------------------------------------------------------------


def test_a_history_table_made_by_the_nodejs_runner_is_adopted(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);", "DROP TABLE b;")
    now = "NOW()" if target.vendor == "postgresql" else "CURRENT_TIMESTAMP"
    target.query(
        "CREATE TABLE schema_migrations (id VARCHAR(255) PRIMARY KEY, name VARCHAR(255) NOT NULL, "
        f"executed_at TIMESTAMP DEFAULT {now}, checksum VARCHAR(64) NOT NULL)"
    )
    node_checksum = hashlib.sha256((target.directory / f"{FIRST}.sql").read_bytes()).hexdigest()
    target.query("INSERT INTO schema_migrations (id, name, checksum) VALUES (%s, %s, %s)", [FIRST, "A", node_checksum])
    target.query("CREATE TABLE a (id INTEGER)")
    result = ok(target.call("sqlmigrate_up"))
    assert f"Applying {FIRST}" not in result.out and f"Applying {SECOND}" in result.out
    assert target.history() == [FIRST, SECOND]
    ok(target.call("sqlmigrate_status", check=True))
    target.query("UPDATE schema_migrations SET checksum = %s WHERE id = %s", ["0" * 64, FIRST])
    assert target.call("sqlmigrate_validate").code == EXIT_CODES[ProblemKind.MODIFIED]


def test_sqlmigrate_table_setting_is_honoured(target, settings):
    settings.SQLMIGRATE_TABLE = "my_history"
    three(target)
    ok(target.call("sqlmigrate_up"))
    assert "my_history" in target.tables() and "schema_migrations" not in target.tables()
    assert [row[0] for row in target.query("SELECT id FROM my_history ORDER BY id")] == [FIRST, SECOND, THIRD]
    assert '"state": "applied"' in ok(target.call("sqlmigrate_status", json=True)).out
    ok(target.call("sqlmigrate_down"))
    assert len(target.query("SELECT id FROM my_history")) == 2


@pytest.mark.parametrize(
    "command, args, options",
    [
        ("sqlmigrate_up", (), {}),
        ("sqlmigrate_up", (), {"plan": True}),
        ("sqlmigrate_up", (), {"fake": True}),
        ("sqlmigrate_down", ("3",), {}),
        ("sqlmigrate_down", (), {"plan": True}),
        ("sqlmigrate_status", (), {}),
        ("sqlmigrate_status", (), {"json": True, "check": True}),
        ("sqlmigrate_validate", (), {}),
    ],
)
def test_the_history_is_read_once_per_command(target, command, args, options):
    three(target)
    if command == "sqlmigrate_down":
        ok(target.call("sqlmigrate_up"))
    else:
        ok(target.call("sqlmigrate_up", to=FIRST))
    with CaptureQueriesContext(connections[target.alias]) as captured:
        result = target.call(command, *args, **options)
    assert result.code in (0, 3), result.text
    reads = [
        q["sql"]
        for q in captured.captured_queries
        if re.match(r"\s*SELECT\b.*\bFROM\s+(\"?\w+\"?\.)?\"?schema_migrations\b", q["sql"], re.I | re.S)
    ]
    assert len(reads) == 1, reads


# API and errors -----------------------------------------------------------------------------


def test_the_runner_api_returns_data(target):
    three(target)
    runner = MigrationRunner(using=target.alias, directory=target.directory)
    assert [m.id for m in runner.pending()] == [FIRST, SECOND, THIRD]
    results = runner.migrate(to=SECOND)
    assert [(r.migration.id, r.action) for r in results] == [(FIRST, "applied"), (SECOND, "applied")]
    assert [(row.id, row.state) for row in runner.status()] == [
        (FIRST, "applied"),
        (SECOND, "applied"),
        (THIRD, "pending"),
    ]
    assert runner.validate() == []
    assert [r.migration.id for r in runner.rollback(steps=2)] == [SECOND, FIRST]
    assert target.history() == []


def test_an_unknown_database_alias_is_a_one_line_error(target):
    result = target.call("sqlmigrate_status", database="nope")
    assert result.code == 1
    assert "unknown database alias 'nope'" in result.err


def test_down_with_nothing_applied_is_a_clear_error(target):
    three(target)
    result = target.call("sqlmigrate_down")
    assert result.code == 1
    assert result.err == "cannot roll back 1 migration: none is applied"


def test_the_directory_defaults_to_the_settings(target, settings, tmp_path):
    three(target)
    settings.SQLMIGRATE_DIR = str(target.directory)
    ok(target.call("sqlmigrate_up", to=FIRST, directory=None))
    assert target.history() == [FIRST]
    settings.SQLMIGRATE_DIRS = {target.alias: str(tmp_path / "elsewhere")}
    result = target.call("sqlmigrate_status", directory=None)
    assert result.code == 1
    assert f"{tmp_path / 'elsewhere'}: migrations directory does not exist" in result.err


def test_status_of_an_empty_directory(target):
    assert ok(target.call("sqlmigrate_status")).out == "No migrations found.\n"
    assert ok(target.call("sqlmigrate_status", json=True)).out == "[]\n"
    assert ok(target.call("sqlmigrate_validate")).out == "All migrations are valid.\n"


def test_a_crlf_or_bom_checkout_of_an_applied_migration_is_still_applied(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    first, second = target.directory / f"{FIRST}.sql", target.directory / f"{SECOND}.sql"
    first.write_bytes(first.read_bytes().replace(b"\n", b"\r\n"))
    second.write_bytes(b"\xef\xbb\xbf" + second.read_bytes())
    assert {row["state"] for row in json.loads(ok(target.call("sqlmigrate_status", json=True)).out)} == {"applied"}
    ok(target.call("sqlmigrate_validate"))
    ok(target.call("sqlmigrate_down", "3"))
    assert target.history() == []


def test_down_plan_at_verbosity_2_shows_the_down_sql(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    result = ok(target.call("sqlmigrate_down", "2", plan=True, verbosity=2))
    assert result.out.index(THIRD) < result.out.index("DROP TABLE c;") < result.out.index(SECOND)
    assert target.history() == [FIRST, SECOND, THIRD]
