"""sqlmigrate_status: each migration's state for people (text) and pipelines (--json, --check)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone

import pytest

from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES

from .support.migrations import FIRST, SECOND, THIRD, states_fixture, three
from .support.target import ok


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


@pytest.mark.parametrize(
    "command, options", [("sqlmigrate_status", {}), ("sqlmigrate_status", {"json": True}), ("sqlmigrate_validate", {})]
)
def test_status_and_validate_never_create_the_history_table(target, command, options):
    three(target)
    target.call(command, **options)
    assert "schema_migrations" not in target.tables()


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


def test_status_json_says_whether_a_migration_can_be_rolled_back_and_when_it_ran_in_utc(target):
    three(target, down_for_second="")
    target.call("sqlmigrate_up", to=SECOND)

    rows = json.loads(target.call("sqlmigrate_status", json=True).out)

    assert [row["reversible"] for row in rows] == [True, False, True]
    assert rows[0]["executed_at"].endswith("+00:00") and rows[2]["executed_at"] is None
    assert f"{SECOND} | Create B (irreversible) | " in target.call("sqlmigrate_status").out
