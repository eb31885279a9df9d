"""Repeatable migrations (``R__<name>.sql``): the order they run in, which ones ``up`` runs, and
the managed dependents a change re-creates with it.

Each file's objects are read from its statements (``CREATE [OR REPLACE] VIEW v``, ``FUNCTION f``,
``TRIGGER t ... ON tbl``, ...) with the statement scanner, and every name it mentions outside
comments and quoted text: a file that mentions an object another file defines runs after it,
as does one that declares ``-- sqlmigrate: requires=R__other``. A cycle is refused naming two
of its files. When a repeatable changes, the applied ones that depend on it (directly or not)
are dropped, last first, before it runs, and run again after it, in its transaction: the user
writes ``CREATE OR REPLACE`` or ``DROP ...; CREATE ...`` for their own object only. Pure: no
database; what a generated ``DROP`` looks like, the backend says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import MigrationFileError
from .files import Migration
from .history import AppliedMigration
from .statements import _leading_words, split

# Kinds of object other SQL can use by name; a trigger or an index is used by nobody.
USED_KINDS = ("VIEW", "MATERIALIZED VIEW", "FUNCTION", "PROCEDURE", "AGGREGATE", "TYPE", "DOMAIN", "TABLE", "SEQUENCE")
# Kinds sqlmigrate writes a DROP for, when a dependent without a -- DOWN section is re-created.
DROPPED_KINDS = ("VIEW", "MATERIALIZED VIEW", "FUNCTION", "PROCEDURE", "AGGREGATE", "TRIGGER")
KINDS = (*USED_KINDS, "TRIGGER", "INDEX", "RULE")
SKIPPED_WORDS = {"OR", "REPLACE", "TEMP", "TEMPORARY", "RECURSIVE", "CONSTRAINT", "UNIQUE", "UNLOGGED"}
# Comments and plain strings, which name nothing (a $$ body does: a SQL function's uses count).
NOISE_RE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.DOTALL)
# Words of SQL a versioned migration and a repeatable both write without naming anything shared.
_SQL_WORDS = (
    "add all alter and as asc begin bigint by cascade case check column commit constraint create default delete "
    "desc distinct drop else end exists false from function if in index insert integer into is join key left "
    "not null numeric on or order primary public references rename replace select set table text then to "
    "trigger true type unique update using values varchar view when where with"
)
SQL_WORDS = frozenset(_SQL_WORDS.split())
NAME_RE = re.compile(r'"(?:[^"]|"")+"|[^\W\d][\w$]*')


@dataclass(frozen=True, slots=True)
class Definition:
    """One object a repeatable migration creates: its kind (``VIEW``), its name as written
    (``public.v``), and for a trigger the table it is on."""

    kind: str
    name: str
    on: str | None = None

    @property
    def key(self) -> str:
        """The name other SQL mentions it by: the last part, unquoted, lower-case."""
        return _key(self.name.rpartition(".")[2])


def _key(name: str) -> str:
    return name[1:-1].replace('""', '"').lower() if name.startswith('"') else name.lower()


def definitions(migration: Migration) -> list[Definition]:
    """The objects the UP section creates, in order."""
    found = []
    for statement in split(migration.up_sql, migration.up_line):
        if statement.sql[:6].upper() != "CREATE":  # a statement starts at its first token
            continue
        words = _leading_words(statement.sql, 0, len(statement.sql), 12)
        if "TRIGGER" in words:  # its table comes later: ON after the events
            words = _leading_words(statement.sql, 0, len(statement.sql), 40)
        definition = _definition(words)
        if definition is not None:
            found.append(definition)
    return found


def _definition(words: list[str]) -> Definition | None:
    """The object a ``CREATE`` statement's leading words create, or None."""
    if not words or words[0] != "CREATE":
        return None
    at = 1
    while at < len(words) and words[at] in SKIPPED_WORDS:
        at += 1
    kind = words[at] if at < len(words) else ""
    if kind == "MATERIALIZED" and words[at + 1 : at + 2] == ["VIEW"]:
        kind, at = "MATERIALIZED VIEW", at + 1
    if kind not in KINDS:
        return None
    at += 1
    if words[at : at + 3] == ["IF", "NOT", "EXISTS"]:
        at += 3
    name = words[at] if at < len(words) else ""
    if words[at + 1 : at + 2] == ["."] and at + 2 < len(words):
        name, at = f"{name}.{words[at + 2]}", at + 2
    if not NAME_RE.fullmatch(name.rpartition(".")[2]):
        return None
    on = words[words.index("ON", at) + 1] if kind == "TRIGGER" and "ON" in words[at:-1] else None
    return Definition(kind, name if '"' in name else name.lower(), on)


