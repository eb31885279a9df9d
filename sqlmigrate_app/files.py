"""Find, name-check, parse and checksum migration files.

Everything here is pure: it reads files and returns data, it never writes and never touches a
database, so ``validate``, ``status``, the system checks and the admin can all share it.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import EmptyMigration, MigrationFileError, plural
from .statements import ALL_HINTS, mentions, refusal_in_transaction, refusal_without_transaction

FILENAME_RE = re.compile(r"(?P<timestamp>[0-9]{14})_(?P<slug>[a-z0-9_]+)\.sql")
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
# Most migrations fit one read of this size; a bigger one is read on in 1 MB pieces.
READ_SIZE = 1 << 16
# No newline translation on Windows; never waiting for a writer to a named pipe.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
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
        """The file, made when asked for: 10,000 ``Path`` objects cost 20 ms to build."""
        return self.directory / f"{self.id}.sql"

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
        return has_sql(self.down_sql)


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


def decode(path: Path, data: bytes) -> str:
    """The file's text as it will run: UTF-8 with a leading BOM dropped, nothing else changed
    (CRLF line ends stay in the SQL, as psql would send them; a file of classic Mac CR line ends
    alone has them read as LF). Refuses what no database would
    run as written: another encoding, and a NUL byte, where libpq stops reading the SQL (the
    rest of the migration would be lost) and SQLite's driver refuses it."""
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


def check_filename(path: Path) -> str:
    """Return the migration id of a well-named file, or raise saying what is wrong."""
    match = FILENAME_RE.fullmatch(path.name)
    if not match:
        raise MigrationFileError(
            path, "bad file name: expected YYYYMMDDHHMMSS_snake_case_name.sql (lowercase letters, digits, _)"
        )
    stamp = match["timestamp"]
    if not _real_time(stamp):
        raise MigrationFileError(path, f"bad file name: {stamp} is not a real date and time")
    return path.name[:-4]


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


def read_file(path: str | Path, dir_fd: int | None = None) -> bytes:
    """The bytes of a file (``path`` relative to ``dir_fd`` if given): ``os.read`` into a buffer
    of about the right size, a third of the time ``Path.read_bytes`` takes on small files.

    Opened without blocking and checked to be a regular file whenever a read comes back empty or
    full, so a named pipe never hangs a command and a device is never read without end."""
    fd = os.open(path, READ_FLAGS, dir_fd=dir_fd)
    try:
        data = os.read(fd, READ_SIZE)
        if 0 < len(data) < READ_SIZE:
            return data
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if len(data) < READ_SIZE:
            return data
        parts = [data]
        while more := os.read(fd, 1 << 20):
            parts.append(more)
        return b"".join(parts)
    finally:
        os.close(fd)


