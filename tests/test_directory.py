"""Reading a migrations directory: its files in id order, every bad one reported; entries named
like migrations that are not files (a named pipe, a directory, a broken link) reported, never
read or skipped."""

from __future__ import annotations

import os

import pytest

from sqlmigrate_app.directory import load_directory

GOOD = "-- Create things.\n\n-- UP\nCREATE TABLE things (id INTEGER);\n\n-- DOWN\nDROP TABLE things;\n"


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


def test_load_directory_orders_by_id_and_reports_every_bad_file(tmp_path):
    (tmp_path / "20240102000000_second.sql").write_text(GOOD)
    (tmp_path / "20240101000000_first.sql").write_text(GOOD)
    (tmp_path / "20240102000000_zz_same_second.sql").write_text(GOOD)
    (tmp_path / "notes.sql").write_text(GOOD)
    (tmp_path / "20240103000000_empty.sql").write_text("")
    (tmp_path / "README.md").write_text("not a migration")
    (tmp_path / "20240104000000_subdir.sql").mkdir()
    found = load_directory(tmp_path)
    assert [m.id for m in found.migrations] == ["20240101000000_first", "20240102000000_second"]
    messages = sorted(str(error) for error in found.errors)
    assert len(messages) == 4
    assert any("20240104000000_subdir.sql: is a directory, not a regular file" in m for m in messages)
    assert any(
        "20240102000000_zz_same_second.sql" in m and "also used by 20240102000000_second.sql" in m for m in messages
    )
    assert any("notes.sql" in m and "bad file name" in m for m in messages)
    assert any("20240103000000_empty.sql:1" in m and "empty" in m for m in messages)


def test_a_missing_directory_is_an_error(tmp_path):
    found = load_directory(tmp_path / "nope")
    assert found.migrations == []
    assert "migrations directory does not exist" in str(found.errors[0])
