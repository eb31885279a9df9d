"""A snapshot of many schemas taken apart: the objects of each tenant schema, and the rest.

One catalog read of a whole database holds every tenant schema's objects, each named as the
PostgreSQL reader writes it, its schema first (``tenant_0001.orders``, ``"tenant-2".orders``),
and references inside definitions qualified the same way (the reader reads with ``search_path``
set to ``pg_catalog`` alone). So a tenant's part of a snapshot, and a rebuild made in a schema of
another name, compare once that name is written as the tenant's (:func:`moved`): a thousand
tenants cost one read, not one per tenant.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from .model import SchemaObject, Snapshot

# A name as the PostgreSQL reader writes one (quote_ident), followed by the dot that qualifies.
QUALIFIED = re.compile(r'(?:^|(?<=[\s(,]))("(?:[^"]|"")*"|[^\s:."(,]+)\.')
# Objects of the database as a whole, never a schema's, whatever their header says.
DATABASE_WIDE = ("extension", "event trigger")


def unquoted(name: str) -> str:
    """A schema name as the catalog holds it: ``"tenant-2"`` is ``tenant-2``."""
    if len(name) > 1 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def schema_names(snapshot: Snapshot) -> dict[str, str]:
    """Each schema of ``snapshot`` as the catalog names it, to the name as its objects are
    qualified with (``tenant-2`` to ``"tenant-2"``)."""
    return {unquoted(obj.name): obj.name for obj in snapshot.objects if obj.kind == "schema"}


def owner(obj: SchemaObject, schemas: Collection[str]) -> str | None:
    """The schema of ``schemas`` (written as qualified names are) that ``obj`` belongs to, if
    any: its own name's first part, or for a comment the object commented on's."""
    if obj.kind in DATABASE_WIDE:
        return None
    if obj.kind == "schema":
        return obj.name if obj.name in schemas else None
    if obj.kind == "comment on":
        if obj.name.startswith("schema ") and obj.name[len("schema ") :] in schemas:
            return obj.name[len("schema ") :]
        return next((match[1] for match in QUALIFIED.finditer(obj.name) if match[1] in schemas), None)
    match = QUALIFIED.match(obj.name)
    return match[1] if match and match[1] in schemas else None


def split(snapshot: Snapshot, schemas: Collection[str]) -> tuple[list[SchemaObject], dict[str, list[SchemaObject]]]:
    """The objects of ``snapshot`` in none of ``schemas`` (qualified names), and those of each
    one; a schema's own ``schema`` object is left out of its part (both sides have it)."""
    rest: list[SchemaObject] = []
    parts: dict[str, list[SchemaObject]] = {schema: [] for schema in schemas}
    for obj in snapshot.objects:
        found = owner(obj, parts)
        if found is None:
            rest.append(obj)
        elif obj.kind != "schema":
            parts[found].append(obj)
    return rest, parts


def history_holders(snapshot: Snapshot, table: str) -> set[str]:
    """The schemas of ``snapshot`` (qualified names) with a history table ``table`` of their own:
    tenants' (the shared set's history table is left out of every snapshot)."""
    tables = {obj.name for obj in snapshot.objects if obj.kind == "table"}
    return {name for name in schema_names(snapshot).values() if {f"{name}.{table}", f'{name}."{table}"'} & tables}


def shared_part(snapshot: Snapshot, table: str) -> Snapshot:
    """``snapshot`` without the schemas that hold a history table ``table`` of their own (its
    tenants'): the shared set's part of a database."""
    rest, _ = split(snapshot, history_holders(snapshot, table))
    return Snapshot(rest)


def without(objects: Iterable[SchemaObject], schema: str, table: str) -> list[SchemaObject]:
    """``objects`` but the history table ``table`` of ``schema`` (a tenant's own, as the shared
    set's history table is left out of every snapshot)."""
    names = {f"{schema}.{table}", f'{schema}."{table}"'}
    return [obj for obj in objects if not (obj.name in names and obj.kind == "table")]


def moved(objects: Iterable[SchemaObject], source: str, target: str) -> Snapshot:
    """``objects`` of the schema ``source`` as they read in the schema ``target`` (both written as
    qualified names are): every whole-word mention of ``source`` written ``target``."""
    pattern = re.compile(r'(?<![\w$"])' + re.escape(source) + r'(?![\w$"])')

    def rename(text: str) -> str:
        return pattern.sub(lambda _: target, text)

    return Snapshot(
        SchemaObject(obj.kind, rename(obj.name), tuple(rename(line) for line in obj.lines)) for obj in objects
    )
