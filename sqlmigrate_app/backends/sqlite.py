"""SQLite: an ``flock`` beside the database file for the run, statements split by SQLite's own
``complete_statement``, the connection's PRAGMAs put back after a migration; the history table
looked up in ``sqlite_master``, the schema read from it, throwaway databases in the system's
temporary directory."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from time import monotonic, sleep
from typing import Any

from django.db import transaction

from ..errors import LockTimeout, ThrowawayDatabaseError
from ..files import Section
from ..snapshot.sqlite import SQLiteReader
from ..statements import Statement, split_sqlite
from .base import Backend, HistoryName, HistoryRows, ThrowawayPlace

try:
    import fcntl
except ImportError:  # Windows: SQLite runners rely on the history-row claim alone
    fcntl = None  # type: ignore[assignment]


# The per-connection SQLite settings a migration may change and the next one must not inherit.
SESSION_PRAGMAS = (
    "foreign_keys",
    "legacy_alter_table",
    "recursive_triggers",
    "ignore_check_constraints",
    "defer_foreign_keys",
    "reverse_unordered_selects",
    "query_only",
    "automatic_index",
)
HISTORY_EXISTS = "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = %s"
# A throwaway database: a file in a directory of its own in the system's temporary one, beside
# the file that marks it.
THROWAWAY_PREFIX = "sqlmigrate-verify-"
THROWAWAY_MARKER_FILE = "throwaway.txt"
THROWAWAY_DATABASE_FILE = "verify.sqlite3"


class SQLiteBackend(Backend):
    """SQLite through Python's ``sqlite3``, one statement per call."""

    tells_transaction_state = True  # sqlite3's in_transaction asks SQLite itself
    utc_now_sql = "CURRENT_TIMESTAMP"  # SQLite's is UTC
    run_by_hand = "sqlite3 -bail DATABASE < FILE"

    def history_table_exists(self, table: str, qualified: str, tenant: str | None = None) -> bool:
        """Looked up in ``sqlite_master`` by its name (a database has no schemas to pin, and no
        tenant has a history: :meth:`schema_statements` refuses them first)."""
        with self.connection.cursor() as cursor:
            cursor.execute(HISTORY_EXISTS, [table])
            return cursor.fetchone() is not None

    def schema_reader(self, history_table: str) -> SQLiteReader:
        """``sqlite_master`` in one query, normalised."""
        return SQLiteReader(self.connection, history_table)

    def throwaway_place(self) -> TemporaryDirectory:
        """The system's temporary directory."""
        return TemporaryDirectory()

    @contextmanager
    def read_only(self) -> Iterator[None]:
        """A deferred transaction (its first read takes the shared lock every reader takes, and
        with it a view of one moment) with ``PRAGMA query_only`` on, then back as it was."""
        with transaction.atomic(using=self.connection.alias):
            cursor = self.raw_cursor()
            cursor.execute("PRAGMA query_only")
            previous = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA query_only = ON")
            try:
                yield
            finally:
                if not self.connection_lost():
                    self.raw_cursor().execute(f"PRAGMA query_only = {previous}")

    @contextmanager
    def lock(
        self,
        schema: str | None,
        table: str,
        timeout: float | None,
        on_wait: Callable[[], None],
        read: HistoryName | None = None,
    ) -> Iterator[HistoryRows | None]:
        """A whole-run lock like PostgreSQL's: ``flock`` on a file next to the database.

        SQLite's own locks only last one transaction, so without this a ``down`` could undo a
        migration between two of a concurrent ``up``'s. As a second line of defence each
        migration's transaction starts by writing its history row, so two runners that get
        past the lock (a database file on a filesystem without ``flock``) still never apply a
        migration twice. Writers that are not sqlmigrate are waited for through busy_timeout.
        """
        with self._run_lock(table, timeout, on_wait):
            cursor = self.raw_cursor()
            cursor.execute("PRAGMA busy_timeout")
            previous = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA busy_timeout = {int((timeout if timeout is not None else 3600) * 1000)}")
            try:
                yield None if read is None else self.read_history(read)
            finally:
                if not self.connection_lost():
                    self.raw_cursor().execute(f"PRAGMA busy_timeout = {int(previous)}")

    def lock_path(self, table: str) -> Path | None:
        """``<database>.<table>.lock``; None for an in-memory database (nothing to share)."""
        name = str(self.connection.settings_dict["NAME"] or "")
        if not name or name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
            return None
        return Path(f"{name}.{table}.lock")

    @contextmanager
    def _run_lock(self, table: str, timeout: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
        path = self.lock_path(table)
        if path is None or fcntl is None:
            yield
            return
        with open(path, "a") as handle:
            if not self._try_flock(handle):
                on_wait()
                deadline = None if timeout is None else monotonic() + timeout
                while not self._try_flock(handle):
                    if deadline is not None and monotonic() > deadline:
                        raise LockTimeout(f"another runner held the migration lock for more than {timeout:g} s")
                    sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _try_flock(handle: Any) -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def execute(self, cursor: Any, sql: str) -> None:
        """Run one statement; a NUL byte, which ``sqlite3`` refuses with a ValueError, is the
        driver's error like any other."""
        if "\0" in sql:
            raise sqlite3.ProgrammingError("the SQL holds a NUL byte, which SQLite does not take")
        cursor.execute(sql)

    def split(self, section: Section) -> list[Statement]:
        """Statements where ``sqlite3.complete_statement`` says they end (trigger bodies too)."""
        return split_sqlite(section.sql, section.line)

    def session_state(self) -> dict[str, Any]:
        """The connection's own PRAGMAs, which a ``no-transaction`` migration may change for
        good (``PRAGMA foreign_keys = OFF`` before rebuilding a table)."""
        cursor = self.raw_cursor()
        state = {}
        for pragma in SESSION_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
            state[pragma] = cursor.fetchone()[0]
        return state

    def script_session_start(self) -> list[str]:
        """Each PRAGMA as sqlmigrate's own connection has it (Django turns ``foreign_keys`` on;
        the sqlite3 shell leaves it off), so the script's migrations run as ``up``'s do."""
        return [f"PRAGMA {pragma} = {int(value)}" for pragma, value in self.session_state().items()]

    def script_session_reset(self) -> list[str]:
        """The PRAGMAs set back as :meth:`script_session_start` set them."""
        return self.script_session_start()

    def restore_session(self, state: dict[str, Any]) -> None:
        """Set each PRAGMA back to the value the run found."""
        cursor = self.raw_cursor()
        for pragma, value in state.items():
            cursor.execute(f"PRAGMA {pragma} = {int(value)}")


class TemporaryDirectory(ThrowawayPlace):
    """Throwaway SQLite databases: each a directory of the system's temporary one, holding the
    database file and the marker file."""

    def new_name(self, settings: dict[str, Any]) -> str:
        """The database file in a directory named with a random token (made by :meth:`create`)."""
        directory = Path(tempfile.gettempdir()) / f"{THROWAWAY_PREFIX}{secrets.token_hex(8)}"
        return str(directory / THROWAWAY_DATABASE_FILE)

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
            (directory / THROWAWAY_MARKER_FILE).write_text(marker + "\n", encoding="utf-8")
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

    def marked_unused(self, marker_start: str) -> list[tuple[str, str]]:
        """This user's throwaway directories (not a link to one) and their markers; whether a
        process has the file open cannot be told, so the marker's run decides alone."""
        found = []
        for directory in sorted(Path(tempfile.gettempdir()).glob(f"{THROWAWAY_PREFIX}*")):
            try:
                if directory.is_symlink() or directory.stat().st_uid != os.getuid():
                    continue
                marker = (directory / THROWAWAY_MARKER_FILE).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if marker.startswith(marker_start):
                found.append((str(directory / THROWAWAY_DATABASE_FILE), marker))
        return found

    def drop_unused(self, name: str) -> bool:
        """Remove its directory, as far as it can be."""
        directory = Path(name).parent
        shutil.rmtree(directory, ignore_errors=True)
        return not directory.exists()
