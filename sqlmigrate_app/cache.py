"""Tell whether a migration file changed without reading it, by its ``stat()`` signature.

The admin page keeps each directory's parsed files between the requests of a process
(:func:`load_cached`): a request lists the directory and stats its files, then reads only the
files that are new or whose signature changed; a file gone from the listing is gone from the
page. :mod:`.files` still reads every file in the commands, where a deploy decides on the
checksums.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .errors import MigrationFileError
from .files import Migration, MigrationSet, assemble, directory_error, load_or_error, sql_file_entries

# How long after a file changed its signature is trusted. A file system stamps times at a coarse
# tick (a jiffy on Linux), so a file written, read and written again within one tick, at the same
# size, keeps its signature; one that changed this recently is read again each time, as git
# does with its "racy" index entries.
RACY_NS = 2_000_000_000


# What ``stat()`` says of a file (its name is the key beside it): size and modification time,
# and the inode's change time and number, which an edit that keeps the size and puts the old
# modification time back (``touch -r``, ``rsync -t``, a rename over it) still changes. A plain
# tuple, not a NamedTuple: one is made per file on every request.
Signature = tuple[int, int, int, int]


def signatures(directory: Path) -> list[tuple[str, Signature | None]]:
    """Each ``*.sql`` file of ``directory`` in name order, with its signature, or None for a file
    changed too recently to trust one (see :data:`RACY_NS`). Taken before any file is read, so a
    file changed while it is read has a newer signature next time."""
    trusted_before = time.time_ns() - RACY_NS
    listed: list[tuple[str, Signature | None]] = []
    for entry in sql_file_entries(directory):
        try:
            st = entry.stat()
        except OSError:  # gone since the listing: load_or_error will say so
            listed.append((entry.name, None))
            continue
        signature = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        listed.append((entry.name, None if max(st.st_mtime_ns, st.st_ctime_ns) > trusted_before else signature))
    return listed


class FileCache:
    """The parsed files of one directory, each kept with the signature it had when it was read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, tuple[Signature, Migration | MigrationFileError]] = {}
        self._last: tuple[list[tuple[str, Signature | None]], MigrationSet] | None = None

    def load(self) -> MigrationSet:
        """What :func:`~.files.load_directory` would return, reading only the files whose
        signature is new; while nothing changes, the same set (callers must not modify it).

        Concurrent requests may both read a file; each keeps a signature with content read after
        it was taken, so the cache never holds a file's old content under its new signature."""
        unreadable = directory_error(self.directory)
        if unreadable is not None:
            return unreadable
        listed = signatures(self.directory)
        last = self._last
        if last is not None and last[0] == listed and None not in (signature for _, signature in listed):
            return last[1]  # nothing changed since the last request: its set as it was
        kept: dict[str, tuple[Signature, Migration | MigrationFileError]] = {}
        loaded: list[Migration | MigrationFileError] = []
        for name, signature in listed:
            cached = self._files.get(name)
            if signature is not None and cached is not None and cached[0] == signature:
                item = cached[1]
            else:
                item = load_or_error(self.directory, name)
            if signature is not None:
                kept[name] = (signature, item)
            loaded.append(item)
        found = assemble(self.directory, loaded)
        # One assignment each: a concurrent request sees the old value or the new one.
        self._files = kept
        self._last = (listed, found)
        return found


_caches: dict[Path, FileCache] = {}
_caches_lock = threading.Lock()


def load_cached(directory: Path) -> MigrationSet:
    """The files of ``directory`` through its process-wide :class:`FileCache`."""
    directory = Path(directory)
    with _caches_lock:
        cache = _caches.setdefault(directory, FileCache(directory))
    return cache.load()
