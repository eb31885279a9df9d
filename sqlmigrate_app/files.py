"""One migration file: its name, its format and its checksum.

The rules of a file on its own: the name pattern, the bytes decoded (UTF-8, nothing else), the
``-- UP`` / ``-- DOWN`` markers and ``-- sqlmigrate:`` directives, the sections with their file
lines, the checksum. Pure: bytes and text in, a :class:`Migration` out. Reading a directory of
them is :mod:`.directory`'s job, checking their statements :mod:`.statements`'.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .errors import EmptyMigration, MigrationFileError

# What a file is checked for, here and in statements.py: the system check's record of clean
# files (cache.CleanRecord) holds only for this version. Bump it when a change to either module
# changes which files pass; tests/test_cache.py fails until the change is looked at.
RULES_VERSION = 2
FILENAME_RE = re.compile(r"(?P<timestamp>[0-9]{14})_(?P<slug>[a-z0-9_]+)\.sql|R__(?P<repeatable>[A-Za-z0-9_]+)\.sql")
# A repeatable migration's id (Flyway's spelling): its file is ``R__<name>.sql``.
REPEATABLE_PREFIX = "R__"
REPEATABLE_ID_RE = re.compile(r"R__[A-Za-z0-9_]+")
# A ``--`` comment that is a marker (``-- UP``, ``-- DOWN``) or a directive (``-- sqlmigrate:
# ...``) if nothing but whitespace comes before it on its line (see :func:`heads`).
HEAD_RE = re.compile(
    r"--[^\S\n]*(?i:(?P<marker>up|down)|sqlmigrate[^\S\n]*:[^\S\n]*(?P<body>[^\n]*?))[^\S\n]*$", re.MULTILINE
)
REQUIREMENT_RE = re.compile(r"(?P<app_label>[A-Za-z_][A-Za-z0-9_]*)\.(?P<name>[A-Za-z0-9_]+)")
DURATION_RE = re.compile(r"^\d+(\.\d+)?(ms|s|min|h|d)?$")
BOM = "\ufeff"
# What Windows editors call "Unicode": checked longest first, UTF-32 LE's starts like UTF-16 LE's.
OTHER_ENCODINGS = (("UTF-32", (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")), ("UTF-16", (b"\xff\xfe", b"\xfe\xff")))
# The id must fit the history table's VARCHAR(255) and the file name the usual 255-byte limit.
MAX_SLUG = 200
# A line holding something besides whitespace that is not a ``--`` comment.
SQL_LINE_RE = re.compile(r"^[^\S\n]*(?!--)\S", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Section:
    """The SQL of one side of a migration and the file line its first line sits on."""

    sql: str
    line: int


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
    """One migration file, parsed: its id, checksum, both sections and its directives.

    The sections' SQL and first lines are fields of their own, :attr:`up` and :attr:`down` make
    the :class:`Section` when asked: one object per file rather than three for Python's cycle
    collector to walk, 10,000 files over.
    """

    id: str
    directory: Path
    checksum: str
    up_sql: str
    up_line: int
    down_sql: str
    down_line: int  # 0 when the file has no -- DOWN marker
    transactional: bool = True
    lock_timeout: str | None = None
    statement_timeout: str | None = None
    empty: bool = False
    requires: tuple[Requirement, ...] = ()
    after: tuple[str, ...] = ()  # the repeatables it runs after (``requires=R__other``)
    recreate_repeatables: bool = False  # a versioned migration's ``recreate-repeatables``

    @property
    def repeatable(self) -> bool:
        """Whether it is a repeatable migration (``R__<name>.sql``), run again whenever it changes."""
        return is_repeatable(self.id)

    @property
    def up(self) -> Section:
        """The ``-- UP`` section."""
        return Section(self.up_sql, self.up_line)

    @property
    def down(self) -> Section:
        """The ``-- DOWN`` section (empty, line 0, without a ``-- DOWN`` marker)."""
        return Section(self.down_sql, self.down_line)

    @property
    def path(self) -> Path:
        """The file, made when asked for: building a ``Path`` per file adds up at 10,000 files
        (benchmarks/README.md)."""
        return self.directory / f"{self.id}.sql"

    @property
    def name(self) -> str:
        """The display name, as the history's ``name`` column holds it."""
        return display_name(self.id)

    @property
    def reversible(self) -> bool:
        """False when the ``-- DOWN`` section is empty: the migration cannot be rolled back."""
        return has_sql(self.down_sql)

    def timeouts(self, defaults: Timeouts) -> Timeouts:
        """The timeouts it runs with: its ``lock-timeout`` / ``statement-timeout`` directives,
        else ``defaults`` (the settings')."""
        return Timeouts(self.lock_timeout or defaults.lock, self.statement_timeout or defaults.statement)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """PostgreSQL's ``lock_timeout`` and ``statement_timeout`` for a migration, each a duration
    (``5s``) or None for the server's own."""

    lock: str | None = None
    statement: str | None = None


