"""A migrations directory: listing it, reading its files, and the one loop that loads them.

:func:`load_directory` lists the ``*.sql`` files, reads each one's bytes and hands them to
:mod:`.files` to parse, then checks what only the whole directory shows (two files with one
timestamp). Every command reads every file: a deploy decides on checksums. The admin page and
the system check plug a :class:`Reuse` into the same loop (:mod:`.cache`), which takes each
file's ``stat()`` signature first and stands in for the files it knows by theirs. Reads files,
never writes, never touches a database.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MigrationFileError, plural
from .files import FILENAME_RE, Migration, check_name, decode, is_repeatable, parse_text

# How long after a file changed its signature is trusted. A file system stamps times at a coarse
# tick (a jiffy on Linux), so a file written, read and written again within one tick, at the same
# size, keeps its signature; one that changed this recently is read again each time, as git
# does with its "racy" index entries.
RACY_NS = 2_000_000_000
# Most migrations fit one read of this size; a bigger one is read on in 1 MB pieces.
READ_SIZE = 1 << 16
# No newline translation on Windows; never waiting for a writer to a named pipe.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)

# Each ``*.sql`` file name with its signature (None: not to be trusted, or not taken).
Signatures = dict[str, str | None]
# What reading one file gives.
Loaded = Migration | MigrationFileError


@dataclass
class MigrationSet:
    """Every well-formed migration of a directory, in id order, and every problem found: the
    versioned ones in :attr:`migrations`, the repeatable ones (``R__<name>.sql``) apart, in
    :attr:`repeatables`, by name (the order they run in is :mod:`.repeatables`')."""

    directory: Path
    migrations: list[Migration] = field(default_factory=list)
    errors: list[MigrationFileError] = field(default_factory=list)
    repeatables: list[Migration] = field(default_factory=list)
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


@dataclass(frozen=True, slots=True)
class Vouched:
    """A file taken as clean without being read, on a :class:`Reuse`'s word (the system check's
    record): it counts for the timestamp rule, and is in neither list of the set."""

    id: str


class Reuse:
    """What a load takes instead of reading a file, by the file's ``stat()`` signature (see
    :func:`signatures`), and what it is told of each load. This one takes nothing and keeps
    nothing; :mod:`.cache` has the admin page's per-process cache and the system check's record.
    """

    def unchanged(self, signed: Signatures) -> MigrationSet | None:
        """The set to return as it is when the directory holds exactly these files with these
        signatures (nothing is read), or None."""
        return None

    def reuse(self, name: str, signature: str) -> Loaded | Vouched | None:
        """What stands for the file ``name`` while it has this signature, or None: read it."""
        return None

    def remember(self, signed: Signatures, loaded: dict[str, Loaded | Vouched], found: MigrationSet) -> None:
        """Told what a load found: each file, by name, as read or reused, under the signature it
        had before it was read (``signed``), and the set."""


READ_ALL = Reuse()


def directory_problem(directory: Path) -> str | None:
    """What is wrong with a migrations directory ("does not exist", ...), or None."""
    if directory.is_dir():
        return None
    return "is not a directory" if directory.exists() else "does not exist"


def directory_error(directory: Path) -> MigrationSet | None:
    """The set holding only the error of a directory that cannot be read, or None."""
    problem = directory_problem(directory)
    if problem is None:
        return None
    return MigrationSet(Path(directory), errors=[MigrationFileError(directory, f"migrations directory {problem}")])


def sql_file_entries(directory: Path) -> list[os.DirEntry[str]]:
    """The entries named ``*.sql`` of ``directory``, sorted by name (names sort faster than
    ``Path`` objects: benchmarks/README.md). Whatever else is there is ignored; one of these that
    is not a regular file (a directory, a named pipe, a broken link) is listed, to be reported
    when it is read."""
    with os.scandir(directory) as entries:
        found = [entry for entry in entries if entry.name.lower().endswith(".sql")]
    found.sort(key=lambda entry: entry.name)
    return found


def sql_file_names(directory: Path) -> list[str]:
    """The names of the ``*.sql`` files of ``directory``, sorted (see :func:`sql_file_entries`)."""
    return [entry.name for entry in sql_file_entries(directory)]


def signatures(directory: Path) -> Signatures:
    """Each ``*.sql`` file of ``directory``, in name order, with its signature, or None for a file
    changed too recently to trust one (see :data:`RACY_NS`). Taken before any file is read, so a
    file changed while it is read has a newer signature next time.

    A signature is what ``stat()`` says: size and modification time, and the inode's change time
    and number, which an edit that keeps the size and puts the old modification time back
    (``touch -r``, ``rsync -t``, a rename over it) still changes. It is a string, as is the
    dict's every key: 10,000 tuples a request, kept alive through the request, made Python's
    cycle collector run a full collection on every other request.
    """
    trusted_before = time.time_ns() - RACY_NS
    listed: Signatures = {}
    for entry in sql_file_entries(directory):
        try:
            st = entry.stat()
        except OSError:  # gone since the listing: reading it will say so
            listed[entry.name] = None
            continue
        recent = max(st.st_mtime_ns, st.st_ctime_ns) > trusted_before
        listed[entry.name] = None if recent else f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"
    return listed


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


def read_migration(directory: Path, name: str, dir_fd: int | None = None) -> Loaded:
    """The file ``name`` of ``directory`` name-checked, read and parsed (not its statements), or
    its error. ``dir_fd``, the directory opened (see :func:`opened`), spares the system resolving
    the directory's path again for each file. The bytes are let go once decoded."""
    try:
        migration_id = check_name(directory, name)
        try:
            data = read_file(name, dir_fd) if dir_fd is not None else read_file(os.path.join(directory, name))
        except OSError as exc:
            raise MigrationFileError(directory / name, unreadable(directory / name, exc)) from None
        text = decode(directory, name, data)
        del data
        return parse_text(directory, migration_id, text)
    except MigrationFileError as exc:
        return exc


@contextmanager
def opened(directory: Path) -> Iterator[int | None]:
    """A descriptor of ``directory`` to open its files by name (:func:`read_migration`), or None
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


def load_directory(directory: Path, reuse: Reuse | None = None) -> MigrationSet:
    """Read, check and parse every ``*.sql`` file of ``directory`` (subdirectories are ignored);
    the statements are left to :func:`~.statements.statement_error`. With ``reuse``, each
    file's signature is taken first, and a file ``reuse`` knows by it is not read; without, no
    file is even ``stat()``ed."""
    directory = Path(directory)
    unreadable = directory_error(directory)
    if unreadable is not None:
        return unreadable
    signed = signatures(directory) if reuse is not None else dict.fromkeys(sql_file_names(directory))
    reuse = reuse or READ_ALL
    same = reuse.unchanged(signed)
    if same is not None:
        return same
    with opened(directory) as dir_fd:  # what reuse has for a file with a signature to trust, else the file read
        loaded = {
            name: (signature is not None and reuse.reuse(name, signature)) or read_migration(directory, name, dir_fd)
            for name, signature in signed.items()
        }
    found = assemble(directory, loaded.values())
    reuse.remember(signed, loaded, found)
    return found


def assemble(directory: Path, loaded: Iterable[Loaded | Vouched]) -> MigrationSet:
    """The set of a directory's files, loaded in file order: their errors, and a migration whose
    timestamp an earlier well-formed file already uses is one too."""
    found = MigrationSet(Path(directory))
    seen: dict[str, str] = {}
    for item in loaded:
        if isinstance(item, MigrationFileError):
            found.errors.append(item)
            continue
        if is_repeatable(item.id):
            if isinstance(item, Migration):
                found.repeatables.append(item)
            continue
        clash = timestamp_clash(found.directory, item.id, seen)
        if clash is not None:
            found.errors.append(clash)
        elif isinstance(item, Migration):
            found.migrations.append(item)
    found.migrations.sort(key=lambda migration: migration.id)
    found.repeatables.sort(key=lambda migration: migration.id)
    return found


def timestamp_clash(directory: Path, migration_id: str, seen: dict[str, str]) -> MigrationFileError | None:
    """The error of a well-formed file whose timestamp an earlier one (in file order) already
    uses, or None after noting it in ``seen`` (timestamp -> id)."""
    stamp = migration_id[:14]
    other = seen.setdefault(stamp, migration_id)
    if other == migration_id:
        return None
    return MigrationFileError(directory / f"{migration_id}.sql", f"timestamp {stamp} is also used by {other}.sql")


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
    return assemble(directory, [read_migration(directory, name)])
