"""A throwaway database like a configured one, for ``sqlmigrate_verify``: never the target.

On PostgreSQL it is created and dropped the way Django creates test databases: through a
connection to the ``postgres`` database, named after ``DATABASES[alias]["TEST"]["NAME"]`` (or
``test_`` + ``NAME``) with a suffix of its own, so a test suite running at the same time keeps
its database, with ``TEST``'s ``TEMPLATE``, ``CHARSET`` and ``COLLATION``. On SQLite it is a
file in a temporary directory. Either way it is registered as a Django alias while it exists.

It never leaks unnamed. It is created inside the cleanup's protection (Ctrl-C during ``CREATE
DATABASE`` still drops it), and every path that leaves it behind (``--keep``, a failed drop, a
second Ctrl-C) tells the reporter its name. It carries a marker saying which process of which
host made it (``COMMENT ON DATABASE``; a file in the SQLite directory), so a run killed outright
(SIGKILL) is cleaned up by the next: a marked database whose run is over and that nobody is
connected to is dropped. Nothing unmarked is ever dropped.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from .errors import ThrowawayDatabaseError
from .executor import describe

# PostgreSQL's limit on identifiers, in bytes.
MAX_NAME = 63
INSUFFICIENT_PRIVILEGE = "42501"
# What a throwaway database's marker says: which run made it. A kept one says something else, so
# that no later run takes it for a leftover.
MARKER = "sqlmigrate_verify throwaway database of pid {pid} on host {host}, created {created}"
KEPT = "kept by sqlmigrate_verify --keep (pid {pid} on host {host}, created {created})"
MARKER_RE = re.compile(
    r"sqlmigrate_verify throwaway database of pid (?P<pid>\d+) on host (?P<host>[\w.-]+), created (?P<created>\S+)",
    re.ASCII,
)
# The databases that may be leftovers: named and marked as verify's, this role's, nobody connected.
LEFTOVERS = (
    "SELECT d.datname, pg_catalog.shobj_description(d.oid, 'pg_database') FROM pg_catalog.pg_database d"
    " WHERE d.datname LIKE %s AND NOT d.datistemplate AND pg_catalog.pg_has_role(d.datdba, 'MEMBER')"
    " AND pg_catalog.shobj_description(d.oid, 'pg_database') LIKE %s"
    " AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid) ORDER BY d.datname"
)
# A leftover of a run on another host, whose process cannot be looked at, is taken for over once
# it is this old and nobody is connected to it (seconds).
OTHER_HOST_STALE_AFTER = 3600.0
# How long an interrupted CREATE DATABASE, terminated, may take to end (seconds).
CREATE_END_WAIT = 30.0
SQLITE_PREFIX = "sqlmigrate-verify-"
SQLITE_MARKER_FILE = "throwaway.txt"
SQLITE_DATABASE_FILE = "verify.sqlite3"


@dataclass(frozen=True, slots=True)
class Throwaway:
    """A throwaway database: the Django alias to reach it, and its name (a file's path on SQLite)."""

    alias: str
    name: str


class ThrowawayReporter:
    """What becomes of throwaway databases, told as it happens; the default ignores it. Only
    the command prints."""

    def dropped_leftovers(self, names: list[str]) -> None:
        """These throwaway databases, left by earlier runs that are over, were dropped."""

    def kept(self, name: str) -> None:
        """The throwaway database stays, as ``--keep`` asked."""

    def left_behind(self, name: str, why: str, marked: bool) -> None:
        """The throwaway database may still be there, because of ``why``; when ``marked``, a
        later run drops it."""


@dataclass(frozen=True, slots=True)
class Creator:
    """The run that made a throwaway database, as its marker says: a process of a host, when."""

    pid: int
    host: str
    created: datetime

    @classmethod
    def this_run(cls) -> Creator:
        """This process, now."""
        host = re.sub(r"[^\w.-]", "_", socket.gethostname(), flags=re.ASCII) or "unknown"
        return cls(os.getpid(), host, datetime.now(timezone.utc).replace(microsecond=0))

    def marker(self, keep: bool) -> str:
        """The text that marks the database (only digits, a cleaned host name and a date: a safe literal)."""
        template = KEPT if keep else MARKER
        return template.format(pid=self.pid, host=self.host, created=self.created.isoformat())

    @classmethod
    def of(cls, marker: str | None) -> Creator | None:
        """The run a marker names; None for any other text (a kept database, someone else's)."""
        match = MARKER_RE.fullmatch(marker or "")
        if match is None:
            return None
        try:
            created = datetime.fromisoformat(match["created"])
        except ValueError:
            return None
        if created.tzinfo is None:
            return None
        return cls(int(match["pid"]), match["host"], created)

    def is_over(self) -> bool:
        """Whether the run has ended: its process is gone from this host; for a run of another
        host, whose processes cannot be seen, once it is old (connections are looked at apart)."""
        if self.host != Creator.this_run().host:
            return (datetime.now(timezone.utc) - self.created).total_seconds() > OTHER_HOST_STALE_AFTER
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process: it runs
            return False
        return False


def throwaway_name(base: str, token: str) -> str:
    """``<base>_verify_<token>``, ``base`` cut so the whole fits PostgreSQL's 63 bytes."""
    suffix = f"_verify_{token}"
    cut = base.encode()[: MAX_NAME - len(suffix)].decode(errors="ignore")
    return cut + suffix


@contextmanager
def throwaway_database(
    using: str, keep: bool = False, reporter: ThrowawayReporter | None = None
) -> Iterator[Throwaway]:
    """A new, empty database on ``using``'s server, dropped afterwards unless ``keep``; the
    leftovers of earlier runs that are over are dropped first."""
    reporter = reporter or ThrowawayReporter()
    vendor = connections[using].vendor
    if vendor not in ("postgresql", "sqlite"):
        raise ThrowawayDatabaseError(f"database {using!r}: verify works on PostgreSQL and SQLite, not {vendor}")
    place: _Place = _PostgresServer(using) if vendor == "postgresql" else _TemporaryDirectory()
    dropped = place.drop_leftovers()
    if dropped:
        reporter.dropped_leftovers(dropped)
    settings = copy.deepcopy(connections.settings[using])
    settings["NAME"] = place.new_name(settings)
    alias = f"{using}__sqlmigrate_throwaway_{secrets.token_hex(3)}"
    try:
        place.create(settings["NAME"], Creator.this_run().marker(keep))
        connections.settings[alias] = settings
        yield Throwaway(alias, settings["NAME"])
    finally:
        _clean_up(place, alias, settings["NAME"], keep, reporter)


def _clean_up(place: _Place, alias: str, name: str, keep: bool, reporter: ThrowawayReporter) -> None:
    """Forget the alias, then drop the database unless ``keep``. Runs whatever stopped the run,
    even an interrupt in the middle of ``CREATE DATABASE``."""
    try:
        if alias in connections.settings:
            connections[alias].close()
            del connections[alias]
            del connections.settings[alias]
    finally:
        _drop_or_keep(place, name, keep, reporter)


def _drop_or_keep(place: _Place, name: str, keep: bool, reporter: ThrowawayReporter) -> None:
    """What this run may have made is dropped, or told, by name, to stay."""
    if not place.may_exist(name):
        return
    if keep:
        reporter.kept(name)
        return
    try:
        place.drop(name)
    except KeyboardInterrupt:
        reporter.left_behind(name, "interrupted while dropping it", place.marked(name))
        raise
    except ThrowawayDatabaseError as exc:
        reporter.left_behind(name, str(exc), place.marked(name))


class _Place:
    """Where throwaway databases are made: a PostgreSQL server, or the temporary directory. It
    remembers what it made: ``may_exist`` from the moment it asks for one (an interrupt may come
    before the answer) until it is refused, ``marked`` once the marker is written."""

    def __init__(self) -> None:
        self.asked: set[str] = set()
        self.made_and_marked: set[str] = set()

    def new_name(self, settings: dict[str, Any]) -> str:
        """A name no other run picks."""
        raise NotImplementedError

    def create(self, name: str, marker: str) -> None:
        """Make the database and mark it; ``ThrowawayDatabaseError`` when it cannot be."""
        raise NotImplementedError

    def drop(self, name: str) -> None:
        """Drop it (nothing when it is not there); ``ThrowawayDatabaseError`` when that fails."""
        raise NotImplementedError

    def drop_leftovers(self) -> list[str]:
        """Drop the marked throwaway databases of runs that are over; their names."""
        raise NotImplementedError

    def may_exist(self, name: str) -> bool:
        """Whether this run may have made ``name`` (so it must drop it)."""
        return name in self.asked

    def marked(self, name: str) -> bool:
        """Whether this run made and marked ``name`` (so a later run may drop it)."""
        return name in self.made_and_marked


class _PostgresServer(_Place):
    """Databases on the server of ``using``, reached through its ``postgres`` database."""

    def __init__(self, using: str) -> None:
        super().__init__()
        self.using = using
        self.connection = connections[using]
        self.creating: dict[str, int] = {}  # a CREATE DATABASE not known to have ended: its server process

    def new_name(self, settings: dict[str, Any]) -> str:
        """``TEST``'s ``NAME`` (or ``test_`` + ``NAME``) + ``_verify_`` + a random token."""
        base = settings.get("TEST", {}).get("NAME") or f"test_{settings['NAME']}"
        return throwaway_name(base, secrets.token_hex(4))

    def create(self, name: str, marker: str) -> None:
        """``CREATE DATABASE`` with the options of ``TEST``, as Django's test runner does it,
        then the marker (a database that cannot be marked is dropped by the cleanup)."""
        quoted = self.connection.ops.quote_name(name)
        with self.connection._nodb_cursor() as cursor:
            cursor.execute("SELECT pg_catalog.pg_backend_pid()")
            self.creating[name] = cursor.fetchone()[0]
            self.asked.add(name)
            try:
                cursor.execute(f"CREATE DATABASE {quoted}{self.connection.creation.sql_table_creation_suffix()}")
            except DatabaseError as exc:
                self.asked.discard(name)  # the server said no: nothing to drop (it may be someone else's)
                raise self._refusal(name, exc.__cause__ or exc) from exc
            del self.creating[name]
            try:
                cursor.execute(f"COMMENT ON DATABASE {quoted} IS '{marker}'")
            except DatabaseError as exc:
                raise ThrowawayDatabaseError(
                    f"database {self.using!r}: cannot mark the throwaway database {name} as verify's: "
                    f"{describe(exc.__cause__ or exc)}"
                ) from exc
        self.made_and_marked.add(name)

    def _refusal(self, name: str, cause: BaseException) -> ThrowawayDatabaseError:
        user = self.connection.settings_dict.get("USER") or "the connecting role"
        if getattr(cause, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
            return ThrowawayDatabaseError(
                f"database {self.using!r}: role {user} may not create the throwaway database {name} that verify "
                f"works in ({describe(cause)}); grant it CREATEDB (ALTER ROLE ... CREATEDB), or run verify against a "
                "server where it may (in CI, the one the tests use)"
            )
        return ThrowawayDatabaseError(
            f"database {self.using!r}: cannot create the throwaway database {name}: {describe(cause)}"
        )

    def drop(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS``, forcing out any session a migration left connected
        (``dblink``); after an interrupted ``CREATE DATABASE``, once that has ended."""
        quoted = self.connection.ops.quote_name(name)
        try:
            with self.connection._nodb_cursor() as cursor:
                if name in self.creating:
                    self._end_create(cursor, self.creating[name], quoted)
                cursor.execute("SELECT current_setting('server_version_num')::int")
                force = " WITH (FORCE)" if cursor.fetchone()[0] >= 130000 else ""
                cursor.execute(f"DROP DATABASE IF EXISTS {quoted}{force}")
        except DatabaseError as exc:
            raise ThrowawayDatabaseError(f"could not drop it: {describe(exc.__cause__ or exc)}") from exc

    def _end_create(self, cursor: Any, backend: int, quoted: str) -> None:
        """End the server process of an interrupted ``CREATE DATABASE`` and wait until it has gone.
        An interrupt stops the client's wait, not always the server's work: psycopg closes the
        connection when a second Ctrl-C cuts its cancel short, and the database may appear after
        a ``DROP DATABASE IF EXISTS`` that found nothing. Terminated mid-way it makes nothing."""
        running = "FROM pg_catalog.pg_stat_activity WHERE pid = %s AND query LIKE %s"
        params = [backend, f"CREATE DATABASE {quoted}%"]
        cursor.execute(f"SELECT pg_catalog.pg_terminate_backend(pid) {running}", params)
        deadline = time.monotonic() + CREATE_END_WAIT
        while True:
            cursor.execute(f"SELECT 1 {running}", params)
            if cursor.fetchone() is None:
                return
            if time.monotonic() > deadline:
                raise ThrowawayDatabaseError(f"could not drop it: its CREATE DATABASE (process {backend}) did not end")
            time.sleep(0.01)

    def drop_leftovers(self) -> list[str]:
        """Drop every database of this server named like a throwaway one that carries the marker
        of a run that is over, belongs to this role and has no session. A plain ``DROP
        DATABASE`` (never ``FORCE``): one that someone connects to meanwhile stays. Housekeeping:
        if the server cannot be asked, creating the new database says why."""
        dropped: list[str] = []
        with contextlib.suppress(DatabaseError), self.connection._nodb_cursor() as cursor:
            cursor.execute(LEFTOVERS, ["%\\_verify\\_%", MARKER.partition("{")[0] + "%"])
            for name, marker in cursor.fetchall():
                creator = Creator.of(marker)
                if creator is None or not creator.is_over():
                    continue
                try:
                    cursor.execute(f"DROP DATABASE {self.connection.ops.quote_name(name)}")
                except DatabaseError:
                    continue  # someone connected, or it cannot be dropped: not ours to force
                dropped.append(name)
        return dropped


class _TemporaryDirectory(_Place):
    """SQLite: a directory of the system's temporary one, holding the database file and the marker."""

    def new_name(self, settings: dict[str, Any]) -> str:
        """The database file in a directory named with a random token (made by :meth:`create`)."""
        directory = Path(tempfile.gettempdir()) / f"{SQLITE_PREFIX}{secrets.token_hex(8)}"
        return str(directory / SQLITE_DATABASE_FILE)

    def create(self, name: str, marker: str) -> None:
        """The directory and its marker file; SQLite makes the database file when it is opened."""
        directory = Path(name).parent
        self.asked.add(name)
        try:
            directory.mkdir(mode=0o700)
        except OSError as exc:
            self.asked.discard(name)
            raise ThrowawayDatabaseError(f"cannot create the throwaway directory {directory}: {exc}") from exc
        try:
            (directory / SQLITE_MARKER_FILE).write_text(marker + "\n", encoding="utf-8")
        except OSError as exc:
            raise ThrowawayDatabaseError(f"cannot mark the throwaway directory {directory} as verify's: {exc}") from exc
        self.made_and_marked.add(name)

    def drop(self, name: str) -> None:
        """Remove its directory."""
        try:
            shutil.rmtree(Path(name).parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ThrowawayDatabaseError(f"could not remove its directory: {exc}") from exc

    def drop_leftovers(self) -> list[str]:
        """Remove this user's marked directories of runs that are over; their database files."""
        dropped = []
        for directory in sorted(Path(tempfile.gettempdir()).glob(f"{SQLITE_PREFIX}*")):
            try:
                if directory.is_symlink() or directory.stat().st_uid != os.getuid():
                    continue
                creator = Creator.of((directory / SQLITE_MARKER_FILE).read_text(encoding="utf-8").strip())
            except (OSError, UnicodeDecodeError):
                continue
            if creator is None or not creator.is_over():
                continue
            shutil.rmtree(directory, ignore_errors=True)
            if not directory.exists():
                dropped.append(str(directory / SQLITE_DATABASE_FILE))
        return dropped