def is_repeatable(migration_id: str) -> bool:
    """Whether ``migration_id`` (a file's, or a history row's) is a repeatable migration's."""
    return migration_id.startswith(REPEATABLE_PREFIX)


@functools.lru_cache(maxsize=1 << 16)  # the admin page shows the same names request after request
def display_name(migration_id: str) -> str:
    """``20241201000001_create_client_registrations`` -> ``Create Client Registrations``."""
    slug = migration_id.partition("_")[2]
    return " ".join(word.capitalize() for word in slug.split("_") if word)


def has_sql(text: str) -> bool:
    """True when ``text`` holds anything besides blank lines and ``--`` comments."""
    return SQL_LINE_RE.search(text) is not None


def checksum(text: str) -> str:
    """SHA-256 of the UTF-8 text with every line ending read as ``\\n``, so a file checked out
    with CRLF line ends (git on Windows) keeps its checksum. Encoded a megabyte at a time, so a
    big file is not copied whole."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) <= 1 << 20:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    digest = hashlib.sha256()
    for start in range(0, len(text), 1 << 20):
        digest.update(text[start : start + (1 << 20)].encode("utf-8"))
    return digest.hexdigest()


def decode(directory: Path, name: str, data: bytes) -> str:
    """The text of the file ``name`` of ``directory`` as it will run: UTF-8 with a leading BOM
    dropped, nothing else changed (CRLF line ends stay in the SQL, as psql would send them; a
    file of classic Mac CR line ends alone has them read as LF). Refuses what no database would
    run as written: another encoding, and a NUL byte, where libpq stops reading the SQL (the
    rest of the migration would be lost) and SQLite's driver refuses it.

    Plain ASCII, as most files are, needs none of that care: a memchr or two, and no ``Path``
    made."""
    if data.isascii() and b"\0" not in data and (b"\r" not in data or b"\n" in data):
        return data.decode("ascii")
    path = directory / name
    for encoding, boms in OTHER_ENCODINGS:
        if data.startswith(boms):
            message = f"is {encoding} (it starts with a {encoding} byte-order mark), not UTF-8: save it as UTF-8"
            raise MigrationFileError(path, message)
    nul = data.find(b"\0")
    if nul != -1:
        message = (
            f"holds a NUL byte (byte {nul}), which no database takes in SQL (PostgreSQL's client library would "
            "stop reading the migration there): remove it"
        )
        raise MigrationFileError(path, message, data.count(b"\n", 0, nul) + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MigrationFileError(path, f"is not valid UTF-8 (byte {exc.start})", line) from None
    if text.startswith(BOM):
        text = text[1:]
    if "\r" in text and "\n" not in text:
        # Classic Mac line ends, the only kind neither psql nor the markers read as lines.
        text = text.replace("\r", "\n")
    return text


def check_name(directory: Path, name: str) -> str:
    """The migration id of the well-named file ``name`` of ``directory``, or raise saying what is
    wrong with the name (the ``Path`` made only then)."""
    match = FILENAME_RE.fullmatch(name)
    if not match:
        raise MigrationFileError(
            directory / name,
            "bad file name: expected YYYYMMDDHHMMSS_snake_case_name.sql (lowercase letters, digits, _), "
            "or R__name.sql for a repeatable migration",
        )
    stamp = match["timestamp"]
    if stamp is None:
        return name[:-4]
    if not _real_time(stamp):
        raise MigrationFileError(directory / name, f"bad file name: {stamp} is not a real date and time")
    return name[:-4]


def _real_time(stamp: str) -> bool:
    """Whether ``YYYYMMDDHHMMSS`` is a real date and time (``fromisoformat`` is C: a tenth of the
    time of six ``int()`` calls and ``datetime()``)."""
    try:
        datetime.fromisoformat(f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}")
    except ValueError:
        return False
    return True


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
    elif key == "recreate-repeatables" and not value:
        option, parsed = "recreate_repeatables", True
    elif key == "requires" and value:
        _parse_requires(path, line_no, value, options)
        return
    else:
        raise MigrationFileError(
            path,
            f"unknown directive {body!r} (known: no-transaction, lock-timeout=DURATION, statement-timeout=DURATION, "
            "requires=APP_LABEL.MIGRATION or R__NAME, empty, recreate-repeatables)",
            line_no,
        )
    if option in options:
        raise MigrationFileError(path, f"directive {key!r} given twice", line_no)
    options[option] = parsed


def _parse_requires(path: Path, line_no: int, value: str, options: dict[str, object]) -> None:
    """``requires=``: Django migrations (``auth.0001_initial``) and, for a repeatable migration,
    the repeatables it runs after (``R__other``)."""
    names = [name.strip() for name in value.split(",")]
    after = tuple(name for name in names if is_repeatable(name))
    for name in after:
        if not REPEATABLE_ID_RE.fullmatch(name):
            raise MigrationFileError(path, f"bad requires value {name!r}: a repeatable is named R__NAME", line_no)
        if not is_repeatable(path.name):
            raise MigrationFileError(
                path, f"requires={name}: only a repeatable migration (R__NAME.sql) runs after a repeatable", line_no
            )
    requirements = [Requirement.parse(path, line_no, name) for name in names if not is_repeatable(name)]
    options["requires"] = (*options.get("requires", ()), *requirements)  # type: ignore[misc]
    if after:
        options["after"] = (*options.get("after", ()), *after)  # type: ignore[misc]


def heads(text: str) -> list[tuple[int, int, int, str | None, str | None]]:
    """``(line number, line start, line end, marker, directive body)`` of each marker line
    (``-- UP``, ``-- DOWN``: ``marker`` is set) and directive line (``-- sqlmigrate: ...``:
    ``body`` is set), in order.

    Other lines are never looked at: :data:`HEAD_RE` starts with the literal ``--``, so the regex
    engine jumps from one ``--`` to the next, and only a match that starts its line (after
    whitespace) costs a Python step.
    """
    found = []
    line_no, counted_to = 1, 0
    for match in HEAD_RE.finditer(text):
        hit = match.start()
        start = text.rfind("\n", 0, hit) + 1
        if start == hit or text[start:hit].isspace():
            line_no += text.count("\n", counted_to, start)
            counted_to = start
            found.append((line_no, start, match.end(), match["marker"], match["body"]))
    return found


def line_of(text: str, offset: int) -> int:
    """The 1-based line number of ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1


