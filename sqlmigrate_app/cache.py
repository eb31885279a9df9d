"""What a load of a directory keeps of its files, to spare reading them again: the two
:class:`~.directory.Reuse` hooks of :func:`~.directory.load_directory`, each knowing a file by
its ``stat()`` signature.

The admin page keeps each directory's parsed files between the requests of a process
(:func:`load_cached`): a request lists the directory and stats its files, then reads only the
files that are new or whose signature changed; a file gone from the listing is gone from the
page. The system check keeps on disk which files it found clean (:class:`CleanRecord`), so
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
from dataclasses import dataclass
from pathlib import Path

from . import files
from .directory import Loaded, MigrationSet, Reuse, Signatures, Vouched, load_directory


@dataclass(frozen=True)
class _Listing:
    """One load of a directory: its files' signatures, what each file with a signature to trust
    was read as, and the set."""

    signed: Signatures
    loaded: dict[str, Loaded | Vouched]
    found: MigrationSet


class FileCache(Reuse):
    """The parsed files of one directory, each kept with the signature it had when it was read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # The last load, replaced in one assignment, so a concurrent request sees the old one or
        # the new one, never half of each.
        self._last: _Listing | None = None

    def load(self) -> MigrationSet:
        """What :func:`~.directory.load_directory` would return, reading only the files whose
        signature is new; while nothing changes, the same set (callers must not modify it).

        Concurrent requests may both read a file; each keeps a signature with content read after
        it was taken, so the cache never holds a file's old content under its new signature."""
        return load_directory(self.directory, self)

    def unchanged(self, signed: Signatures) -> MigrationSet | None:
        """The last set, when every file is as it was then and none changed too recently."""
        last = self._last
        if last is not None and signed == last.signed and None not in signed.values():
            return last.found
        return None

    def reuse(self, name: str, signature: str) -> Loaded | Vouched | None:
        """The file as read under this signature, if it was."""
        last = self._last
        return last.loaded.get(name) if last is not None and last.signed.get(name) == signature else None

    def remember(self, signed: Signatures, loaded: dict[str, Loaded | Vouched], found: MigrationSet) -> None:
        """Keep every file, and the set, in place of the last load's: what is no longer listed
        goes. A file without a signature to trust is kept, but never reused."""
        self._last = _Listing(signed, loaded, found)


_caches: dict[Path, FileCache] = {}
_caches_lock = threading.Lock()


def load_cached(directory: Path) -> MigrationSet:
    """The files of ``directory`` through its process-wide :class:`FileCache`."""
    directory = Path(directory)
    with _caches_lock:
        cache = _caches.setdefault(directory, FileCache(directory))
    return cache.load()


class CleanRecord(Reuse):
    """The files of one directory that the system check found clean, as ``"name size mtime
    ctime inode"`` keys, in ``$XDG_CACHE_HOME/sqlmigrate/`` (else ``~/.cache/sqlmigrate/``).
    Only clean files are recorded, so a malformed one is read, and reported, by every check. The
    record is a cache: when it cannot be read or written, every file is read, as without it; and
    it holds for one version of the rules (:data:`~.files.RULES_VERSION`).

    As a :class:`~.directory.Reuse`, it vouches for the files it holds, which are not read; what
    is clean after this check is for :meth:`keep` to say, once their statements are checked."""

    def __init__(self, directory: Path) -> None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = str(Path(directory).resolve())
        self.path = Path(base) / "sqlmigrate" / f"check-{hashlib.sha256(where.encode()).hexdigest()[:24]}.json"
        self.header = {"directory": where, "rules": files.RULES_VERSION}
        self._was_clean: set[str] | None = None  # read when first needed
        self._signed: Signatures | None = None  # the listing of the load made with this record

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

    def reuse(self, name: str, signature: str) -> Vouched | None:
        """The file vouched for, unread, if it was recorded clean with this signature."""
        return Vouched(name[:-4]) if self.key(name, signature) in self._clean_before() else None

    def remember(self, signed: Signatures, loaded: dict[str, Loaded | Vouched], found: MigrationSet) -> None:
        """Note the signatures this load was made under, for :meth:`keep`."""
        self._signed = signed

    def keep(self, checked: MigrationSet) -> None:
        """Record the files found clean: every file of the load just made (with a signature to
        trust) that ``checked``, its set with the statements checked, holds no error of, and that
        does not name a Django migration (whether that exists can change while the file does not,
        so such a file is read by every check). Nothing without a load (a directory that cannot
        be read)."""
        if self._signed is None:
            return
        unclean = {error.path.name for error in checked.errors}
        every = [*checked.migrations, *checked.repeatables]
        unclean.update(f"{migration.id}.sql" for migration in every if migration.requires)
        clean = {self.key(name, sig) for name, sig in self._signed.items() if sig is not None and name not in unclean}
        if clean != self._clean_before():
            self.write(clean)

    def _clean_before(self) -> set[str]:
        """The keys recorded clean before this check, read once."""
        if self._was_clean is None:
            self._was_clean = self.read()
        return self._was_clean
