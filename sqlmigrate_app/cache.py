"""Tell whether a migration file changed without reading it, by its ``stat()`` signature.

Two users. The admin page keeps each directory's parsed files between the requests of a process
(:func:`load_cached`): a request lists the directory and stats its files, then reads only the
files that are new or whose signature changed; a file gone from the listing is gone from the
page. The system check keeps on disk which files it found well-formed (:class:`CleanRecord`), so
that ``manage.py check`` (every ``runserver`` reload, ``migrate``, ``test``) reads only the
files that are new or changed since. The commands read every file: a deploy decides on the
checksums.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from . import __version__, files, statements
from .errors import MigrationFileError
from .files import Migration, MigrationSet, assemble, directory_error, load_or_error, opened, sql_file_entries

# How long after a file changed its signature is trusted. A file system stamps times at a coarse
# tick (a jiffy on Linux), so a file written, read and written again within one tick, at the same
# size, keeps its signature; one that changed this recently is read again each time, as git
# does with its "racy" index entries.
RACY_NS = 2_000_000_000


def signatures(directory: Path) -> dict[str, str | None]:
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
    listed: dict[str, str | None] = {}
    for entry in sql_file_entries(directory):
        try:
            st = entry.stat()
        except OSError:  # gone since the listing: load_or_error will say so
            listed[entry.name] = None
            continue
        recent = max(st.st_mtime_ns, st.st_ctime_ns) > trusted_before
        listed[entry.name] = None if recent else f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"
    return listed


class FileCache:
    """The parsed files of one directory, each kept with the signature it had when it was read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # The last listing, what was read under it, and their set: replaced in one assignment,
        # so a concurrent request sees the old state or the new one, never half of each.
        self._state: tuple[dict[str, str | None], dict[str, Migration | MigrationFileError], MigrationSet] | None
        self._state = None

    def load(self) -> MigrationSet:
        """What :func:`~.files.load_directory` would return, reading only the files whose
        signature is new; while nothing changes, the same set (callers must not modify it).

        Concurrent requests may both read a file; each keeps a signature with content read after
        it was taken, so the cache never holds a file's old content under its new signature."""
        unreadable = directory_error(self.directory)
        if unreadable is not None:
            return unreadable
        listed = signatures(self.directory)
        last_listed, last_items, last_found = self._state or ({}, {}, None)
        if last_found is not None and listed == last_listed and None not in listed.values():
            return last_found  # nothing changed since the last request
        items: dict[str, Migration | MigrationFileError] = {}
        with opened(self.directory) as dir_fd:
            for name, signature in listed.items():
                item = last_items.get(name) if signature is not None and last_listed.get(name) == signature else None
                items[name] = item if item is not None else load_or_error(self.directory, name, dir_fd)
        found = assemble(self.directory, items.values())
        self._state = (listed, items, found)
        return found


_caches: dict[Path, FileCache] = {}
_caches_lock = threading.Lock()


def load_cached(directory: Path) -> MigrationSet:
    """The files of ``directory`` through its process-wide :class:`FileCache`."""
    directory = Path(directory)
    with _caches_lock:
        cache = _caches.setdefault(directory, FileCache(directory))
    return cache.load()


class CleanRecord:
    """The files of one directory that the system check found well-formed, as
    ``"name size mtime ctime inode"`` keys, in ``$XDG_CACHE_HOME/sqlmigrate/`` (else
    ``~/.cache/sqlmigrate/``). Only clean files are recorded, so a malformed one is read, and
    reported, by every check. The record is a cache: when it cannot be read or written, every
    file is read, as without it; and it is keyed to this version of the parsing rules."""

    def __init__(self, directory: Path) -> None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = str(Path(directory).resolve())
        self.path = Path(base) / "sqlmigrate" / f"check-{hashlib.sha256(where.encode()).hexdigest()[:24]}.json"
        self.header = {"directory": where, "rules": _rules()}

    @staticmethod
    def key(name: str, signature: str) -> str:
        """The record's key of a file with this signature."""
        return f"{name} {signature}"

    def read(self) -> set[str]:
        """The keys recorded clean; none when there is no record, or one of other rules."""
        try:
            with open(self.path, encoding="utf-8") as record:
                data = json.load(record)
        except (OSError, ValueError):
            return set()
        if not isinstance(data, dict) or any(data.get(key) != value for key, value in self.header.items()):
            return set()
        clean = data.get("clean")
        return set(clean) if isinstance(clean, list) else set()

    def write(self, clean: set[str]) -> None:
        """Replace the record (atomically: a concurrent check reads the old one or this one);
        silently nothing where the cache directory cannot be written."""
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".check-", suffix=".tmp")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    json.dump({**self.header, "clean": sorted(clean)}, out)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise


def _rules() -> str:
    """What a clean record depends on besides the files: the version, and the modules holding the
    rules (so an edited rule, even within a version, invalidates the record)."""
    stamps = [__version__]
    for module in (files, statements):
        try:
            stamps.append(str(os.stat(module.__file__ or "").st_mtime_ns))
        except OSError:  # no source file to stat (a frozen or zipped install): the version alone
            stamps.append("-")
    return ":".join(stamps)
