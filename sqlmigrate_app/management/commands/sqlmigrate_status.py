from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from collections import Counter
from typing import Any

from django.core.management.base import CommandError

from ...errors import ProblemKind, SqlMigrateError, plural, printable
from ...state import MigrationStatus, State, not_up_to_date
from ...tenants import STATE_ORDER, Target, TargetStatus, fleet_statuses
from ..base import EXIT_CODES, SqlMigrateCommand, can_print, exit_code, problem_codes_line
from ..fleet import NAMED, add_selection_arguments, fleet_targets, name

LINES_PER_WRITE = 1000
MARKS = {
    State.APPLIED: "✅ Executed",
    State.PENDING: "⏳ Pending ",
    State.MODIFIED: "⚠️  Modified",
    State.MISSING: "❌ Missing ",
    State.NEW: "🆕 New     ",
    State.CHANGED: "🔄 Changed ",
}
# For a console that cannot show the symbols (cp1252; ASCII only when asked for: LANG=C is UTF-8, PEP 538).
ASCII_MARKS = {
    State.APPLIED: "[x] Executed",
    State.PENDING: "[ ] Pending ",
    State.MODIFIED: "[!] Modified",
    State.MISSING: "[-] Missing ",
    State.NEW: "[+] New     ",
    State.CHANGED: "[~] Changed ",
}


class Command(SqlMigrateCommand):
    """``sqlmigrate_status``: every migration and its state."""

    help = (
        "List every SQL migration with its state: applied, pending, modified or missing. Of tenants (and several "
        "databases): each one's state, summed up."
    )
    several_databases = True
    exit_codes_help = problem_codes_line("up to date", [kind for kind in EXIT_CODES if kind != ProblemKind.LINT])

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print a JSON array instead of text.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit non-zero unless the database is up to date: 3 pending (a repeatable new or changed too), "
            "4 out of order, 5 modified, "
            "6 missing, 7 bad file, 8 history table (the highest wins).",
        )
        add_selection_arguments(parser)

    def run(self, **options: Any) -> None:
        """Print every migration, then with ``--check`` exit with what keeps it from being up to date."""
        targets = fleet_targets(options)
        if targets is not None:
            self.run_fleet(targets, options)
            return
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
        if kinds == {ProblemKind.PENDING}:
            pending = sum(1 for row in rows if row.state.runs)
            self.pending_only(f"{plural(pending, 'pending migration')}: run sqlmigrate_up")
        elif kinds:
            raise CommandError(f"migrations are not up to date ({_kinds(kinds)})", returncode=exit_code(kinds))

    def run_fleet(self, targets: list[Target], options: dict[str, Any]) -> None:
        """Each history's state, summed up (or ``--json``: every one); with ``--check``, exit with
        the worst of what keeps them from being up to date."""
        statuses = fleet_statuses(targets, options["directory"])
        if options["json"]:
            self.stdout.write(json.dumps([status.as_dict() for status in statuses], indent=2))
        else:
            print_fleet_status(self, statuses)
        behind = [status for status in statuses if status.state != "up to date"]
        if not (options["check"] and behind):
            return
        kinds = set().union(*(status.kinds for status in behind))
        if kinds == {ProblemKind.PENDING} and all(status.state == "behind" for status in behind):
            self.pending_only(f"{len(behind)} of {len(statuses)} behind: run sqlmigrate_up")
        states = sorted({status.state for status in behind}, key=STATE_ORDER.index)
        raise CommandError(
            f"{len(behind)} of {len(statuses)} not up to date ({', '.join(states)})",
            returncode=max(exit_code(kinds), 1),
        )

    def pending_only(self, message: str) -> None:
        """Nothing is wrong, migrations are merely waiting: one calm line, exit 3 (a
        ``CommandError`` when called from code, which is how ``call_command`` gives codes)."""
        if getattr(self, "_called_from_command_line", False):
            self.stderr.write(message)
            sys.exit(EXIT_CODES[ProblemKind.PENDING])
        raise CommandError(message, returncode=EXIT_CODES[ProblemKind.PENDING])

    def print_table(self, rows: list[MigrationStatus]) -> None:
        """One line per migration (mark, id, name, when it ran), then how many in each state."""
        if not rows:
            self.say("No migrations found.")
            return
        styles = {
            State.APPLIED: self.style.SUCCESS,
            State.PENDING: self.style.WARNING,
            State.MODIFIED: self.style.ERROR,
            State.MISSING: self.style.ERROR,
            State.NEW: self.style.WARNING,
            State.CHANGED: self.style.WARNING,
        }
        marks = MARKS if can_print(self.stdout, "".join(MARKS.values())) else ASCII_MARKS
        shown = {state: styles[state](marks[state]) for state in State}
        # A write per 1,000 lines: one per line (flushed) is slow at 10,000 migrations, one for
        # the whole table holds it all in memory.
        for start in range(0, len(rows), LINES_PER_WRITE):
            part = rows[start : start + LINES_PER_WRITE]
            self.say("\n".join(_line(row, shown[row.state]) for row in part), level=0)
        counts = Counter(row.state for row in rows)
        summary = [
            f"{counts[state]} {state}" for state in State if counts[state] or state in (State.APPLIED, State.PENDING)
        ]
        self.say(f"{plural(len(rows), 'migration')}: {', '.join(summary)}")