def _qualified(name: str, schema: str) -> str:
    """``schema.name``, lower-case and unquoted, as :data:`Catalog` names an object."""
    space, _, last = name.rpartition(".")
    return f"{_key(space) if space else schema.lower()}.{_key(last)}"


def mentioned(migration: Migration) -> set[str]:
    """Every name the file's UP section mentions outside comments and plain strings, as
    :attr:`Definition.key` writes one."""
    return {_key(name) for name in NAME_RE.findall(NOISE_RE.sub(" ", migration.up_sql))}


# What the catalog knows (see Backend.catalog_uses): the current schema, and (view, what it uses)
# pairs, schema-qualified.
Catalog = tuple[str, list[tuple[str, str]]]


class Ordering:
    """The repeatable migrations of a directory in an order that works, and what depends on
    what. Raises :class:`MigrationFileError` for a ``requires=R__x`` naming no file, or a cycle."""

    def __init__(self, repeatables: Sequence[Migration], catalog: Catalog | None = None) -> None:
        self.by_id = {migration.id: migration for migration in repeatables}
        self.defined = {migration.id: definitions(migration) for migration in repeatables}
        self.creators: dict[str, list[tuple[str, str]]] = {}  # key -> (id, name as written) of each that creates it
        for migration_id, objects in self.defined.items():
            for definition in objects:
                if definition.kind in USED_KINDS:
                    self.creators.setdefault(definition.key, []).append((migration_id, definition.name))
        self.after = {migration.id: self._after(migration) for migration in repeatables}
        if catalog is not None:
            self._add_catalog(*catalog)
        self.order = self._sorted()

    def keys(self) -> list[str]:
        """The names of every object a repeatable creates, as :attr:`Definition.key` writes them."""
        return sorted({definition.key for objects in self.defined.values() for definition in objects})

    def _add_catalog(self, schema: str, uses: list[tuple[str, str]]) -> None:
        """What the catalog knows besides the files: a view of one repeatable that uses an object
        of another (say through a name its own file also gives another object)."""
        owners = {
            _qualified(definition.name, schema): migration_id
            for migration_id, objects in self.defined.items()
            for definition in objects
        }
        for view, used in uses:
            mine, theirs = owners.get(view), owners.get(used)
            if mine is not None and theirs is not None and mine != theirs:
                self.after[mine].setdefault(theirs, f"uses {used} (the catalog says)")

    def _after(self, migration: Migration) -> dict[str, str]:
        """The repeatables ``migration`` runs after, each with why (for a cycle's message)."""
        why = {}
        for other in migration.after:
            if other not in self.by_id:
                raise MigrationFileError(migration.path, f"requires={other}: there is no {other}.sql in the directory")
            why[other] = "requires=" + other
        own = {definition.key for definition in self.defined[migration.id]}
        for key in sorted(mentioned(migration) & self.creators.keys() - own):
            for other, name in self.creators[key]:
                if other != migration.id and other not in why:
                    why[other] = f"uses {name}"
        return why

    def _sorted(self) -> list[Migration]:
        """Depth first, by name among equals; a cycle raises naming two of its files."""
        done: dict[str, bool] = {}  # id -> finished (False: on the current path)
        order: list[Migration] = []

        def visit(migration_id: str, path: list[str]) -> None:
            if done.get(migration_id) is False:
                self._cycle(path[path.index(migration_id) :])
            if migration_id in done:
                return
            done[migration_id] = False
            for other in sorted(self.after[migration_id]):
                visit(other, [*path, migration_id])
            done[migration_id] = True
            order.append(self.by_id[migration_id])

        for migration_id in sorted(self.by_id):
            visit(migration_id, [])
        return order

    def _cycle(self, cycle: list[str]) -> None:
        first, second = cycle[0], cycle[1] if len(cycle) > 1 else cycle[0]
        through = f" (through {', '.join(cycle[2:])})" if len(cycle) > 2 else ""
        message = (
            f"{first} and {second}.sql depend on each other{through}: {first} {self.after[first][second]}, "
            f"{cycle[-1]} {self.after[cycle[-1]][first]}; a cycle of repeatable migrations cannot run: "
            "move one object to the other file, or drop a requires="
        )
        raise MigrationFileError(self.by_id[first].path, message)

    def dependents(self, migration_id: str) -> list[str]:
        """The repeatables that depend on ``migration_id``, directly or not, in run order."""
        found = {migration_id}
        for migration in self.order:
            if found & self.after[migration.id].keys():
                found.add(migration.id)
        found.discard(migration_id)
        return [migration.id for migration in self.order if migration.id in found]

    def used_by(self, migration: Migration, applied: Mapping[str, AppliedMigration]) -> list[str]:
        """The applied repeatables a versioned migration with ``recreate-repeatables`` drops
        before it runs and runs again after it: each that mentions a name it mentions (its SQL
        words aside), and every one that depends on those, in run order."""
        names = mentioned(migration) - SQL_WORDS
        found: set[str] = set()
        for other in self.order:
            if other.id in applied and (mentioned(other) & names or found & self.after[other.id].keys()):
                found.add(other.id)
        return [other.id for other in self.order if other.id in found]

    def owner(self, name: str) -> Migration | None:
        """The repeatable that creates the object ``name`` (its last part, any case), if one does."""
        key = _key(name.rpartition(".")[2])
        for migration_id, objects in self.defined.items():
            if any(definition.key == key for definition in objects):
                return self.by_id[migration_id]
        return None