def unreadable(path: Path, error: OSError) -> str:
    """Why the file at ``path`` could not be read, for its error message: what it is when it is
    not a regular file (nothing named like a migration is skipped without a word)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        return "cannot be read: it is gone"
    except OSError:
        mode = stat.S_IFREG
    kinds = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket"}
    if not stat.S_ISREG(mode):
        return f"is {kinds.get(stat.S_IFMT(mode), 'a device')}, not a regular file: move it out of the directory"
    return f"cannot be read: {error.strerror or error}"


def parse_migration(path: Path, data: bytes) -> Migration:
    """Parse one file's bytes into a :class:`Migration`, or raise naming the file and line.

    The bytes are let go once decoded, so a big file is not held twice while it is parsed.
    """
    migration_id = check_filename(path)
    text = decode(path, data)
    del data
    return parse_text(path.parent, migration_id, text)


def parse_text(directory: Path, migration_id: str, text: str) -> Migration:
    """Sections, directives and checksum of the decoded file ``migration_id`` of ``directory``
    (see :func:`parse_migration`).

    Not its statements: :func:`statement_error` checks those, for the migrations that need it.
    """
    try:
        return _parse(directory, migration_id, text)
    except _Malformed as exc:
        raise exc.error(directory / f"{migration_id}.sql", exc.message, exc.line) from None


class _Malformed(Exception):
    """A problem :func:`_parse` found, and the error class to report it with: :func:`parse_text`
    names the file, so that no ``Path`` is made for the files that have none (10,000 of them
    cost 20 ms)."""

    def __init__(self, message: str, line: int, error: type[MigrationFileError] = MigrationFileError) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.error = error


def _parse(directory: Path, migration_id: str, text: str) -> Migration:
    if not text or text.isspace():
        raise _Malformed("file is empty: it needs a -- UP section", 1)
    first_sql = SQL_LINE_RE.search(text)
    up_marker = down_marker = None  # line numbers
    up_start = down_start = down_line_start = len(text) + 1
    options: dict[str, object] = {}
    for line_no, offset, end, marker, body in heads(text):
        if up_marker is None and first_sql is not None and first_sql.start() < offset:
            raise _Malformed("SQL before the -- UP marker", line_of(text, first_sql.start()))
        if marker is None:
            if up_marker is not None:
                raise _Malformed("directives go before the -- UP marker", line_no)
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
    return Migration(
        migration_id,
        directory,
        checksum(text),
        up_sql,
        up_line,
        down_sql,
        down_line,
        **options,  # type: ignore[arg-type]
    )


def _check_emptiness(text: str, first_up_sql: int | None, up_marker: int, meant_empty: bool) -> None:
    """Raise when the UP section is empty (``first_up_sql``, the offset of its first SQL line, is
    None) and no ``empty`` directive says it is meant to be, or holds SQL when one does."""
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


def statement_error(migration: Migration) -> MigrationFileError | None:
    """The first statement of either section that cannot run as the migration is written (see
    :func:`~.statements.refusal_in_transaction`), as the file's error; None when there is none.

    The one check of a file that reads its statements, so it runs only where they matter: for
    every file in ``validate`` and the system check, for the files a run will execute in
    ``up`` and ``down``; ``status`` and the admin page skip it.
    """
    if not mentions(f"{migration.up_sql}\n{migration.down_sql}", ALL_HINTS):
        return None  # the usual answer: one pass over the file, not one per section
    check = refusal_in_transaction if migration.transactional else refusal_without_transaction
    for section in (migration.up, migration.down):
        refusal = check(section.sql, section.line)
        if refusal is not None:
            return MigrationFileError(migration.path, refusal.message, refusal.line)
    return None


def check_statements(migrations: Iterable[Migration]) -> None:
    """Raise the first statement error of these migrations, before any of them runs."""
    for migration in migrations:
        error = statement_error(migration)
        if error is not None:
            raise error


def with_statements_checked(found: MigrationSet) -> MigrationSet:
    """``found`` with every migration's statements checked: a migration with a refused statement
    becomes an error, in file order among the others (what ``validate`` reports)."""
    checked = MigrationSet(found.directory, errors=list(found.errors))
    for migration in found.migrations:
        error = statement_error(migration)
        if error is None:
            checked.migrations.append(migration)
        else:
            checked.errors.append(error)
    if len(checked.errors) > len(found.errors):
        checked.errors.sort(key=lambda error: error.path.name)
    return checked


def directory_problem(directory: Path) -> str | None:
    """What is wrong with a migrations directory ("does not exist", ...), or None."""
    if directory.is_dir():
        return None
    return "is not a directory" if directory.exists() else "does not exist"


def sql_file_entries(directory: Path) -> list[os.DirEntry[str]]:
    """The entries named ``*.sql`` of ``directory``, sorted by name (sorting names beats sorting
    Paths 5x). Whatever else is there is ignored; one of these that is not a regular file (a
    directory, a named pipe, a broken link) is listed, to be reported when it is read."""
    with os.scandir(directory) as entries:
        found = [entry for entry in entries if entry.name.lower().endswith(".sql")]
    found.sort(key=lambda entry: entry.name)
    return found


def sql_file_names(directory: Path) -> list[str]:
    """The names of the ``*.sql`` files of ``directory``, sorted (see :func:`sql_file_entries`)."""
    return [entry.name for entry in sql_file_entries(directory)]


def load_file(directory: Path, name: str, dir_fd: int | None = None) -> Migration:
    """Read, name-check and parse the file ``name`` of ``directory`` (not its statements), or
    raise :class:`MigrationFileError` naming it. ``dir_fd``, the directory opened (see
    :func:`opened`), spares the system resolving the directory's path again for each file."""
    match = FILENAME_RE.fullmatch(name)
    if not (match and _real_time(match["timestamp"])):
        check_filename(directory / name)  # raises, saying what is wrong
    try:
        data = read_file(name, dir_fd) if dir_fd is not None else read_file(os.path.join(directory, name))
    except OSError as exc:
        raise MigrationFileError(directory / name, unreadable(directory / name, exc)) from None
    # Plain ASCII, as most files are, needs none of decode()'s care: a memchr or two.
    plain = data.isascii() and b"\0" not in data and (b"\r" not in data or b"\n" in data)
    text = data.decode("ascii") if plain else decode(directory / name, data)
    del data
    return parse_text(directory, name[:-4], text)


