"""What a snapshot is made of, how it prints, and how two of them differ."""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ..errors import database_errors

# How objects are ordered: by kind in this order, then by name.
KINDS = (
    "schema",
    "extension",
    "type",
    "table",
    "view",
    "materialized view",
    "sequence",
    "function",
    "procedure",
    "aggregate",
    "event trigger",
    "index",  # SQLite's; PostgreSQL's are listed under their table
    "trigger",  # likewise
    "comment on",
)
RANK = {kind: rank for rank, kind in enumerate(KINDS)}
# The order ``sqlmigrate_drift --sql`` drops objects added by hand in: those that may use another first.
DROP_ORDER = (
    "trigger",
    "index",
    "event trigger",
    "comment on",
    "materialized view",
    "view",
    "aggregate",
    "procedure",
    "function",
    "type",
    "sequence",
    "foreign table",
    "partitioned table",
    "table",
    "extension",
    "schema",
)
RANK["partitioned table"] = RANK["foreign table"] = RANK["table"]  # tables of every sort, by name
INDENT = "    "


@dataclass(frozen=True, slots=True)
class SchemaObject:
    """One object: ``lines[0]`` is its header (kind, name and one-line details), the rest its parts."""

    kind: str
    name: str
    lines: tuple[str, ...]

    @property
    def key(self) -> str:
        """``table public.t``: what names the object in a diff."""
        return f"{self.kind} {self.name}"


class ChangeKind(str, Enum):
    """Whether an object is only in the later snapshot, only in the earlier one, or in both but different."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Change:
    """How one object differs between two snapshots, and its lines marked ``+``/``-``/`` `` (a
    changed object's long unchanged runs shortened)."""

    change: ChangeKind
    object: str
    diff: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {"change": self.change.value, "object": self.object, "diff": list(self.diff)}


@dataclass(frozen=True, slots=True)
class Fix:
    """What would bring one object of a live database back to its rebuild's (``sqlmigrate_drift
    --sql``): statements that lose no data (never a ``CASCADE``), and what is left to a human,
    each in words."""

    sql: tuple[str, ...] = ()
    by_hand: tuple[str, ...] = ()


ADDED_BY_HAND = "only in the live database: drop it by hand if it is not wanted (dropping it could lose data)"
DROPPED_BY_HAND = "only in the rebuild: create it by hand as the migrations do (the lines marked -)"
CHANGED_BY_HAND = "differs from the rebuild: alter it by hand to the lines marked -"


def by_hand(live: SchemaObject | None, wanted: SchemaObject | None) -> Fix:
    """An object left to a human: added, dropped or changed by hand."""
    if wanted is None:
        return Fix(by_hand=(ADDED_BY_HAND,))
    return Fix(by_hand=(DROPPED_BY_HAND if live is None else CHANGED_BY_HAND,))


class Snapshot:
    """The schema of a database at one moment, as sorted objects."""

    def __init__(self, objects: Iterable[SchemaObject]) -> None:
        self.objects = sorted(objects, key=lambda obj: (RANK[obj.kind], obj.name, obj.kind))
        self.by_key = {obj.key: obj.lines for obj in self.objects}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.by_key == other.by_key

    __hash__ = None  # type: ignore[assignment]

    def named(self) -> dict[str, SchemaObject]:
        """Every object by its :attr:`~SchemaObject.key`."""
        return {obj.key: obj for obj in self.objects}

    def text(self) -> str:
        """The whole description: each object's lines, a blank line between objects."""
        return "".join("\n".join(obj.lines) + "\n\n" for obj in self.objects)

    def changes(self, after: Snapshot) -> list[Change]:
        """What differs in ``after``, object by object: removed and changed ones in this
        snapshot's order, then added ones in ``after``'s."""
        found = []
        for key, lines in self.by_key.items():
            if key not in after.by_key:
                found.append(Change(ChangeKind.REMOVED, key, tuple("- " + line for line in lines)))
            elif after.by_key[key] != lines:
                found.append(Change(ChangeKind.CHANGED, key, tuple(line_diff(lines, after.by_key[key]))))
        found += [
            Change(ChangeKind.ADDED, key, tuple("+ " + line for line in lines))
            for key, lines in after.by_key.items()
            if key not in self.by_key
        ]
        return found


class Reader(ABC):
    """Takes snapshots of one database."""

    def __init__(self, connection: BaseDatabaseWrapper, history_table: str) -> None:
        self.connection = connection
        self.history_table = history_table

    def take(self) -> Snapshot:
        """The schema as it is now; a database error is one line naming the database."""
        with database_errors(self.connection, f"database {self.connection.alias!r}: reading its schema"):
            return self.read()

    @abstractmethod
    def read(self) -> Snapshot:
        """The schema as it is now, read from the catalog."""

    def fix(self, live: SchemaObject | None, wanted: SchemaObject | None) -> Fix:
        """What would turn ``live`` (None: not in the live database) into ``wanted`` (None: not
        in the rebuild), this reader knowing how it wrote their lines; here, all by hand."""
        return by_hand(live, wanted)


def line_diff(before: tuple[str, ...], after: tuple[str, ...], context: int = 2) -> Iterator[str]:
    """``before`` to ``after`` line by line, marked; the header always shown, and unchanged runs
    cut to ``context`` lines either side of a change."""
    ops = difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()
    for index, (tag, a1, a2, b1, b2) in enumerate(ops):
        if tag != "equal":
            yield from ("- " + line for line in before[a1:a2])
            yield from ("+ " + line for line in after[b1:b2])
            continue
        run = ["  " + line for line in before[a1:a2]]
        first, last = index == 0, index == len(ops) - 1
        if first and last:
            head, tail = run, []
        elif first:
            head, tail = run[:1], run[-context:]
        elif last:
            head, tail = run[:context], []
        else:
            head, tail = run[:context], run[-context:]
        if len(head) + len(tail) >= len(run):
            yield from run
        else:
            yield from head
            yield "  ..."
            yield from tail
