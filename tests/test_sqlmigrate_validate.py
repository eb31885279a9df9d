"""sqlmigrate_validate: every problem of the files and the history, each with its file and reason."""

from __future__ import annotations

import json

from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES

from .support.migrations import SECOND, states_fixture, three
from .support.target import ok


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
