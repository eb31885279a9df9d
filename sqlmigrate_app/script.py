"""The SQL ``up --sql`` and ``down --sql`` print: what the runner would send, as a script a DBA
can read and run by hand (``psql -v ON_ERROR_STOP=1 -f``), in order, without sqlmigrate.

Each transactional migration is a ``BEGIN ... COMMIT`` block holding its timeouts, its SQL, the
guard that the SQL did not end the transaction (PostgreSQL) and its history row, as the runner
sends it; a ``no-transaction`` one is its statements one by one, its history row after the
last. The history table is named as the runner names it (with the
schema current when the script was made), and after a migration that may change session settings
the script puts them back, as the runner does. What psql would read differently from the server
(a ``:name`` variable reference) is made inert without changing what the server reads.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backends import Backend
from .errors import plural
from .executor import Side, changes_session, prelude
from .files import Migration, Section, Timeouts
from .history import HistoryTable

INERT_NOTE = "-- (a space after each ':' that psql would read as a variable; the server reads the same SQL)"


class Script:
    """Writes the scripts of one database's plans."""

    def __init__(
        self, backend: Backend, history: HistoryTable, timeouts: Timeouts, using: str, tenant: str | None = None
    ) -> None:
        self.backend = backend
        self.history = history
        self.timeouts = timeouts
        self.using = using
        self.tenant = tenant  # a tenant's script places each migration in its schema, as the runner does

    def up(self, plan: Sequence[Migration | Sequence[Side]], create_history: bool) -> str:
        """Apply ``plan``, each migration in its transaction, or each list of sides in one (see
        :meth:`~.executor.Executor.apply_together`); create the history table first if it does
        not exist yet."""
        count = sum(1 if isinstance(step, Migration) else len([s for s in step if s.history_sql]) for step in plan)
        parts = [self._header("sqlmigrate_up", count)]
        if create_history:
            parts.append(f"{self.history.create_sql()};\n")
        for step in plan:
            if not isinstance(step, Migration):
                parts.append(self._together(step))
                continue
            row = self.history.insert_sql(step.id, step.name, step.checksum)
            if step.repeatable:  # its row written afresh
                row = ";\n".join(self.history.replace_sql(step.id, step.name, step.checksum))
            parts.append(self._migration(step, step.up, row))
        return "\n".join(parts)

    def _together(self, sides: Sequence[Side]) -> str:
        """Sides in one transaction, as the runner sends them: each section, and after each
        applied one the guard and its history rows."""
        ids = ", ".join(side.migration.id for side in sides if side.history_sql)
        mark, guard = self.backend.guard(sides[-1].migration.checksum[:16]) or ("", "")
        lines = [f"-- {ids} (one transaction: what depends on them dropped first, then each made again)", "BEGIN;"]
        lines += [f"{mark};"] if mark else []
        for side in sides:
            ahead = prelude(self.backend, side.migration, self.timeouts, self.tenant, local=True)
            lines += [*(f"{sql};" for sql in ahead), self._terminated(side.migration, side.section)]
            records = [guard, *side.before_history, side.history_sql] if side.history_sql else []
            lines += [f"{sql};" for sql in records if sql]
        changed = any(changes_session(self.backend, s.migration, s.section, self.timeouts, self.tenant) for s in sides)
        resets = [f"{sql};" for sql in self.backend.script_session_reset()] if changed else []
        return "\n".join([*lines, "COMMIT;", *resets]) + "\n"

    def down(self, plan: list[Migration]) -> str:
        """Roll back ``plan``, newest first."""
        parts = [self._header("sqlmigrate_down", len(plan))]
        for migration in plan:
            parts.append(self._migration(migration, migration.down, self.history.delete_sql(migration.id)))
        return "\n".join(parts)

    def _header(self, command: str, count: int) -> str:
        database = self.backend.connection.display_name
        start = "".join(f"{sql};\n" for sql in self.backend.script_session_start())
        tenant = f"tenant schema {self.tenant!r} of " if self.tenant else ""
        return (
            f"-- {command} --sql: {plural(count, 'migration')} for {tenant}database {self.using!r} ({database}).\n"
            f"-- Run it in one session and stop at the first error ({self.backend.run_by_hand}).\n"
            "-- Unlike sqlmigrate it takes no lock: make sure no other runner works on this database.\n"
            + (f"-- The session's settings as sqlmigrate's own connection has them:\n{start}" if start else "")
        )

    def _migration(self, migration: Migration, section: Section, history_sql: str) -> str:
        body = self._terminated(migration, section)
        changed = changes_session(self.backend, migration, section, self.timeouts, self.tenant)
        resets = [f"{sql};" for sql in self.backend.script_session_reset()] if changed else []
        if migration.transactional:
            timeouts = prelude(self.backend, migration, self.timeouts, self.tenant, local=True)
            # The history row last, after the guard that the section did not end the transaction.
            mark, guard = self.backend.guard(migration.checksum[:16]) or ("", "")
            identity = self.backend.identity_statements(None) if changed else []  # a SET ROLE in it
            lines = [
                f"-- {migration.id}",
                "BEGIN;",
                *(f"{sql};" for sql in [*timeouts, mark] if sql),
                body,
                *(f"{sql};" for sql in [guard, *identity, history_sql] if sql),
                "COMMIT;",
                *resets,
            ]
        else:
            timeouts = prelude(self.backend, migration, self.timeouts, self.tenant, local=False)
            lines = [
                f"-- {migration.id} (no-transaction: each statement on its own, outside a transaction)",
                *(f"{sql};" for sql in timeouts),
                body,
                f"{history_sql};",
                *resets,
            ]
        return "\n".join(lines) + "\n"

    def _terminated(self, migration: Migration, section: Section) -> str:
        """The section as the client must read it (see :meth:`~.backends.Backend.script_sql`),
        ending in a semicolon on a line of its own when its last statement has none, so the
        script's next line is not read as part of that statement."""
        sql = section.sql.strip()
        first_line = section.line + section.sql[: len(section.sql) - len(section.sql.lstrip())].count("\n")
        statements = self.backend.split(section)
        sql = sql + "\n;" if statements and not statements[-1].sql.rstrip().endswith(";") else sql
        inert = self.backend.script_sql(sql, migration.path, first_line)
        return inert if inert == sql else f"{INERT_NOTE}\n{inert}"
