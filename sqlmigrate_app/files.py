"""Find, name-check, parse and checksum migration files.

Everything here is pure: it reads files and returns data, it never writes and never touches a
database, so ``validate``, ``status``, the system checks and the admin can all share it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import EmptyMigration, MigrationFileError, plural
from .statements import refusal_in_transaction, refusal_without_transaction

FILENAME_RE = re.compile(r"(?P<timestamp>[0-9]{14})_(?P<slug>[a-z0-9_]+)\.sql")
MARKER_RE = re.compile(r"^--\s*(?P<marker>up|down)\s*$", re.IGNORECASE)
DIRECTIVE_RE = re.compile(r"^--\s*sqlmigrate\s*:\s*(?P<body>.*?)\s*$", re.IGNORECASE)
REQUIREMENT_RE = re.compile(r"(?P<app_label>[A-Za-z_][A-Za-z0-9_]*)\.(?P<name>[A-Za-z0-9_]+)")
DURATION_RE = re.compile(r"^\d+(\.\d+)?(ms|s|min|h|d)?$")
BOM = "\ufeff"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# The id must fit the history table's VARCHAR(255) and the file name the usual 255-byte limit.
MAX_SLUG = 200
# A line holding something besides whitespace that is not a ``--`` comment.
SQL_LINE_RE = re.compile(r"^[^\S\n]*(?!--)\S", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Section:
    """The SQL of one side of a migration and the file line its first line sits on."""

    sql: str
    line: int

    @property
    def is_empty(self) -> bool:
        """True when the section holds only comments and blank lines."""
        return not has_sql(self.sql)


@dataclass(frozen=True, slots=True)
class Requirement:
    """A Django migration an SQL migration needs applied first (``-- sqlmigrate: requires=``)."""

    app_label: str
    name: str
    line: int

    @classmethod
    def parse(cls, path: Path, line: int, text: str) -> Requirement:
        """``auth.0012_alter_user_first_name_max_length``, or raise naming the line."""
        match = REQUIREMENT_RE.fullmatch(text.strip())
        if match is None:
            raise MigrationFileError(
                path, f"bad requires value {text.strip()!r}: use APP_LABEL.MIGRATION, e.g. auth.0001_initial", line
            )
        return cls(match["app_label"], match["name"], line)

    def __str__(self) -> str:
        return f"{self.app_label}.{self.name}"


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file, parsed: its id, checksum, both sections and its directives."""

    id: str
    path: Path
    checksum: str
    up: Section
    down: Section
    transactional: bool = True
    lock_timeout: str | None = None
    statement_timeout: str | None = None
    empty: bool = False
    requires: tuple[Requirement, ...] = ()

    @property
    def name(self) -> str:
        """The display name, as the history's ``name`` column holds it."""
        return display_name(self.id)

    @property
    def timestamp(self) -> str:
        """The 14-digit UTC timestamp the id starts with."""
        return self.id[:14]

    @property
    def reversible(self) -> bool:
        """False when the ``-- DOWN`` section is empty: the migration cannot be rolled back."""
        return not self.down.is_empty


@dataclass
class MigrationSet:
    """Every well-formed migration of a directory, in id order, and every problem found."""

    directory: Path
    migrations: list[Migration] = field(default_factory=list)
    errors: list[MigrationFileError] = field(default_factory=list)
    _by_id: dict[str, Migration] | None = field(default=None, init=False, repr=False, compare=False)

    def by_id(self) -> dict[str, Migration]:
        """The migrations by id, built once: ``load_directory`` has finished the list by then."""
        if self._by_id is None:
            self._by_id = {migration.id: migration for migration in self.migrations}
        return self._by_id

    def raise_first_error(self) -> None:
        """Raise the first problem found, saying how many more there are."""
        if self.errors:
            more = len(self.errors) - 1
            suffix = f" (and {plural(more, 'more problem')}; run sqlmigrate_validate)" if more else ""
            first = self.errors[0]
            raise MigrationFileError(first.path, first.message + suffix, first.line)


def display_name(migration_id: str) -> str:
    """``20241201000001_create_client_registrations`` -> ``Create Client Registrations``."""
    slug = migration_id.partition("_")[2]
    return " ".join(word.capitalize() for word in slug.split("_") if word)


def has_sql(text: str) -> bool:
    """True when ``text`` holds anything besides blank lines and ``--`` comments."""
    return SQL_LINE_RE.search(text) is not None