def _line(row: MigrationStatus, mark: str) -> str:
    """One migration's line. Its id and name may come from a history row another tool wrote:
    made printable, a newline in them cannot pass for a line of its own."""
    return f"{mark} | {printable(row.id)} | {printable(row.name)}{_notes(row)}"


def _notes(row: MigrationStatus) -> str:
    """`` (irreversible)`` and `` | 2024-12-01 10:00:00`` (when it ran), as they apply. The date
    by isoformat, not strftime, which takes longer (benchmarks/README.md)."""
    irreversible = (
        " (irreversible)" if row.migration and not row.migration.reversible and not row.migration.repeatable else ""
    )
    return f"{irreversible} | {row.executed_at.isoformat(' ', 'seconds')[:19]}" if row.executed_at else irreversible


def _kinds(kinds: set[ProblemKind]) -> str:
    """``modified, missing``: the kinds, in the order of their exit codes."""
    return ", ".join(kind.value.replace("_", "-") for kind in sorted(kinds, key=EXIT_CODES.__getitem__))


def print_fleet_status(command: SqlMigrateCommand, statuses: list[TargetStatus]) -> None:
    """A line per shared set; the tenants counted by state, and the first few of each state
    that is not up to date named (every one at ``-v 2``)."""
    databases = len({status.target.database for status in statuses})
    for status in statuses:
        if status.target.schema is None:
            command.say(f"{name(status.target)}: {status.state}{_detail(status, ', ')}", level=0)
    tenants = [status for status in statuses if status.target.schema is not None]
    if not tenants and any(status.target.schema is None for status in statuses):
        return
    found = Counter(status.state for status in tenants)
    states = ["up to date", *reversed(STATE_ORDER)]
    summary = ", ".join(f"{found[state]} {state.replace('_', ' ')}" for state in states if found[state])
    command.say(f"{plural(len(tenants), 'tenant')}: {summary or 'none'}.", level=0)
    shown = None if command.verbosity >= 2 else NAMED
    for state in STATE_ORDER:
        these = [status for status in tenants if status.state == state]
        if these:
            named = ", ".join(
                f"{name(status.target, databases)}{_detail(status, ' (', ')')}" for status in these[:shown]
            )
            more = f" and {len(these) - NAMED} more" if shown is not None and len(these) > NAMED else ""
            command.say(f"  {state.replace('_', ' ')}: {named}{more}", level=0)


def _detail(status: TargetStatus, before: str, after: str = "") -> str:
    """What keeps one history from being up to date, briefly."""
    if status.error is not None:
        return f"{before}{printable(str(status.error))}{after}"
    parts = [f"{len(status.pending)} pending"] if status.pending else []
    parts += [f"{kind} {', '.join(ids)}" for kind, ids in _listed(status) if ids]
    if not parts:
        return f"{before}{status.applied} applied{after}" if status.target.schema is None else ""
    return f"{before}{'; '.join(parts)}{after}"


def _listed(status: TargetStatus) -> list[tuple[str, tuple[str, ...]]]:
    return [("out of order:", status.out_of_order), ("modified:", status.modified), ("missing:", status.missing)]
