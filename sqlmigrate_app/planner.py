"""What ``up``, ``down``, ``redo`` and ``repair`` would do, in order, or why they must not run at all.

A plan is refused as a whole, before anything runs: an applied migration whose file is gone or
changed, a pending one out of order, an unknown ``--to``, a rollback count that cannot be, a
migration that cannot be rolled back.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from .directory import MigrationSet
from .errors import (
    InvalidRepair,
    InvalidRollback,
    IrreversibleMigration,
    MissingMigration,
    OutOfOrderMigration,
    UnknownMigration,
    plural,
)
from .files import Migration
from .history import AppliedMigration, repeatable_rows
from .repeatables import Ordering
from .state import State, check_recorded, out_of_order, statuses


def plan_up(
    found: MigrationSet, applied: Mapping[str, AppliedMigration], to: str | None, allow_out_of_order: bool
) -> list[Migration]:
    """The pending migrations to apply, oldest first, up to and including ``to``."""
    for migration_id in applied:
        check_recorded(migration_id, found, applied)
    if to is not None:
        to = resolve(to, found.by_id(), str(found.directory))
    plan = [m for m in found.migrations if m.id not in applied and (to is None or m.id <= to)]
    late, newest = out_of_order((m.id for m in plan), applied)
    if late and not allow_out_of_order:
        raise OutOfOrderMigration(next(m for m in plan if m.id == late[0]), newest or "")
    return plan


def plan_down(
    found: MigrationSet,
    applied: Mapping[str, AppliedMigration],
    steps: int | None = None,
    to: str | None = None,
    everything: bool = False,
) -> list[Migration]:
    """The applied migrations to roll back, newest first: the last ``steps`` (default 1), every
    one newer than ``to``, or ``everything`` (the applied repeatable ones first, the last to run
    first: their objects use the versioned ones'). Refused whole if any of them cannot be
    rolled back."""
    if sum((steps is not None, to is not None, everything)) > 1:
        raise InvalidRollback("give either a number of migrations or --to or --all, not several")
    newest_first = sorted(applied, reverse=True)
    if everything:
        versioned = [check_recorded(i, found, applied, f"cannot roll back {i}: ") for i in newest_first]
        return _reversible([*_repeatables_down(found, applied), *versioned])
    if to is not None:
        to = resolve(to, {**applied, **found.by_id()}, f"{found.directory} or in the history")
        targets = [migration_id for migration_id in newest_first if migration_id > to]
    else:
        targets = newest_first[: _rollback_count(steps, len(newest_first))]
    return _reversible([check_recorded(i, found, applied, f"cannot roll back {i}: ") for i in targets])


def _repeatables_down(found: MigrationSet, applied: Mapping[str, AppliedMigration]) -> list[Migration]:
    """The applied repeatable migrations, the last to run first; one whose file is gone is refused."""
    rows = repeatable_rows(applied)
    order = Ordering(found.repeatables).order
    known = {migration.id for migration in order}
    for migration_id in rows:
        if migration_id not in known:
            raise MissingMigration(migration_id, found.directory, f"cannot roll back {migration_id}: ")
    return [migration for migration in reversed(order) if migration.id in rows]


def plan_redo(found: MigrationSet, applied: Mapping[str, AppliedMigration], steps: int | None) -> list[Migration]:
    """The last ``steps`` applied migrations (default 1), newest first, to roll back and apply
    again. Unlike :func:`plan_down` a file edited since it ran is accepted: rolling it back with
    its current DOWN and applying its current UP is the edit-run-edit loop ``redo`` is for."""
    newest_first = sorted(applied, reverse=True)
    plan = []
    for migration_id in newest_first[: _rollback_count(steps, len(newest_first))]:
        migration = found.by_id().get(migration_id)
        if migration is None:
            raise MissingMigration(migration_id, found.directory, f"cannot redo {migration_id}: ")
        plan.append(migration)
    return _reversible(plan)


def _reversible(plan: list[Migration]) -> list[Migration]:
    """``plan``, or :class:`IrreversibleMigration` naming every migration of it with no DOWN."""
    irreversible = [migration for migration in plan if not migration.reversible]
    if irreversible:
        raise IrreversibleMigration(irreversible)
    return plan


def resolve(given: str, known: Mapping[str, object], where: str, option: str = "--to ") -> str:
    """The migration id a user meant: the id itself, its file name (``.sql``) or its bare
    14-digit timestamp; an unknown one is refused with the closest known id."""
    wanted = given.removesuffix(".sql")
    if wanted in known:
        return wanted
    stamp, name = _stamp_and_name(wanted)
    same_stamp = [migration_id for migration_id in known if stamp and _stamp_and_name(migration_id)[0] == stamp]
    if not name and len(same_stamp) == 1:
        return same_stamp[0]
    raise UnknownMigration(given, where, option, _closest(wanted, same_stamp, known))


def _stamp_and_name(migration_id: str) -> tuple[str, str]:
    """``("20240105000000", "add_email")``; ``("", migration_id)`` without a 14-digit timestamp."""
    stamp, _, name = migration_id.partition("_")
    return (stamp, name) if len(stamp) == 14 and stamp.isdigit() else ("", migration_id)


def _closest(wanted: str, same_stamp: list[str], known: Collection[str]) -> str | None:
    """The known id a mistyped ``wanted`` most likely means: the only one with its timestamp (the
    timestamp decides where ``--to`` cuts, so the suggestion rolls back what the user meant), else
    the only one with its name, else the nearest spelling among those with its timestamp, or all."""
    name = _stamp_and_name(wanted)[1]
    same_name = [migration_id for migration_id in known if name and _stamp_and_name(migration_id)[1] == name]
    if len(same_stamp) == 1 or (not same_stamp and len(same_name) == 1):
        return (same_stamp or same_name)[0]
    nearest = difflib.get_close_matches(wanted, same_stamp or list(known), n=1, cutoff=0.6)
    return nearest[0] if nearest else None


def _rollback_count(steps: int | None, applied: int) -> int:
    """``steps`` (default 1) when that many migrations can be rolled back."""
    steps = 1 if steps is None else steps
    if steps < 1:
        raise InvalidRollback(f"cannot roll back {steps} migrations: give a number of at least 1")
    if steps > applied:
        have = {0: "none is", 1: "only 1 is"}.get(applied, f"only {applied} are")
        raise InvalidRollback(f"cannot roll back {plural(steps, 'migration')}: {have} applied")
    return steps


@dataclass(frozen=True, slots=True)
class Repair:
    """One history row ``sqlmigrate_repair`` changes: a ``modified`` migration's recorded
    checksum replaced by its file's, or a ``missing`` migration's row deleted."""

    migration_id: str
    state: State
    recorded: str
    checksum: str | None  # the file's, for a modified migration

    @property
    def summary(self) -> str:
        """The change in one line: ``id: checksum 4b9bf56eb22b -> 800dc677e20f`` or ``id: history
        row deleted (its file is missing)``."""
        if self.checksum is None:
            return f"{self.migration_id}: history row deleted (its file is missing)"
        return f"{self.migration_id}: checksum {self.recorded[:12]} -> {self.checksum[:12]}"


def plan_repair(found: MigrationSet, applied: Mapping[str, AppliedMigration], ids: Sequence[str] = ()) -> list[Repair]:
    """The history rows that disagree with the files (modified and missing migrations), or only
    those of ``ids``, each of which must be one of them."""
    rows = {row.id: row for row in statuses(found, applied)}
    wanted = [resolve(given, rows, f"{found.directory} or in the history", option="") for given in ids]
    for migration_id in wanted:
        if rows[migration_id].state not in (State.MODIFIED, State.MISSING):
            raise InvalidRepair(
                f"{migration_id} is {rows[migration_id].state}: only modified and missing migrations are repaired"
            )
    chosen = [rows[migration_id] for migration_id in sorted(set(wanted))] if ids else list(rows.values())
    return [
        Repair(row.id, row.state, row.stored_checksum or "", row.checksum if row.state == State.MODIFIED else None)
        for row in chosen
        if row.state in (State.MODIFIED, State.MISSING)
    ]
