"""SQLite: an ``flock`` beside the database file for the run, statements split by SQLite's own
``complete_statement``, the connection's PRAGMAs put back after a migration."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from time import monotonic, sleep
from typing import Any

from ..errors import LockTimeout
from ..files import Section
from ..statements import Statement, split_sqlite
from .base import Backend

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


class SQLiteBackend(Backend):
    """SQLite through Python's ``sqlite3``, one statement per call."""

    tells_transaction_state = True  # sqlite3's in_transaction asks SQLite itself
    utc_now_sql = "CURRENT_TIMESTAMP"  # SQLite's is UTC

    @contextmanager
    def lock(
        self, schema: str | None, table: str, timeout: float | None, on_wait: Callable[[], None]
    ) -> Iterator[None]:
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
                yield
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