def checksum(text: str) -> str:
    """SHA-256 of the UTF-8 text, encoded a megabyte at a time so a big file is not copied whole."""
    digest = hashlib.sha256()
    for start in range(0, len(text), 1 << 20):
        digest.update(text[start : start + (1 << 20)].encode("utf-8"))
    return digest.hexdigest()


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text with a leading BOM dropped and every line ending turned into ``\\n``."""
    if data.startswith(UTF16_BOMS):  # what Windows editors call "Unicode"
        message = "is UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8: save it as UTF-8"
        raise MigrationFileError(path, message)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MigrationFileError(path, f"is not valid UTF-8 (byte {exc.start})", line) from None
    if text.startswith(BOM):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def check_filename(path: Path) -> str:
    """Return the migration id of a well-named file, or raise saying what is wrong."""
    match = FILENAME_RE.fullmatch(path.name)
    if not match:
        raise MigrationFileError(
            path, "bad file name: expected YYYYMMDDHHMMSS_snake_case_name.sql (lowercase letters, digits, _)"
        )
    stamp = match["timestamp"]
    try:
        datetime(
            int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[8:10]), int(stamp[10:12]), int(stamp[12:14])
        )
    except ValueError:
        raise MigrationFileError(path, f"bad file name: {stamp} is not a real date and time") from None
    return path.name[:-4]


def parse_duration(value: str) -> str | None:
    """A PostgreSQL duration as sqlmigrate accepts it (``500ms``, ``5 s``, ``2min``), normalised
    (``5s``); None when it is not one."""
    normalised = value.replace(" ", "").lower()
    return normalised if DURATION_RE.match(normalised) else None


def parse_directive(path: Path, line_no: int, body: str, options: dict[str, object]) -> None:
    """Read one ``-- sqlmigrate: ...`` line into ``options``, or raise naming its line."""
    key, _, value = (part.strip() for part in body.partition("="))
    key = key.lower()
    parsed: object
    if key == "no-transaction" and not value:
        option, parsed = "transactional", False
    elif key == "empty" and not value:
        option, parsed = "empty", True
    elif key in ("lock-timeout", "statement-timeout") and value:
        normalised = parse_duration(value)
        if normalised is None:
            raise MigrationFileError(path, f"bad {key} value {value!r}: use a duration like 500ms, 5s, 2min", line_no)
        option, parsed = key.replace("-", "_"), normalised
    elif key == "requires" and value:
        requirements = [Requirement.parse(path, line_no, name) for name in value.split(",")]
        options["requires"] = (*options.get("requires", ()), *requirements)  # type: ignore[misc]
        return
    else:
        raise MigrationFileError(
            path,
            f"unknown directive {body!r} (known: no-transaction, lock-timeout=DURATION, statement-timeout=DURATION, "
            "requires=APP_LABEL.MIGRATION, empty)",
            line_no,
        )
    if option in options:
        raise MigrationFileError(path, f"directive {key!r} given twice", line_no)
    options[option] = parsed


def comment_lines(text: str) -> Iterator[tuple[int, int, str]]:
    """``(line number, offset, stripped line)`` of each line that starts with ``--``.

    Only these lines can be markers or directives. Jumping from one ``--`` to the next with
    ``str.find`` keeps a 50,000-statement migration from costing a Python step per line.
    """
    line_no, counted_to, pos = 1, 0, 0
    while (hit := text.find("--", pos)) != -1:
        start = text.rfind("\n", 0, hit) + 1
        end = text.find("\n", hit)
        if end == -1:
            end = len(text)
        if not text[start:hit].strip():
            line_no += text.count("\n", counted_to, start)
            counted_to = start
            yield line_no, start, text[start:end].strip()
        pos = end + 1


def line_of(text: str, offset: int) -> int:
    """The 1-based line number of ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1


def parse_migration(path: Path, data: bytes) -> Migration:
    """Parse one file's bytes into a :class:`Migration`, or raise naming the file and line.

    The bytes are let go once decoded, so a big file is not held twice while it is parsed.
    """
    migration_id = check_filename(path)
    text = decode(path, data)
    del data
    return parse_text(path, migration_id, text)


