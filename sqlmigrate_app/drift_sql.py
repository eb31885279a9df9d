"""The script ``sqlmigrate_drift --sql`` prints: SQL that would bring a drifted database back to
the schema its applied migrations produce. sqlmigrate never runs it.

What each object needs, its database's schema reader says (:meth:`~.snapshot.Reader.fix`): a
``DROP`` of what was added by hand where no data is lost (never ``CASCADE``, so a drop that
something still needs fails, and the transaction with it), a function's definition or a column's
default put back on PostgreSQL; the rest is left to a human, named in comments with the lines
that differ.
"""

from __future__ import annotations

from django.db import connections

from . import conf, snapshot
from .backends import backend_for
from .drift import Drift
from .errors import plural, printable
from .snapshot import Change, ChangeKind
from .snapshot.model import DROP_ORDER


def fix_script(result: Drift) -> str:
    """The script for a comparison's differences (a header saying there is nothing to do when
    there are none)."""
    assert result.comparison is not None and result.live is not None and result.rebuilt is not None
    connection = connections[result.database]
    reader = snapshot.reader_for(connection, conf.table_name())
    live, rebuilt = result.live.named(), result.rebuilt.named()
    migrations = plural(len(result.applied), "applied migration")
    lines = [
        f"-- sqlmigrate_drift --sql: database {result.database!r} ({connection.display_name}) back to the schema "
        f"of its {migrations}."
    ]
    changes = _in_order(result.comparison.changes, live)
    if not changes:
        return "\n".join([*lines, "-- Nothing to do: it has that schema.", ""])
    statements: list[str] = []
    left: list[str] = []
    for change in changes:
        fix = reader.fix(live.get(change.object), rebuilt.get(change.object))
        statements += [f"{sql};" for sql in fix.sql]
        if fix.by_hand:
            left += _left_to_you(change, fix.by_hand)
    lines += [
        f"-- sqlmigrate never runs it: review it, then run it by hand ({backend_for(connection).run_by_hand}).",
        "-- It drops what was added by hand where no data is lost, never with CASCADE: a drop that something",
        "-- still needs fails, and the transaction with it. What it leaves to you is listed at the end, with the",
        "-- lines that differ (- the migrations', + the live database's).",
    ]
    if statements:
        lines += ["", "BEGIN;", *statements, "COMMIT;"]
    if left:
        lines += ["", "-- Left to you:", *left]
    return "\n".join(lines) + "\n"


def _left_to_you(change: Change, reasons: tuple[str, ...]) -> list[str]:
    """An object left to a human, as comments: what it is, why, and its lines. Text read from the
    live database is :func:`~.errors.printable`: a carriage return in a function body added by
    hand would end a ``--`` comment, and what follows would run."""
    return [
        f"-- {printable(change.object)}:",
        *(f"--   {printable(reason)}" for reason in reasons),
        *(f"--     {printable(line)}" for line in change.diff),
    ]


def _in_order(changes: tuple[Change, ...], live: dict[str, snapshot.SchemaObject]) -> list[Change]:
    """Changed and dropped objects first, in the snapshot's order; then those added by hand, the
    ones that may use another first (:data:`~.snapshot.model.DROP_ORDER`)."""

    def rank(change: Change) -> int:
        if change.change != ChangeKind.ADDED:
            return -1
        kind = live[change.object].kind
        return DROP_ORDER.index(kind) if kind in DROP_ORDER else len(DROP_ORDER)

    return sorted(changes, key=rank)
