"""What every command shares (management/base.py): errors as one line naming the file (and line),
no traceback, nothing applied; the exit codes pipelines read; --wait, --version and --help; the
cycle collector kept off Django's start-up objects while a command runs."""

from __future__ import annotations

import gc
import json
import socket
from collections.abc import Iterator

import pytest

from sqlmigrate_app.errors import ProblemKind, printable
from sqlmigrate_app.management.base import EXIT_CODES, start_up_frozen

from .support.migrations import FIRST, SECOND, three
from .support.odd_history import ODD_IDS, TEXT_HISTORY, add_odd_rows

sqlite_only = pytest.mark.parametrize("target", ["sqlite"], indirect=True)
GOOD = "20240101000000_good"


def one_line_error(result):
    """The single stderr line of a failed ``manage.py`` run (no traceback)."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


BAD_FILES = [
    ("20240101000001_no_up.sql", "CREATE TABLE x (id INTEGER);\n", ":1: SQL before the -- UP marker"),
    ("20240101000001_no_marker.sql", "-- just a comment\n", ":1: no -- UP marker"),
    ("20240101000001_empty_up.sql", "-- UP\n-- nothing\n-- DOWN\nDROP TABLE x;\n", ":1: the -- UP section is empty"),
    ("20240101000001_two_ups.sql", "-- UP\nSELECT 1;\n-- UP\nSELECT 2;\n", ":3: second -- UP marker"),
    ("20240101000001_two_downs.sql", "-- UP\nSELECT 1;\n-- DOWN\n-- DOWN\n", ":4: second -- DOWN marker"),
    ("20240101000001_down_first.sql", "-- DOWN\nSELECT 1;\n-- UP\nSELECT 2;\n", ":1: -- DOWN before -- UP"),
    ("20240101000001_empty.sql", "", ":1: file is empty"),
    ("20240101000001_blank.sql", "\n  \n", ":1: file is empty"),
    ("20240101000001_typo.sql", "-- sqlmigrate: no-transactoin\n-- UP\nSELECT 1;\n", ":1: unknown directive"),
    ("20240101000001_timeout.sql", "-- sqlmigrate: lock-timeout=soon\n-- UP\nSELECT 1;\n", ":1: bad lock-timeout"),
    ("20240101000001_latin1.sql", b"-- UP\nSELECT 'caf\xe9';\n", ":2: is not valid UTF-8"),
    ("20240101000001_utf16.sql", "-- UP\nSELECT 1;\n".encode("utf-16"), ": is UTF-16 (it starts with a UTF-16 byte"),
    ("20240101000001_utf16be.sql", b"\xfe\xff" + "-- UP\n".encode("utf-16-be"), ": is UTF-16 (it starts with"),
    ("20240101000001_utf32.sql", "-- UP\nSELECT 1;\n".encode("utf-32"), ": is UTF-32 (it starts with a UTF-32 byte"),
    ("20240101000001_utf32be.sql", b"\x00\x00\xfe\xff" + "-- UP\n".encode("utf-32-be"), ": is UTF-32 (it starts"),
    ("20240101000001_nul.sql", b"-- UP\nSELECT 1;\nSELECT 2\x00;\nCOMMIT;\n", ":3: holds a NUL byte (byte 24)"),
    ("2024010100001_short.sql", "-- UP\nSELECT 1;\n", ": bad file name"),
    ("202401010000011_long.sql", "-- UP\nSELECT 1;\n", ": bad file name"),
    ("20241399000000_bad_date.sql", "-- UP\nSELECT 1;\n", ": bad file name: 20241399000000 is not a real date"),
    ("20240101250000_bad_hour.sql", "-- UP\nSELECT 1;\n", "is not a real date and time"),
    ("20240101000001_Upper.sql", "-- UP\nSELECT 1;\n", ": bad file name"),
    ("20240101000001_with space.sql", "-- UP\nSELECT 1;\n", ": bad file name"),
    ("20240101000001_shout.SQL", "-- UP\nSELECT 1;\n", ": bad file name"),
    ("20240101000000_same_second.sql", "-- UP\nSELECT 1;\n", ": timestamp 20240101000000 is also used by"),
]


@sqlite_only
@pytest.mark.parametrize(("name", "content", "expected"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_file_is_one_line_naming_it_and_nothing_runs(target, name, content, expected):
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")
    target.write(name, content)

    result = target.manage("sqlmigrate_up")

    assert result.returncode == 1
    error = one_line_error(result)
    assert f"{name}{expected}" in error or (name in error and expected in error), error
    assert target.tables() == set()  # not even the history table
    validated = target.manage("sqlmigrate_validate")
    assert validated.returncode == EXIT_CODES[ProblemKind.BAD_FILE]
    assert name in validated.stderr and "Traceback" not in validated.stderr
    checked = target.manage("sqlmigrate_status", "--check")
    assert checked.returncode == EXIT_CODES[ProblemKind.BAD_FILE] and name in one_line_error(checked)


@sqlite_only
def test_directory_that_does_not_exist(target):
    target.directory.rmdir()
    result = target.manage("sqlmigrate_up")
    assert result.returncode == 1
    assert f"{target.directory}: migrations directory does not exist" in one_line_error(result)
    assert target.tables() == set()


@sqlite_only  # the fixture only provides the directory: the URL below is PostgreSQL's
def test_database_that_does_not_answer(target):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);")
    target.url = f"postgresql://postgres@127.0.0.1:{port}/nothing"

    for command in (["sqlmigrate_up"], ["sqlmigrate_status"], ["sqlmigrate_down"]):
        result = target.manage(*command, timeout=60)
        assert result.returncode == 1
        error = one_line_error(result)
        assert error.startswith("CommandError: database 'default': ") and str(port) in error


def test_bad_arguments(target):
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")
    assert target.call("sqlmigrate_up").code == 0

    cases = {
        ("sqlmigrate_up", "--to", "20990101000000_nope"): "--to 20990101000000_nope: no such migration",
        ("sqlmigrate_down", "--to", "20990101000000_nope"): "--to 20990101000000_nope: no such migration",
        ("sqlmigrate_down", "0"): "cannot roll back 0 migrations: give a number of at least 1",
        ("sqlmigrate_down", "-2"): "cannot roll back -2 migrations",
        ("sqlmigrate_down", "2"): "cannot roll back 2 migrations: only 1 is applied",
        ("sqlmigrate_create", ""): "is empty",
        ("sqlmigrate_create", "../x"): "must not contain a path",
        ("sqlmigrate_create", "a/b"): "must not contain a path",
    }
    for (command, *args), expected in cases.items():
        result = target.manage(command, *args)
        assert result.returncode == 1, (command, args, result.stdout)
        assert expected in one_line_error(result), (command, args)
    assert target.history() == [GOOD] and "good" in target.tables()
    assert sorted(p.name for p in target.directory.iterdir()) == [f"{GOOD}.sql"]
    assert not (target.directory.parent / "x.sql").exists()


FOREIGN_TABLES = {
    "dbmate": "CREATE TABLE schema_migrations (version VARCHAR(128) PRIMARY KEY)",
    "golang-migrate": "CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, dirty BOOLEAN NOT NULL)",
}


@pytest.mark.parametrize("tool", FOREIGN_TABLES)
def test_history_table_of_another_tool_is_refused_and_left_alone(target, tool):
    target.query(FOREIGN_TABLES[tool])
    target.query("INSERT INTO schema_migrations (version) VALUES ('20200101000000')" if tool == "dbmate" else
                 "INSERT INTO schema_migrations VALUES (20200101000000, FALSE)")  # fmt: skip
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")

    for command, code in (("sqlmigrate_up", 1), ("sqlmigrate_down", 1), ("sqlmigrate_status", 1)):
        result = target.manage(command)
        assert result.returncode == code
        error = one_line_error(result)
        assert "'schema_migrations' exists but is not a sqlmigrate history table" in error
        assert "SQLMIGRATE_TABLE" in error
    assert target.manage("sqlmigrate_status", "--check").returncode == EXIT_CODES[ProblemKind.HISTORY_TABLE]
    validated = target.manage("sqlmigrate_validate")
    assert validated.returncode == EXIT_CODES[ProblemKind.HISTORY_TABLE] and "SQLMIGRATE_TABLE" in validated.stderr

    assert "good" not in target.tables()
    assert len(target.query("SELECT * FROM schema_migrations")) == 1
    columns = {"dbmate": 1, "golang-migrate": 2}[tool]
    assert len(target.query("SELECT * FROM schema_migrations")[0]) == columns


def test_history_table_name_is_validated_and_quoted(target, settings):
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")

    settings.SQLMIGRATE_TABLE = "history; DROP TABLE good"
    result = target.call("sqlmigrate_up")
    assert result.code == 1 and "is not a valid table name" in result.err
    assert target.tables() == set()

    settings.SQLMIGRATE_TABLE = "nl_table\n"  # a $ in the rule's regex would match before the newline
    result = target.call("sqlmigrate_up")
    assert result.code == 1, result.text
    assert result.err == (
        "SQLMIGRATE_TABLE 'nl_table\\n' is not a valid table name "
        "(letters, digits and _, not starting with a digit, at most 63 characters)"
    )
    assert target.tables() == set()

    settings.SQLMIGRATE_TABLE = "Order"  # a reserved word, mixed case: works only quoted
    assert target.call("sqlmigrate_up").code == 0, target.call("sqlmigrate_up").text
    assert target.query('SELECT id, name FROM "Order"') == [(GOOD, "Good")]
    assert target.call("sqlmigrate_down").code == 0
    assert target.query('SELECT id FROM "Order"') == []


def test_odd_history_rows_are_missing_migrations_shown_one_line_each(target):
    target.query(TEXT_HISTORY)
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")
    assert target.call("sqlmigrate_up").code == 0
    add_odd_rows(target)

    status = target.manage("sqlmigrate_status")
    as_json = target.manage("sqlmigrate_status", "--json")
    check = target.manage("sqlmigrate_status", "--check")
    validated = target.manage("sqlmigrate_validate")
    up = target.manage("sqlmigrate_up")

    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert len(lines) == len(ODD_IDS) + 2  # one line a migration, and the counts
    assert lines[-1] == f"{len(ODD_IDS) + 1} migrations: 1 applied, 0 pending, {len(ODD_IDS)} missing"
    for odd in ODD_IDS:
        assert f"Missing  | {printable(odd)} | name {printable(odd)} | " in status.stdout
    assert not any(line.startswith("✅ Executed | 20240101000010_fake") for line in lines)
    assert "\x1b" not in status.stdout and "\u202e" not in status.stdout
    assert {row["id"]: row["state"] for row in json.loads(as_json.stdout)} == {
        GOOD: "applied",
        **dict.fromkeys(ODD_IDS, "missing"),
    }
    assert check.returncode == EXIT_CODES[ProblemKind.MISSING]
    assert one_line_error(check) == "CommandError: migrations are not up to date (missing)"
    assert validated.returncode == EXIT_CODES[ProblemKind.MISSING]
    problems = validated.stderr.splitlines()
    assert (
        len(problems) == len(ODD_IDS) + 1
        and problems[-1] == f"CommandError: validation failed: {len(ODD_IDS)} problems"
    )
    assert all(line.startswith("missing: ") and "\x1b" not in line for line in problems[:-1])
    assert f"migration {printable(ODD_IDS[0])} was applied but its file is missing" in validated.stderr
    assert up.returncode == 1 and "was applied but its file is missing" in one_line_error(up)


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


@pytest.fixture
def nothing_frozen() -> Iterator[None]:
    """The collector as a process starts with it, nothing frozen (what ``start_up_frozen`` looks
    at), whatever an earlier test left; what was frozen before is frozen again after."""
    frozen_before = gc.get_freeze_count() > 0
    gc.unfreeze()
    yield
    gc.unfreeze()
    if frozen_before:
        gc.freeze()


def test_objects_made_before_a_command_are_frozen_while_it_runs_and_handed_back_after(nothing_frozen):
    assert gc.get_freeze_count() == 0
    before: object = object.__new__(type("Made", (), {}))
    with start_up_frozen():
        assert gc.get_freeze_count() > 0
        assert not any(obj is before for obj in gc.get_objects())  # frozen objects are not tracked here
    assert gc.get_freeze_count() == 0
    assert any(obj is before for obj in gc.get_objects())


def test_a_process_that_froze_objects_itself_is_left_as_it_is(nothing_frozen):
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with start_up_frozen():
            made_inside: list[object] = [object.__new__(type("Made", (), {}))]
        assert gc.get_freeze_count() == frozen
        assert any(obj is made_inside[0] for obj in gc.get_objects())
    finally:
        gc.unfreeze()


def test_call_command_hands_everything_back(target, nothing_frozen):
    sql = "-- UP\nCREATE TABLE one (id int);\n-- DOWN\nDROP TABLE one;\n"
    (target.directory / "20240101000000_one.sql").write_text(sql)
    assert target.call("sqlmigrate_up").code == 0
    assert target.call("sqlmigrate_status").code == 0
    assert gc.get_freeze_count() == 0


def applied(target, *ids):
    for migration_id in ids:
        table = migration_id.rsplit("_", 1)[1]
        target.migration(migration_id, f"CREATE TABLE t_{table} (id INTEGER);", f"DROP TABLE t_{table};")
    assert target.call("sqlmigrate_up").code == 0


def up_to_date(target):
    applied(target, FIRST, SECOND)


def pending(target):
    applied(target, FIRST)
    target.migration(SECOND, "CREATE TABLE t_b (id INTEGER);")


def out_of_order(target):
    applied(target, SECOND)
    target.migration(FIRST, "CREATE TABLE t_a (id INTEGER);")


def modified(target):
    applied(target, FIRST, SECOND)
    target.migration(FIRST, "CREATE TABLE t_a (id INTEGER, added INTEGER);", "DROP TABLE t_a;")


def missing(target):
    applied(target, FIRST, SECOND)
    (target.directory / f"{SECOND}.sql").unlink()


def bad_file(target):
    applied(target, FIRST)
    target.write(f"{SECOND}.sql", "CREATE TABLE t_b (id INTEGER);\n")


def history_table(target):
    target.migration(FIRST, "CREATE TABLE t_a (id INTEGER);")
    target.query("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, dirty BOOLEAN)")


def modified_and_pending(target):
    modified(target)
    target.migration("20240103000000_create_c", "CREATE TABLE t_c (id INTEGER);")


# state -> (exit code of status --check, exit code of validate)
CASES = {
    up_to_date: (0, 0),
    pending: (3, 0),  # pending is not a problem with files or history
    out_of_order: (4, 4),
    modified: (5, 5),
    missing: (6, 6),
    bad_file: (7, 7),
    history_table: (8, 8),
    modified_and_pending: (5, 5),  # several kinds: the highest code
}


@pytest.mark.parametrize("state", CASES, ids=lambda state: state.__name__)
def test_status_check_and_validate_exit_codes(target, state):
    state(target)
    status_code, validate_code = CASES[state]
    status = target.call("sqlmigrate_status", check=True)
    assert status.code == status_code, status.text
    validate = target.call("sqlmigrate_validate")
    assert validate.code == validate_code, validate.text


def test_status_without_check_exits_0_even_when_behind(target):
    pending(target)
    assert target.call("sqlmigrate_status").code == 0


@pytest.mark.parametrize("state", [pending, modified], ids=lambda state: state.__name__)
def test_manage_py_process_exits_with_the_code(target, state):
    state(target)
    status_code, validate_code = CASES[state]
    assert target.manage("sqlmigrate_status", "--check").returncode == status_code
    assert target.manage("sqlmigrate_validate").returncode == validate_code
