"""Files and history together: each migration's state, and what is wrong with them.

Pure functions of what :mod:`.directory` read and what :mod:`.history` holds; the rules here (when
a migration is modified, missing or out of order) are the only copies of those rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .directory import MigrationSet
from .errors import (
    HistoryTableError,
    MissingMigration,
    ModifiedMigration,
    OutOfOrderMigration,
    ProblemKind,
    SqlMigrateError,
)
from .files import Migration, is_repeatable
from .history import AppliedMigration, repeatable_rows


class State(str, Enum):
    """Where a migration stands: its file and its history row agree, or how they do not."""

    APPLIED = "applied"
    PENDING = "pending"
    MODIFIED = "modified"  # applied, and its file changed since
    MISSING = "missing"  # applied, and its file is gone
    # A repeatable migration's (``R__<name>.sql``), which ``up`` runs: never run, or changed
    # since it last ran. Applied and missing are as a versioned one's.
    NEW = "new"
    CHANGED = "changed"

    @property
    def runs(self) -> bool:
        """Whether ``up`` would run it: pending, or a repeatable new or changed."""
        return self in (State.PENDING, State.NEW, State.CHANGED)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """One migration known from its file, its history row, or both; ``executed_at`` in UTC."""

    id: str
    name: str
    state: State
    executed_at: datetime | None
    checksum: str
    stored_checksum: str | None
    migration: Migration | None

    def as_dict(self) -> dict[str, Any]:
        """The ``sqlmigrate_status --json`` object."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state.value,
            "executed_at": self.executed_at.isoformat(timespec="seconds") if self.executed_at else None,
            "checksum": self.checksum,
            "stored_checksum": self.stored_checksum,
            "file": str(self.migration.path) if self.migration else None,
            "reversible": self.migration.reversible if self.migration else None,
            "repeatable": is_repeatable(self.id),
        }


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing ``validate`` found wrong."""

    kind: ProblemKind
    message: str

    @classmethod
    def of(cls, error: SqlMigrateError) -> Problem:
        """The problem an error describes (it must have a kind)."""
        assert error.kind is not None, error
        return cls(error.kind, str(error))

    def as_dict(self) -> dict[str, str]:
        """The ``sqlmigrate_validate --json`` object."""
        return {"kind": self.kind.value, "message": self.message}


def state_of(migration: Migration | None, record: AppliedMigration | None) -> State:
    """The state of a migration from its file and its history row (one of them at least). A
    repeatable one is compared with the checksum of its last run, the one its row holds."""
    repeatable = is_repeatable((migration or record).id)  # type: ignore[union-attr]
    if migration is not None and record is not None:
        if migration.checksum == record.checksum:
            return State.APPLIED
        return State.CHANGED if repeatable else State.MODIFIED
    if migration is None:
        return State.MISSING
    return State.NEW if repeatable else State.PENDING


class StatusTable:
    """Every migration known from the files or the history, in id order, each one's row made
    only when asked for: the admin page counts, filters and searches 10,000 migrations and shows
    100, and 10,000 rows a request cost it a full run of Python's cycle collector."""

    def __init__(self, found: MigrationSet, applied: Mapping[str, AppliedMigration]) -> None:
        self.files = found.by_id()
        self.applied = applied
        if found.repeatables or repeatable_rows(applied):  # else no copy of 10,000 entries
            self.files = {**self.files, **{migration.id: migration for migration in found.repeatables}}
            self.applied = {**applied, **repeatable_rows(applied)}
        # The versioned ones in id order, then the repeatables by name ("R" sorts after digits).
        self.ids = sorted(self.files.keys() | self.applied.keys())

    def state(self, migration_id: str) -> State:
        """The state of one of :attr:`ids`."""
        return state_of(self.files.get(migration_id), self.applied.get(migration_id))

    def name(self, migration_id: str) -> str:
        """The display name of one of :attr:`ids`: its file's, else its history row's."""
        migration = self.files.get(migration_id)
        return migration.name if migration is not None else self.applied[migration_id].name

    def row(self, migration_id: str) -> MigrationStatus:
        """The status of one of :attr:`ids`."""
        migration, record = self.files.get(migration_id), self.applied.get(migration_id)
        known = migration or record
        assert known is not None
        return MigrationStatus(
            id=migration_id,
            name=known.name,
            state=state_of(migration, record),
            executed_at=record.executed_at if record else None,
            checksum=known.checksum,
            stored_checksum=record.checksum if record else None,
            migration=migration,
        )

    def rows(self) -> list[MigrationStatus]:
        """Every status, in id order."""
        return [self.row(migration_id) for migration_id in self.ids]


def statuses(found: MigrationSet, applied: Mapping[str, AppliedMigration]) -> list[MigrationStatus]:
    """Every migration known from the files or the history, in id order."""
    return StatusTable(found, applied).rows()


def out_of_order(pending: Iterable[str], applied: Iterable[str]) -> tuple[list[str], str | None]:
    """The pending ids older than the newest applied one (a branch merged late), and that one."""
    newest = max(applied, default=None)
    return [migration_id for migration_id in pending if newest and migration_id < newest], newest


def check_recorded(
    migration_id: str, found: MigrationSet, applied: Mapping[str, AppliedMigration], doing: str = ""
) -> Migration:
    """The file of an applied migration, or :class:`MissingMigration` / :class:`ModifiedMigration`
    when it is gone or changed since it ran. ``doing`` says what that stops."""
    migration = found.by_id().get(migration_id)
    if migration is None:
        raise MissingMigration(migration_id, found.directory, doing)
    recorded = applied[migration_id].checksum
    if migration.checksum != recorded:
        raise ModifiedMigration(migration, recorded, doing)
    return migration


def problems(found: MigrationSet, read_history: Callable[[], dict[str, AppliedMigration]]) -> list[Problem]:
    """Every problem of files and history (``validate``): bad files, modified and missing
    migrations, pending ones out of order, a history table of another shape.
    ``read_history()`` gives the history; it is only called once the files are read."""
    found_problems = [Problem.of(error) for error in found.errors]
    try:
        applied = read_history()
    except HistoryTableError as exc:
        return [*found_problems, Problem.of(exc)]
    unreadable = {error.path.name[:-4] for error in found.errors}
    table = StatusTable(found, applied)
    files = table.files
    for migration_id in table.ids:
        state = table.state(migration_id)
        if state == State.MODIFIED:
            found_problems.append(
                Problem.of(ModifiedMigration(files[migration_id], table.applied[migration_id].checksum))
            )
        elif state == State.MISSING and migration_id not in unreadable:
            found_problems.append(Problem.of(MissingMigration(migration_id, found.directory)))
    late, newest = out_of_order((m.id for m in found.migrations if m.id not in applied), applied)
    found_problems += [Problem.of(OutOfOrderMigration(files[migration_id], newest or "")) for migration_id in late]
    return found_problems


def not_up_to_date(rows: list[MigrationStatus]) -> set[ProblemKind]:
    """What keeps a database from being up to date (``status --check``): pending, out of order,
    modified, missing; a repeatable new or changed is pending."""
    pending = [row.id for row in rows if row.state == State.PENDING]
    versioned = (row.id for row in rows if row.stored_checksum is not None and not is_repeatable(row.id))
    late, _ = out_of_order(pending, versioned)
    kinds = {ProblemKind.OUT_OF_ORDER} if late else set()
    if len(late) < len(pending) or any(row.state in (State.NEW, State.CHANGED) for row in rows):
        kinds.add(ProblemKind.PENDING)
    kinds |= {ProblemKind(row.state.value) for row in rows if row.state in (State.MODIFIED, State.MISSING)}
    return kinds