def load_or_error(directory: Path, name: str, dir_fd: int | None = None) -> Migration | MigrationFileError:
    """:func:`load_file`, with its error returned rather than raised."""
    try:
        return load_file(directory, name, dir_fd)
    except MigrationFileError as exc:
        return exc


@contextmanager
def opened(directory: Path) -> Iterator[int | None]:
    """A descriptor of ``directory`` to open its files by name (:func:`load_file`), or None
    where ``os.open`` takes none (Windows) or the directory cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY) if os.open in os.supports_dir_fd else None
    except OSError:
        fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def assemble(directory: Path, loaded: Iterable[Migration | MigrationFileError]) -> MigrationSet:
    """The set of a directory's files, loaded in file order: their errors, and a migration whose
    timestamp an earlier well-formed file already uses is one too."""
    found = MigrationSet(Path(directory))
    seen: dict[str, str] = {}
    for item in loaded:
        if isinstance(item, MigrationFileError):
            found.errors.append(item)
            continue
        clash = timestamp_clash(found.directory, item.id, seen)
        if clash is not None:
            found.errors.append(clash)
        else:
            found.migrations.append(item)
    found.migrations.sort(key=lambda migration: migration.id)
    return found


def timestamp_clash(directory: Path, migration_id: str, seen: dict[str, str]) -> MigrationFileError | None:
    """The error of a well-formed file whose timestamp an earlier one (in file order) already
    uses, or None after noting it in ``seen`` (timestamp -> id)."""
    stamp = migration_id[:14]
    other = seen.setdefault(stamp, migration_id)
    if other == migration_id:
        return None
    return MigrationFileError(directory / f"{migration_id}.sql", f"timestamp {stamp} is also used by {other}.sql")


def directory_error(directory: Path) -> MigrationSet | None:
    """The set holding only the error of a directory that cannot be read, or None."""
    problem = directory_problem(directory)
    if problem is None:
        return None
    return MigrationSet(Path(directory), errors=[MigrationFileError(directory, f"migrations directory {problem}")])


def load_directory(directory: Path) -> MigrationSet:
    """Read, check and parse every ``*.sql`` file of ``directory`` (subdirectories are ignored);
    the statements are left to :func:`statement_error`."""
    directory = Path(directory)
    unreadable = directory_error(directory)
    if unreadable is not None:
        return unreadable
    with opened(directory) as dir_fd:
        return assemble(directory, [load_or_error(directory, name, dir_fd) for name in sql_file_names(directory)])


def load_one(directory: Path, migration_id: str) -> MigrationSet:
    """The set of the one file of ``migration_id``, read by its name alone (no listing of the
    directory, so its timestamp is not compared with the others'): empty when there is no such
    file, or when ``migration_id`` could not name one (a history row of another tool)."""
    directory = Path(directory)
    unreadable = directory_error(directory)
    if unreadable is not None:
        return unreadable
    name = f"{migration_id}.sql"
    if not FILENAME_RE.fullmatch(name) or not os.path.isfile(os.path.join(directory, name)):
        return MigrationSet(directory)
    return assemble(directory, [load_or_error(directory, name)])
