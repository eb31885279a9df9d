from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...errors import SqlMigrateError
from ...state import MigrationStatus, State, not_up_to_date
from ..base import EXIT_CODES, SqlMigrateCommand, can_print, exit_code

LINES_PER_WRITE = 1000
MARKS = {
    State.APPLIED: "✅ Executed",
    State.PENDING: "⏳ Pending ",
    State.MODIFIED: "⚠️  Modified",
    State.MISSING: "❌ Missing ",
}
# For a console that cannot show the symbols (cp1252, ASCII under LANG=C).
ASCII_MARKS = {
    State.APPLIED: "[x] Executed",
    State.PENDING: "[ ] Pending ",
    State.MODIFIED: "[!] Modified",
    State.MISSING: "[-] Missing ",
}


class Command(SqlMigrateCommand):
    """``sqlmigrate_status``: every migration and its state."""

    help = "List every SQL migration with its state: applied, pending, modified or missing."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print a JSON array instead of text.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit non-zero if anything is pending (3), out of order (4), modified (5) or missing (6).",
        )

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        try:
            rows = self.runner(options).status()
        except SqlMigrateError as exc:
            if not (options["check"] and exc.kind):
                raise
            raise CommandError(str(exc), returncode=EXIT_CODES[exc.kind]) from exc
        if options["json"]:
            self.stdout.write(json.dumps([row.as_dict() for row in rows], indent=2))
        else:
            self.print_table(rows)
        kinds = not_up_to_date(rows) if options["check"] else set()
        if kinds:
            counts = ", ".join(kind.value.replace("_", "-") for kind in sorted(kinds, key=EXIT_CODES.__getitem__))
            raise CommandError(f"migrations are not up to date ({counts})", returncode=exit_code(kinds))

    def print_table(self, rows: list[MigrationStatus]) -> None:
        """One line per migration: mark, id, name, when it ran."""
        if not rows:
            self.say("No migrations found.")
            return
        styles = {
            State.APPLIED: self.style.SUCCESS,
            State.PENDING: self.style.WARNING,
            State.MODIFIED: self.style.ERROR,
            State.MISSING: self.style.ERROR,
        }
        marks = MARKS if can_print(self.stdout, "".join(MARKS.values())) else ASCII_MARKS
        shown = {state: styles[state](marks[state]) for state in State}
        # A write per 1,000 lines: one per line (flushed) is slow at 10,000 migrations, one for
        # the whole table holds it all in memory.
        for start in range(0, len(rows), LINES_PER_WRITE):
            part = rows[start : start + LINES_PER_WRITE]
            self.say("\n".join(f"{shown[row.state]} | {row.id} | {row.name}{_when(row)}" for row in part), level=0)


def _when(row: MigrationStatus) -> str:
    """`` | 2024-12-01 10:00:00``, or nothing for a migration that has not run. isoformat, not
    strftime: a fifth of the time."""
    return f" | {row.executed_at.isoformat(' ', 'seconds')[:19]}" if row.executed_at else ""