def parse_text(path: Path, migration_id: str, text: str) -> Migration:
    """Sections, directives and refusals of a decoded file (see :func:`parse_migration`)."""
    if not text or text.isspace():
        raise MigrationFileError(path, "file is empty: it needs a -- UP section", 1)
    first_sql = SQL_LINE_RE.search(text)
    sql_before_up = MigrationFileError(
        path, "SQL before the -- UP marker", line_of(text, first_sql.start()) if first_sql else 1
    )
    up_marker = down_marker = None  # line numbers
    up_start = down_start = down_line_start = len(text) + 1
    options: dict[str, object] = {}
    for line_no, offset, line in comment_lines(text):
        if up_marker is None and first_sql is not None and first_sql.start() < offset:
            raise sql_before_up
        marker = MARKER_RE.match(line)
        if marker:
            kind = marker["marker"].upper()
            if kind == "UP" and up_marker is not None:
                raise MigrationFileError(path, f"second -- UP marker (the first is on line {up_marker})", line_no)
            if kind == "UP" and down_marker is not None:
                raise MigrationFileError(path, "-- UP after -- DOWN: the UP section comes first", line_no)
            if kind == "DOWN" and up_marker is None:
                raise MigrationFileError(path, "-- DOWN before -- UP: the UP section comes first", line_no)
            if kind == "DOWN" and down_marker is not None:
                raise MigrationFileError(path, f"second -- DOWN marker (the first is on line {down_marker})", line_no)
            after = text.find("\n", offset)
            after = len(text) + 1 if after == -1 else after + 1
            if kind == "UP":
                up_marker, up_start = line_no, after
            else:
                down_marker, down_start, down_line_start = line_no, after, offset
            continue
        directive = DIRECTIVE_RE.match(line)
        if directive:
            if up_marker is not None:
                raise MigrationFileError(path, "directives go before the -- UP marker", line_no)
            parse_directive(path, line_no, directive["body"], options)
    if up_marker is None:
        raise sql_before_up if first_sql is not None else MigrationFileError(path, "no -- UP marker", 1)
    # Slices of the text, exactly what joining the lines between the markers would give.
    up = Section(text[up_start : down_line_start - 1], up_marker + 1)
    down = Section(text[down_start:], down_marker + 1) if down_marker is not None else Section("", 0)
    if up.is_empty and not options.get("empty"):
        raise EmptyMigration(
            path,
            "the -- UP section is empty: write its SQL, or add '-- sqlmigrate: empty' before -- UP "
            "if it is empty on purpose",
            up_marker,
        )
    first_up_sql = SQL_LINE_RE.search(up.sql)
    if options.get("empty") and first_up_sql is not None:
        sql_line = up.line + up.sql.count("\n", 0, first_up_sql.start())
        raise MigrationFileError(path, "'-- sqlmigrate: empty' but the -- UP section holds SQL", sql_line)
    migration = Migration(migration_id, path, checksum(text), up, down, **options)  # type: ignore[arg-type]
    check = refusal_in_transaction if migration.transactional else refusal_without_transaction
    for section in (up, down):
        refusal = check(section.sql, section.line)
        if refusal is not None:
            raise MigrationFileError(path, refusal.message, refusal.line)
    return migration


def directory_problem(directory: Path) -> str | None:
    """What is wrong with a migrations directory ("does not exist", ...), or None."""
    if directory.is_dir():
        return None
    return "is not a directory" if directory.exists() else "does not exist"


def load_directory(directory: Path) -> MigrationSet:
    """Read, check and parse every ``*.sql`` file of ``directory`` (subdirectories are ignored)."""
    found = MigrationSet(Path(directory))
    problem = directory_problem(found.directory)
    if problem is not None:
        found.errors.append(MigrationFileError(found.directory, f"migrations directory {problem}"))
        return found
    # scandir knows file types without a stat per file; sorting names beats sorting Paths 5x.
    with os.scandir(found.directory) as entries:
        names = sorted(entry.name for entry in entries if entry.name.lower().endswith(".sql") and entry.is_file())
    paths = [found.directory / name for name in names]
    by_timestamp: dict[str, Path] = {}
    for path in paths:
        try:
            migration = parse_migration(path, path.read_bytes())
        except MigrationFileError as exc:
            found.errors.append(exc)
            continue
        except OSError as exc:
            found.errors.append(MigrationFileError(path, f"cannot be read: {exc.strerror or exc}"))
            continue
        other = by_timestamp.setdefault(migration.timestamp, path)
        if other is not path:
            found.errors.append(
                MigrationFileError(path, f"timestamp {migration.timestamp} is also used by {other.name}")
            )
            continue
        found.migrations.append(migration)
    found.migrations.sort(key=lambda migration: migration.id)
    return found
