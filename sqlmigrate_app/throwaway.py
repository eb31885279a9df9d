"""A throwaway database like a configured one, for ``sqlmigrate_verify``: never the target.

Where it is made is the backend's (:meth:`~.backends.Backend.throwaway_place`): on PostgreSQL a
database of the same server, created and dropped the way Django creates test databases; on
SQLite a file in a temporary directory. Either way it is registered as a Django alias while it
exists.

It never leaks unnamed. It is created inside the cleanup's protection (Ctrl-C during ``CREATE
DATABASE`` still drops it), and every path that leaves it behind (``--keep``, a failed drop, a
second Ctrl-C) tells the reporter its name. It carries a marker saying which process of which
host made it (``COMMENT ON DATABASE``; a file in the SQLite directory), so a run killed outright
(SIGKILL) is cleaned up by the next: a marked database whose run is over and that nobody is
connected to is dropped. Nothing unmarked is ever dropped.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from django.db import connections

from .backends import ThrowawayPlace, backend_for
from .errors import ThrowawayDatabaseError

# What a throwaway database's marker says: which run made it. A kept one says something else, so
# that no later run takes it for a leftover.
MARKER = "sqlmigrate_verify throwaway database of pid {pid} on host {host}, created {created}"
KEPT = "kept by sqlmigrate_verify --keep (pid {pid} on host {host}, created {created})"
MARKER_RE = re.compile(
    r"sqlmigrate_verify throwaway database of pid (?P<pid>\d+) on host (?P<host>[\w.-]+), created (?P<created>\S+)",
    re.ASCII,
)
# A leftover of a run on another host, whose process cannot be looked at, is taken for over once
# it is this old and nobody is connected to it (seconds).
OTHER_HOST_STALE_AFTER = 3600.0


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


@contextmanager
def throwaway_database(
    using: str, keep: bool = False, reporter: ThrowawayReporter | None = None
) -> Iterator[Throwaway]:
    """A new, empty database on ``using``'s server, dropped afterwards unless ``keep``; the
    leftovers of earlier runs that are over are dropped first."""
    reporter = reporter or ThrowawayReporter()
    place = backend_for(connections[using]).throwaway_place()
    dropped = drop_leftovers(place)
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


def _clean_up(place: ThrowawayPlace, alias: str, name: str, keep: bool, reporter: ThrowawayReporter) -> None:
    """Forget the alias, then drop the database unless ``keep``. Runs whatever stopped the run,
    even an interrupt in the middle of ``CREATE DATABASE``."""
    try:
        if alias in connections.settings:
            connections[alias].close()
            del connections[alias]
            del connections.settings[alias]
    finally:
        _drop_or_keep(place, name, keep, reporter)


def _drop_or_keep(place: ThrowawayPlace, name: str, keep: bool, reporter: ThrowawayReporter) -> None:
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


def drop_leftovers(place: ThrowawayPlace) -> list[str]:
    """Drop the throwaway databases of ``place`` that carry the marker of a run that is over and
    that nobody uses; their names. Housekeeping: one that cannot be dropped stays."""
    dropped = []
    for name, marker in place.marked_unused(MARKER.partition("{")[0]):
        creator = Creator.of(marker)
        if creator is not None and creator.is_over() and place.drop_unused(name):
            dropped.append(name)
    return dropped