@dataclass(frozen=True, slots=True)
class Unit:
    """Repeatable migrations ``up`` runs in one transaction: a changed one and the managed
    ones that depend on it, in run order; ``dropped``, those of them applied before, which are
    dropped (last first) before the first runs."""

    migrations: tuple[Migration, ...]
    dropped: tuple[Migration, ...]


def plan_repeatables(ordering: Ordering, applied: Mapping[str, AppliedMigration]) -> list[Unit]:
    """What ``up`` runs after the versioned migrations: every repeatable new or changed since
    its last run (its row's checksum) and every one that depends on those; the ones connected
    by what they use in one unit (two changed views under one view: one transaction), in run
    order. Nothing is read but the history."""
    affected: set[str] = set()
    for m in ordering.order:  # what a repeatable depends on comes before it
        if m.id not in applied or applied[m.id].checksum != m.checksum or affected & ordering.after[m.id].keys():
            affected.add(m.id)
    group = {migration_id: migration_id for migration_id in affected}

    def root(migration_id: str) -> str:
        while group[migration_id] != migration_id:
            migration_id = group[migration_id]
        return migration_id

    for migration_id in affected:
        for other in ordering.after[migration_id].keys() & affected:
            group[root(migration_id)] = root(other)
    members: dict[str, list[str]] = {}
    for m in ordering.order:
        if m.id in affected:
            members.setdefault(root(m.id), []).append(m.id)
    return [_unit(ordering, ids, applied) for ids in members.values()]


def _unit(ordering: Ordering, ids: list[str], applied: Mapping[str, AppliedMigration]) -> Unit:
    """The unit of ``ids`` (in run order): the applied ones that depend on another of them
    dropped, the last first."""
    dropped = [i for i in reversed(ids) if i in applied and ordering.after[i].keys() & set(ids)]
    return Unit(tuple(ordering.by_id[i] for i in ids), tuple(ordering.by_id[i] for i in dropped))


def drop_sql(ordering: Ordering, migration: Migration, drop: Callable[[str, str, str | None], str]) -> tuple[str, int]:
    """What drops a dependent's objects before it is re-created, and the file line it starts on:
    its ``-- DOWN`` section when it has one, else a ``DROP ... IF EXISTS`` per object it
    creates (last first; never ``CASCADE``, which could take objects nobody manages)."""
    if migration.reversible:
        return migration.down_sql, migration.down_line
    drops = [drop(d.kind, d.name, d.on) for d in reversed(ordering.defined[migration.id]) if d.kind in DROPPED_KINDS]
    return "".join(f"{sql};\n" for sql in drops), 0
