"""sqlmigrate_create: a new migration file from the template, its name normalised, never one overwritten."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sqlmigrate_app.scaffold import create_migration_file

from .support.target import ok


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
