"""What ``up`` and ``down`` would run, in order, or why they must not run at all.

A plan is refused as a whole, before anything runs: an applied migration whose file is gone or
changed, a pending one out of order, an unknown ``--to``, a rollback count that cannot be, a
migration that cannot be rolled back.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import InvalidRollback, IrreversibleMigration, OutOfOrderMigration, UnknownMigration, plural
from .files import Migration, MigrationSet
from .history import AppliedMigration
from .state import check_recorded, out_of_order


def plan_up(
    found: MigrationSet, applied: Mapping[str, AppliedMigration], to: str | None, allow_out_of_order: bool
) -> list[Migration]:
    """The pending migrations to apply, oldest first, up to and including ``to``."""
    for migration_id in applied:
        check_recorded(migration_id, found, applied)
    if to is not None and to not in found.by_id():
        raise UnknownMigration(to, str(found.directory))
    plan = [m for m in found.migrations if m.id not in applied and (to is None or m.id <= to)]
    late, newest = out_of_order((m.id for m in plan), applied)
    if late and not allow_out_of_order:
        raise OutOfOrderMigration(next(m for m in plan if m.id == late[0]), newest or "")
    return plan


def plan_down(
    found: MigrationSet, applied: Mapping[str, AppliedMigration], steps: int | None, to: str | None
) -> list[Migration]:
    """The applied migrations to roll back, newest first: the last ``steps`` (default 1), or
    every one newer than ``to``."""
    newest_first = sorted(applied, reverse=True)
    if to is not None:
        if steps is not None:
            raise InvalidRollback("give either a number of migrations or --to, not both")
        if to not in found.by_id() and to not in applied:
            raise UnknownMigration(to, f"{found.directory} or in the history")
        targets = [migration_id for migration_id in newest_first if migration_id > to]
    else:
        targets = newest_first[: _rollback_count(steps, len(newest_first))]
    plan = []
    for migration_id in targets:
        migration = check_recorded(migration_id, found, applied, f"cannot roll back {migration_id}: ")
        if not migration.reversible:
            raise IrreversibleMigration(migration)
        plan.append(migration)
    return plan


def _rollback_count(steps: int | None, applied: int) -> int:
    """``steps`` (default 1) when that many migrations can be rolled back."""
    steps = 1 if steps is None else steps
    if steps < 1:
        raise InvalidRollback(f"cannot roll back {steps} migrations: give a number of at least 1")
    if steps > applied:
        have = {0: "none is", 1: "only 1 is"}.get(applied, f"only {applied} are")
        raise InvalidRollback(f"cannot roll back {plural(steps, 'migration')}: {have} applied")
    return steps
