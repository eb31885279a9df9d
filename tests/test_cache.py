"""The reuse hook of the directory loader: what the admin page's cache and the system check's
record of clean files spare reading, and when they must not. Files only, no database."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sqlmigrate_app import directory, files, statements
from sqlmigrate_app.cache import CleanRecord, FileCache
from sqlmigrate_app.checks import check_files
from sqlmigrate_app.directory import Loaded, MigrationSet, Reuse, Signatures, Vouched, load_directory, signatures

RULES_RECORDED = Path(__file__).with_name("rules_version.json")


def good(table: str) -> str:
    return f"-- UP\nCREATE TABLE {table} (id INTEGER);\n-- DOWN\nDROP TABLE {table};\n"


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust a file's signature at once: the files of a test are younger than RACY_NS."""
    monkeypatch.setattr(directory, "RACY_NS", 0)


@pytest.fixture
def distrusting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust no file's signature: every file changed too recently, however slow the test."""
    monkeypatch.setattr(directory, "RACY_NS", 1 << 62)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the loader reads, in order."""
    read: list[str] = []
    real = directory.read_migration

    def reading(where: Path, name: str, dir_fd: int | None = None) -> Loaded:
        read.append(name)
        return real(where, name, dir_fd)

    monkeypatch.setattr(directory, "read_migration", reading)
    return read


class Offering(Reuse):
    """A reuse that vouches for the files named in ``offered``, and notes what it is asked."""

    def __init__(self, *offered: str) -> None:
        self.offered = offered
        self.asked: list[tuple[str, str]] = []

    def reuse(self, name: str, signature: str) -> Vouched | None:
        self.asked.append((name, signature))
        return Vouched(name[:-4]) if name in self.offered else None


# The admin page's cache ---------------------------------------------------------------------


@pytest.mark.usefixtures("trusting")
def test_a_file_changed_after_it_was_cached_is_read_again_and_only_it(tmp_path: Path, reads: list[str]) -> None:
    (tmp_path / "20240101000000_a.sql").write_text(good("a"))
    (tmp_path / "20240101000001_b.sql").write_text(good("b"))
    cache = FileCache(tmp_path)
    first = load_directory(tmp_path, cache).migrations

    (tmp_path / "20240101000001_b.sql").write_text(good("b_changed"))
    second = load_directory(tmp_path, cache).migrations

    assert reads == ["20240101000000_a.sql", "20240101000001_b.sql", "20240101000001_b.sql"]
    assert second[0] is first[0]
    assert "b_changed" in second[1].up_sql


@pytest.mark.usefixtures("trusting")
def test_while_nothing_changes_the_cache_gives_the_same_set_and_reads_nothing(tmp_path: Path, reads: list[str]) -> None:
    (tmp_path / "20240101000000_a.sql").write_text(good("a"))
    (tmp_path / "20240101000001_bad.sql").write_text("nonsense\n")
    cache = FileCache(tmp_path)

    first, second = cache.load(), cache.load()

    assert second is first
    assert len(reads) == 2
    assert [error.message for error in second.errors] == ["SQL before the -- UP marker"]


@pytest.mark.usefixtures("trusting")
def test_a_deleted_file_is_gone_from_the_cache(tmp_path: Path) -> None:
    (tmp_path / "20240101000000_a.sql").write_text(good("a"))
    (tmp_path / "20240101000001_b.sql").write_text(good("b"))
    cache = FileCache(tmp_path)
    cache.load()

    (tmp_path / "20240101000000_a.sql").unlink()

    assert [migration.id for migration in cache.load().migrations] == ["20240101000001_b"]


@pytest.mark.usefixtures("distrusting")
def test_a_file_whose_signature_is_racy_is_read_every_time(tmp_path: Path, reads: list[str]) -> None:
    (tmp_path / "20240101000000_a.sql").write_text(good("a"))
    cache = FileCache(tmp_path)
    offering = Offering("20240101000000_a.sql")

    cache.load()
    cache.load()
    found = load_directory(tmp_path, offering)

    assert signatures(tmp_path) == {"20240101000000_a.sql": None}
    assert reads == ["20240101000000_a.sql"] * 3
    assert offering.asked == []  # never asked: whatever it knows cannot be trusted
    assert [migration.id for migration in found.migrations] == ["20240101000000_a"]


# The loop and its hook -------------------------------------------------------------------------


@pytest.mark.usefixtures("trusting")
def test_a_file_the_reuse_vouches_for_is_not_read_and_counts_for_timestamps(tmp_path: Path, reads: list[str]) -> None:
    (tmp_path / "20240101000000_a.sql").write_text("nonsense\n")  # not read, so not found out
    (tmp_path / "20240101000000_b.sql").write_text(good("b"))
    offering = Offering("20240101000000_a.sql")

    found = load_directory(tmp_path, offering)

    assert offering.asked == list(signatures(tmp_path).items())
    assert reads == ["20240101000000_b.sql"]
    assert found.migrations == []
    assert [error.message for error in found.errors] == [
        "timestamp 20240101000000 is also used by 20240101000000_a.sql"
    ]


@pytest.mark.usefixtures("trusting")
def test_the_reuse_is_told_what_each_load_found_under_which_signatures(tmp_path: Path) -> None:
    class Noting(Reuse):
        told: tuple[Signatures, dict[str, Loaded | Vouched], MigrationSet] | None = None

        def remember(self, signed: Signatures, loaded: dict[str, Loaded | Vouched], found: MigrationSet) -> None:
            self.told = (signed, loaded, found)

    (tmp_path / "20240101000000_a.sql").write_text(good("a"))
    (tmp_path / "20240101000001_bad.sql").write_text("nonsense\n")
    noting = Noting()

    found = load_directory(tmp_path, noting)

    assert noting.told is not None
    signed, loaded, told = noting.told
    assert signed == signatures(tmp_path) and None not in signed.values()
    assert loaded == {"20240101000000_a.sql": found.migrations[0], "20240101000001_bad.sql": found.errors[0]}
    assert told is found


# The system check's record ---------------------------------------------------------------------


@pytest.mark.usefixtures("trusting")
def test_the_check_record_holds_for_one_rules_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "20240101000000_bad.sql").write_text("nonsense\n")
    [(name, signature)] = signatures(tmp_path).items()
    assert signature is not None
    CleanRecord(tmp_path).write({CleanRecord.key(name, signature)})  # as if found clean by these rules
    assert json.loads(CleanRecord(tmp_path).path.read_text())["rules"] == files.RULES_VERSION
    assert check_files(tmp_path)[0] == []

    monkeypatch.setattr(files, "RULES_VERSION", files.RULES_VERSION + 1)

    assert [error.message for error in check_files(tmp_path)[0]] == ["SQL before the -- UP marker"]


@pytest.mark.usefixtures("trusting")
def test_a_recorded_file_that_a_new_one_shares_a_timestamp_with_is_reported_and_dropped(tmp_path: Path) -> None:
    (tmp_path / "20240101000000_b.sql").write_text(good("b"))
    assert check_files(tmp_path)[0] == []

    (tmp_path / "20240101000000_a.sql").write_text(good("a"))
    errors, read = check_files(tmp_path)

    assert [str(error) for error in errors] == [
        f"{tmp_path / '20240101000000_b.sql'}: timestamp 20240101000000 is also used by 20240101000000_a.sql"
    ]
    assert [migration.id for migration in read] == ["20240101000000_a"]  # b, recorded, was not read
    assert {key.split()[0] for key in CleanRecord(tmp_path).read()} == {"20240101000000_a.sql"}


def test_a_change_to_the_rules_is_looked_at_and_the_rules_version_bumped_if_it_changes_what_passes() -> None:
    recorded = json.loads(RULES_RECORDED.read_text())
    digest = hashlib.sha256()
    for module in (files, statements):
        digest.update(Path(str(module.__file__)).read_bytes().replace(b"\r\n", b"\n"))

    now = {"rules_version": files.RULES_VERSION, "source_sha256": digest.hexdigest()}

    assert recorded == now, (
        "sqlmigrate_app/files.py or statements.py changed since tests/rules_version.json was written. If the change "
        "alters what a migration file is checked for (its name, markers, directives, encoding or statements), bump "
        "files.RULES_VERSION, so that the system check stops trusting the files it recorded clean under the old "
        f"rules. Then, bumped or not, write {json.dumps(now)} to tests/rules_version.json."
    )