def parse_migration(path: Path, data: bytes) -> Migration:
    """Parse one file's bytes into a :class:`Migration`, or raise naming the file and line.

    The bytes are let go once decoded, so a big file is not held twice while it is parsed.
    """
    migration_id = check_name(path.parent, path.name)
    text = decode(path.parent, path.name, data)
    del data
    return parse_text(path.parent, migration_id, text)


def parse_text(directory: Path, migration_id: str, text: str) -> Migration:
    """Sections, directives and checksum of the decoded file ``migration_id`` of ``directory``
    (see :func:`parse_migration`).

    Not its statements: :func:`~.statements.statement_error` checks those, for the migrations that need it.
    """
    try:
        return _parse(directory, migration_id, text)
    except _Malformed as exc:
        raise exc.error(directory / f"{migration_id}.sql", exc.message, exc.line) from None


class _Malformed(Exception):
    """A problem :func:`_parse` found, and the error class to report it with: :func:`parse_text`
    names the file, so that no ``Path`` is made for the files that have none."""

    def __init__(self, message: str, line: int, error: type[MigrationFileError] = MigrationFileError) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.error = error


def _parse(directory: Path, migration_id: str, text: str) -> Migration:
    if not text or text.isspace():
        raise _Malformed(f"file is empty: it needs {'SQL' if is_repeatable(migration_id) else 'a -- UP section'}", 1)
    first_sql = SQL_LINE_RE.search(text)
    found = heads(text)
    # A repeatable migration needs no -- UP marker: without one, its SQL starts at the top.
    implicit_up = is_repeatable(migration_id) and not any(marker and marker.upper() == "UP" for *_, marker, _ in found)
    up_marker: int | None = 0 if implicit_up else None  # line numbers
    down_marker = None
    up_start, down_start, down_line_start = (0 if implicit_up else len(text) + 1), len(text) + 1, len(text) + 1
    options: dict[str, object] = {}
    for line_no, offset, end, marker, body in found:
        if up_marker is None and first_sql is not None and first_sql.start() < offset:
            raise _Malformed("SQL before the -- UP marker", line_of(text, first_sql.start()))
        if marker is None:
            _directive_here(implicit_up, up_marker, first_sql, offset, line_no)
            parse_directive(directory / f"{migration_id}.sql", line_no, body or "", options)
            continue
        kind = marker.upper()
        _check_marker(kind, line_no, up_marker, down_marker)
        if kind == "UP":
            up_marker, up_start = line_no, end + 1
        else:
            down_marker, down_start, down_line_start = line_no, end + 1, offset
    if up_marker is None:
        if first_sql is not None:
            raise _Malformed("SQL before the -- UP marker", line_of(text, first_sql.start()))
        raise _Malformed("no -- UP marker", 1)
    _check_recreating(migration_id, options)
    # The first SQL line of the file is not before -- UP (that raised above), so the UP section
    # has SQL when that line comes before -- DOWN: no second search through the section.
    first_up_sql = first_sql.start() if first_sql is not None and first_sql.start() < down_line_start else None
    _check_emptiness(text, first_up_sql, up_marker, bool(options.get("empty")))
    # Slices of the text, exactly what joining the lines between the markers would give.
    up_end = down_line_start - 1
    if text[up_end - 1 : up_end] == "\r" and up_end > up_start:
        up_end -= 1  # the CR of the CRLF before -- DOWN
    up_sql, up_line = text[up_start:up_end], up_marker + 1
    down_sql, down_line = (text[down_start:], down_marker + 1) if down_marker is not None else ("", 0)
    fields = (migration_id, directory, checksum(text), up_sql, up_line, down_sql, down_line)
    return Migration(*fields, **options)  # type: ignore[arg-type]


