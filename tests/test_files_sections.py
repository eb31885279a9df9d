"""Sections are cut from the file text exactly, for small files and for a 4 MB one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sqlmigrate_app.directory import load_directory
from sqlmigrate_app.files import has_sql, parse_migration
from sqlmigrate_app.statements import refusal_in_transaction

NAME = Path("20240101000000_example.sql")


@pytest.mark.parametrize(
    ("text", "up", "up_line", "down", "down_line"),
    [
        ("-- UP\nSELECT 1;\n-- DOWN\nSELECT 2;\n", "SELECT 1;", 2, "SELECT 2;\n", 4),
        ("-- UP\nSELECT 1;", "SELECT 1;", 2, "", 0),
        ("-- UP\nSELECT 1;\n", "SELECT 1;\n", 2, "", 0),
        ("-- note\n\n-- UP\n\nSELECT 1;\n\n-- DOWN", "\nSELECT 1;\n", 4, "", 8),
        ("-- UP\nSELECT 1;\n-- DOWN\n", "SELECT 1;", 2, "", 4),
        ("--up\r\nSELECT 1;\r\n  -- down  \r\n  DROP x;", "SELECT 1;", 2, "  DROP x;", 4),
    ],
)
def test_sections_are_the_lines_between_the_markers(
    text: str, up: str, up_line: int, down: str, down_line: int
) -> None:
    migration = parse_migration(NAME, text.encode())
    assert (migration.up.sql, migration.up.line) == (up, up_line)
    assert (migration.down.sql, migration.down.line) == (down, down_line)


def test_has_sql_ignores_blank_lines_and_comments() -> None:
    assert not has_sql("")
    assert not has_sql("\n  -- only a comment\n\t\n--\n")
    assert has_sql("-- comment\n  SELECT 1;")
    assert has_sql("x")
    assert has_sql("-- a\n -x")


def test_a_4_mb_migration_parses_whole(tmp_path: Path) -> None:
    rows = "".join(f"INSERT INTO t (n) VALUES ({i}); -- row {i}\n" for i in range(100_000))
    text = f"-- UP\nCREATE TABLE t (n int);\n{rows}-- DOWN\nDROP TABLE t;\n"
    (tmp_path / NAME.name).write_text(text)
    found = load_directory(tmp_path)
    assert not found.errors
    [migration] = found.migrations
    assert migration.up.sql == text[len("-- UP\n") : text.index("\n-- DOWN")]
    assert migration.down.sql == "DROP TABLE t;\n"
    assert migration.checksum == hashlib.sha256(text.encode()).hexdigest()


def test_statements_refused_in_a_transaction_are_found_anywhere_in_a_big_section() -> None:
    filler = "SELECT '" + "x" * 1_200_000 + "';\n"  # the hint sits past the first megabyte-sized chunk
    refused = refusal_in_transaction(f"{filler}CREATE INDEX CONCURRENTLY i ON t (n);\n", 1)
    assert refused is not None and refused.line == 2
    assert refusal_in_transaction("SELECT 1;\n" * 200_000, 1) is None


def test_alter_system_is_still_refused_in_a_transaction() -> None:
    refused = refusal_in_transaction("SELECT 1;\nALTER\n  SYSTEM SET work_mem = '8MB';\n", 1)
    assert refused is not None and refused.line == 2
    assert refusal_in_transaction("CREATE TABLE system_users (id int);\n", 1) is None
