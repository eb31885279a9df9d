"""One migration file: its name, markers, sections and checksum (pure, no database); then what
reaches the database of its bytes (CRLF kept, a NUL byte refused) and an empty UP section."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sqlmigrate_app.directory import load_directory
from sqlmigrate_app.errors import MigrationFileError, ProblemKind
from sqlmigrate_app.files import display_name, parse_migration
from sqlmigrate_app.management.base import EXIT_CODES
from sqlmigrate_app.scaffold import create_migration_file

GOOD = "-- Create things.\n\n-- UP\nCREATE TABLE things (id INTEGER);\n\n-- DOWN\nDROP TABLE things;\n"


def parse(text: str | bytes, name: str = "20240101120000_create_things.sql"):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_migration(Path("/migrations") / name, data)


def error_of(text: str | bytes, name: str = "20240101120000_create_things.sql") -> MigrationFileError:
    with pytest.raises(MigrationFileError) as caught:
        parse(text, name)
    return caught.value


# Names --------------------------------------------------------------------------------------


def test_a_well_formed_file_gives_id_name_and_sections():
    migration = parse(GOOD)
    assert migration.id == "20240101120000_create_things"
    assert migration.name == "Create Things"
    assert migration.up.sql.strip() == "CREATE TABLE things (id INTEGER);"
    assert migration.up.line == 4
    assert migration.down.sql.strip() == "DROP TABLE things;"
    assert migration.down.line == 7
    assert migration.reversible


@pytest.mark.parametrize(
    "name",
    ["20241231235959_end_of_year.sql", "20240229000000_leap_day.sql", "20241201000001_create_client_registrations.sql"],
)
def test_real_timestamps_are_accepted(name):
    assert parse(GOOD, name).id == name[:-4]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("20241301000000_month_13.sql", "not a real date and time"),
        ("20230229000000_no_leap_day.sql", "not a real date and time"),
        ("20240101250000_hour_25.sql", "not a real date and time"),
        ("20240101000060_second_60.sql", "not a real date and time"),
        ("2024010100000_thirteen_digits.sql", "bad file name"),
        ("20240101000000_Upper_Case.sql", "bad file name"),
        ("20240101000000-dash.sql", "bad file name"),
        ("20240101000000_.sql", "bad file name"),
        ("20240101000000_has space.sql", "bad file name"),
        ("create_things.sql", "bad file name"),
        ("20240101000000_things.SQL", "bad file name"),
        (
            "\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0661\u0660\u0660\u0660\u0660\u0660\u0660_arabic_digits.sql",
            "bad",
        ),
    ],
)
def test_bad_names_are_errors_naming_the_file(name, reason):
    error = error_of(GOOD, name)
    assert name in str(error)
    assert reason in str(error)


def test_display_name_is_the_slug_in_title_case():
    assert display_name("20241201000001_create_client_registrations") == "Create Client Registrations"
    assert display_name("20241201000001_add__v2_index") == "Add V2 Index"


# Markers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("up, down", [("-- UP", "-- DOWN"), ("--up", "--down"), ("  -- Up  \t", "\t--   dOwN ")])
def test_markers_are_case_insensitive_and_whitespace_tolerant(up, down):
    migration = parse(f"{up}\nCREATE TABLE a (id INTEGER);\n{down}\nDROP TABLE a;\n")
    assert migration.up.sql.strip() == "CREATE TABLE a (id INTEGER);"
    assert migration.down.sql.strip() == "DROP TABLE a;"


def test_comments_that_start_like_markers_are_not_markers():
    text = (
        "-- UPDATE the users table\n-- UP\n-- UPDATE rows later\nCREATE TABLE a (id INTEGER);\n"
        "-- down the road we drop this\n-- DOWN\n-- UP-to-date note\nDROP TABLE a;\n"
    )
    migration = parse(text)
    assert "-- down the road" in migration.up.sql
    assert migration.down.sql.strip().endswith("DROP TABLE a;")
    assert migration.down.line == 7


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("CREATE TABLE a (id INTEGER);\n", 1, "before the -- UP marker"),
        ("-- just a comment\n-- DOWN\nDROP TABLE a;\n", 2, "-- DOWN before -- UP"),
        ("-- no markers at all\n", 1, "no -- UP marker"),
        ("-- UP\n\n-- only a comment\n-- DOWN\nDROP TABLE a;\n", 1, "the -- UP section is empty"),
        ("-- UP\nSELECT 1;\n-- UP\nSELECT 2;\n", 3, "second -- UP marker (the first is on line 1)"),
        ("-- UP\nSELECT 1;\n-- DOWN\nSELECT 2;\n-- DOWN\nSELECT 3;\n", 5, "second -- DOWN marker"),
        ("-- UP\nSELECT 1;\n-- DOWN\nSELECT 2;\n-- UP\nSELECT 3;\n", 5, "second -- UP marker"),
        ("", 1, "file is empty"),
        ("\n  \n", 1, "file is empty"),
    ],
)
def test_malformed_files_are_errors_naming_file_and_line(text, line, reason):
    error = error_of(text)
    assert error.line == line
    assert reason in error.message
    assert str(error).startswith(f"/migrations/20240101120000_create_things.sql:{line}: ")


@pytest.mark.parametrize(
    "text", ["-- UP\nSELECT 1;\n-- DOWN\n", "-- UP\nSELECT 1;\n-- DOWN\n-- nothing to undo\n", "-- UP\nSELECT 1;\n"]
)
def test_an_empty_or_absent_down_section_means_irreversible(text):
    migration = parse(text)
    assert not migration.reversible


# Checksums ----------------------------------------------------------------------------------


def test_checksum_of_an_lf_file_is_the_sha256_of_its_bytes():
    assert parse(GOOD).checksum == hashlib.sha256(GOOD.encode()).hexdigest()


@pytest.mark.parametrize(
    "variant",
    [
        GOOD.replace("\n", "\r\n").encode(),
        b"\xef\xbb\xbf" + GOOD.encode(),
        b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode(),
        GOOD.replace("\n", "\r").encode(),
    ],
    ids=["crlf", "bom", "bom+crlf", "cr"],
)
def test_bom_and_line_endings_do_not_change_the_checksum(variant):
    migration = parse(variant)
    assert migration.checksum == parse(GOOD).checksum
    assert migration.up.line == 4


def test_any_change_of_content_changes_the_checksum():
    assert parse(GOOD.replace("things;", "things ;")).checksum != parse(GOOD).checksum


def test_a_file_that_is_not_utf8_is_an_error_naming_the_file():
    error = error_of("-- UP\nSELECT 'caf\xe9';\n".encode("latin-1"))
    assert "20240101120000_create_things.sql:2" in str(error)
    assert "not valid UTF-8" in str(error)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_an_error_saying_so(encoding):
    data = GOOD.encode(encoding)
    if encoding != "utf-16":  # "utf-16" writes the byte-order mark itself
        data = "\ufeff".encode(encoding) + data

    error = error_of(data)

    assert str(error) == (
        "/migrations/20240101120000_create_things.sql: "
        "is UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8: save it as UTF-8"
    )


# What reaches the database -------------------------------------------------------------------


CRLF_FILE = (
    "-- UP\r\n"
    "CREATE TABLE notes (body text);\r\n"
    "INSERT INTO notes VALUES ('a\r\nb');\r\n"
    "-- DOWN\r\n"
    "DROP TABLE notes;\r\n"
)


def test_crlf_stays_crlf_in_the_sql_sent_and_the_checksum_reads_lf(target):
    target.write("20240101000001_notes.sql", CRLF_FILE.encode())

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT body FROM notes") == [("a\r\nb",)]  # what psql -f stores
    lf = load_directory(target.directory).migrations[0].checksum
    target.write("20240101000001_notes.sql", CRLF_FILE.replace("\r\n", "\n").encode())
    assert load_directory(target.directory).migrations[0].checksum == lf
    assert target.call("sqlmigrate_status", "--check").code == 0


def test_a_nul_byte_is_refused_at_load_naming_the_line_and_nothing_runs(target):
    target.write("20240101000001_half.sql", b"-- UP\nCREATE TABLE half (id integer);\nSELECT '\x00';\nCOMMIT;\n")

    validated = target.manage("sqlmigrate_validate")
    applied = target.manage("sqlmigrate_up")

    assert validated.returncode == EXIT_CODES[ProblemKind.BAD_FILE] == 7
    assert "20240101000001_half.sql:3: holds a NUL byte" in validated.stderr
    assert applied.returncode == 1 and "Traceback" not in applied.stderr
    assert "20240101000001_half.sql:3: holds a NUL byte" in applied.stderr
    assert target.tables() == set()


def test_up_and_validate_still_refuse_an_empty_up_section(target):
    path = create_migration_file(target.directory, "not written yet")

    applied = target.call("sqlmigrate_up")
    validated = target.call("sqlmigrate_validate")

    assert applied.code == 1 and applied.err.startswith(f"{path}:4: the -- UP section is empty")
    assert validated.code == 7
    assert target.tables() == set()


def test_an_empty_migration_on_purpose_is_applied_and_recorded(target):
    target.migration(
        "20240101000000_moved_to_app_code",
        "-- the data is migrated in application code",
        header="-- sqlmigrate: empty\n",
    )
    target.migration("20240101000001_said_empty", "SELECT 1;", header="-- sqlmigrate: empty\n")

    refused = target.call("sqlmigrate_validate")
    (target.directory / "20240101000001_said_empty.sql").unlink()
    applied = target.call("sqlmigrate_up")

    assert refused.code == 7
    assert "20240101000001_said_empty.sql:3: '-- sqlmigrate: empty' but the -- UP section holds SQL" in refused.err
    assert applied.code == 0, applied.text
    assert target.history() == ["20240101000000_moved_to_app_code"]