def _directive_here(
    implicit_up: bool, up_marker: int | None, first_sql: re.Match[str] | None, offset: int, line: int
) -> None:
    """Raise unless a directive on ``line`` (at ``offset``) comes before the SQL: before the
    ``-- UP`` marker, or in a repeatable without one, before its first SQL line."""
    if implicit_up:
        if first_sql is not None and first_sql.start() < offset:
            raise _Malformed("directives go before the SQL", line)
    elif up_marker is not None:
        raise _Malformed("directives go before the -- UP marker", line)


def _check_recreating(migration_id: str, options: dict[str, object]) -> None:
    """Raise when ``recreate-repeatables`` is where it cannot work: in a repeatable migration, or
    with ``no-transaction`` (the repeatables are dropped and made again in its transaction)."""
    if options.get("recreate_repeatables") and is_repeatable(migration_id):
        raise _Malformed("'-- sqlmigrate: recreate-repeatables' is for versioned migrations", 1)
    if options.get("recreate_repeatables") and options.get("transactional") is False:
        raise _Malformed("'-- sqlmigrate: recreate-repeatables' needs a transaction: drop no-transaction", 1)


def _check_emptiness(text: str, first_up_sql: int | None, up_marker: int, meant_empty: bool) -> None:
    """Raise when the UP section is empty (``first_up_sql``, the offset of its first SQL line, is
    None) and no ``empty`` directive says it is meant to be, or holds SQL when one does. A
    repeatable migration without a ``-- UP`` marker (``up_marker`` 0) is all its UP section."""
    if first_up_sql is None and not meant_empty and up_marker == 0:
        raise _Malformed("a repeatable migration holds no SQL: write its definition", 1, EmptyMigration)
    if first_up_sql is None and not meant_empty:
        message = (
            "the -- UP section is empty: write its SQL, or add '-- sqlmigrate: empty' before -- UP "
            "if it is empty on purpose"
        )
        raise _Malformed(message, up_marker, EmptyMigration)
    if first_up_sql is not None and meant_empty:
        raise _Malformed("'-- sqlmigrate: empty' but the -- UP section holds SQL", line_of(text, first_up_sql))


def _check_marker(kind: str, line_no: int, up_marker: int | None, down_marker: int | None) -> None:
    """Raise when a marker comes twice or out of order."""
    if kind == "UP" and up_marker is not None:
        raise _Malformed(f"second -- UP marker (the first is on line {up_marker})", line_no)
    if kind == "UP" and down_marker is not None:
        raise _Malformed("-- UP after -- DOWN: the UP section comes first", line_no)
    if kind == "DOWN" and up_marker is None:
        raise _Malformed("-- DOWN before -- UP: the UP section comes first", line_no)
    if kind == "DOWN" and down_marker is not None:
        raise _Malformed(f"second -- DOWN marker (the first is on line {down_marker})", line_no)
