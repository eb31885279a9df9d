"""PostgreSQL: the catalog read with set-based queries in one transaction whose ``search_path`` is
``pg_catalog`` alone, so every name in a definition (``pg_get_indexdef``, ``pg_get_constraintdef``,
``pg_get_functiondef``, ``pg_get_viewdef``, defaults) comes schema-qualified whatever the
connection's own path.

A reader keeps what it read: the next snapshot re-reads only the relations with a catalog row
written since (its ``xmin`` is newer than the last read) or a part dropped, and those that
depend, in ``pg_depend``, on an object that changed (a renamed table, type, function or schema
appears in their text). The deparsing
functions are slow enough that re-reading a 1,000-table schema whole for each of the snapshots
``verify`` takes would dominate its run (benchmarks/README.md has the figures).
Schemas, extensions, types, functions, event triggers and comments are few and read each time.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .model import CHANGED_BY_HAND, INDENT, Fix, Reader, SchemaObject, Snapshot, by_hand

Rows = list[tuple[Any, ...]]

USER_SCHEMA = (
    "{n}.nspname <> 'information_schema' AND {n}.nspname !~ '^pg_(catalog$|toast|temp_)'"
    " AND NOT EXISTS (SELECT FROM pg_depend x WHERE x.classid = 'pg_namespace'::regclass"
    " AND x.objid = {n}.oid AND x.deptype = 'e')"
)


def _user_schema(alias: str) -> str:
    return USER_SCHEMA.format(n=alias)


def _not_extension_member(catalog: str, oid: str) -> str:
    return (
        f"NOT EXISTS (SELECT FROM pg_depend x WHERE x.classid = '{catalog}'::regclass"
        f" AND x.objid = {oid} AND x.deptype = 'e')"
    )


# The history table's oid (in the schema the runner names it with), pg_class's, and the first xid
# not started yet: every catalog row written after this read carries that xid or a later one.
START = (
    "SELECT COALESCE((SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
    " ON n.oid = c.relnamespace WHERE n.nspname = pg_catalog.current_schema() AND c.relname = %(table)s), 0),"
    " 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid,"
    " (pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::bigint %% 4294967296)::text;\n"
    "SET LOCAL search_path = pg_catalog"
)

# Relations: tables, views, materialized views, composite types, sequences; the history table left out.
RELATIONS = (
    "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    f" WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'c', 'S') AND c.oid <> %(history)s AND {_user_schema('n')}"
    f" AND {_not_extension_member('pg_class', 'c.oid')}"
)

# Each relation now, with how many of its parts that can be dropped on their own there are:
# indexes, constraints, triggers, policies, rules, statistics, defaults, parents. A part added or
# changed is a row written since the last read (WRITTEN); a part dropped, one fewer here.
INVENTORY = (
    f"WITH rels AS ({RELATIONS}), parts (rel) AS ("
    + " UNION ALL ".join(
        f"SELECT {column} FROM {catalog} WHERE {column} >= 16384"
        for catalog, column in (
            ("pg_index", "indrelid"),
            ("pg_constraint", "conrelid"),
            ("pg_trigger", "tgrelid"),
            ("pg_policy", "polrelid"),
            ("pg_rewrite", "ev_class"),
            ("pg_statistic_ext", "stxrelid"),
            ("pg_attrdef", "adrelid"),
            ("pg_inherits", "inhrelid"),
        )
    )
    + "), counted AS (SELECT rel, count(*) AS n FROM parts GROUP BY rel)"
    " SELECT r.oid, r.relkind = 'S', COALESCE(c.n, 0) FROM rels r LEFT JOIN counted c ON c.rel = r.oid"
)
# The relations with a catalog row written since the last read's horizon %(horizon)s (an xid no
# older than every row written since: its age is at least theirs). Columns, defaults and parents
# are never dropped alone without a row of the relation written (attisdropped, atthasdef,
# attinhcount); the parts that are, INVENTORY counts.
WRITTEN = (
    "SELECT DISTINCT rel FROM ("
    + " UNION ALL ".join(
        f"SELECT {column} AS rel FROM {catalog} {alias} {join}WHERE {column} >= 16384"
        f" AND age({alias}.xmin) <= age(%(horizon)s::text::xid)"
        for catalog, alias, column, join in (
            ("pg_class", "c", "c.oid", ""),
            ("pg_class", "ic", "i.indrelid", "JOIN pg_index i ON i.indexrelid = ic.oid "),
            ("pg_attribute", "a", "a.attrelid", ""),
            ("pg_attrdef", "d", "d.adrelid", ""),
            ("pg_constraint", "k", "k.conrelid", ""),
            ("pg_index", "x", "x.indrelid", ""),
            ("pg_trigger", "t", "t.tgrelid", ""),
            ("pg_policy", "p", "p.polrelid", ""),
            ("pg_rewrite", "w", "w.ev_class", ""),
            ("pg_statistic_ext", "s", "s.stxrelid", ""),
            ("pg_sequence", "q", "q.seqrelid", ""),
            ("pg_inherits", "h", "h.inhrelid", ""),
        )
    )
    + ") written"
)

# Other objects whose names appear in a relation's text: a changed row may be a rename. An enum's
# labels count as its type's (a default shows the label).
NAMED = " UNION ALL ".join(
    [
        # Not a relation's row type or an array: those change with their relation or element.
        "SELECT 'pg_type'::regclass::oid, t.oid, t.xmin || ':' || COALESCE((SELECT string_agg(e.oid || '.' || e.xmin,"
        " ',' ORDER BY e.oid) FROM pg_enum e WHERE e.enumtypid = t.oid), '') FROM pg_type t WHERE t.oid >= 16384"
        " AND t.typrelid = 0 AND t.typcategory <> 'A'",
        *(
            f"SELECT '{catalog}'::regclass::oid, oid, xmin::text FROM {catalog} WHERE oid >= 16384"
            for catalog in (
                "pg_namespace",
                "pg_proc",
                "pg_collation",
                "pg_operator",
                "pg_opclass",
                "pg_opfamily",
                "pg_ts_config",
                "pg_ts_dict",
                "pg_foreign_server",
            )
        ),
    ]
)

# The relations that depend, directly or not, on one of the given objects through any of their
# parts: objects in a renamed schema are renamed too, and so on down.
DEPENDENTS = (
    "WITH RECURSIVE changed (classid, objid) AS ("
    " SELECT * FROM unnest(%(classes)s::oid[], %(objects)s::oid[])"
    " UNION SELECT d.classid, d.objid FROM pg_depend d JOIN changed c ON d.refclassid = c.classid"
    " AND d.refobjid = c.objid"
    ") SELECT DISTINCT CASE c.classid"
    " WHEN 'pg_class'::regclass THEN"
    "   COALESCE((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = c.objid), c.objid)"
    " WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef a WHERE a.oid = c.objid)"
    " WHEN 'pg_constraint'::regclass THEN (SELECT k.conrelid FROM pg_constraint k WHERE k.oid = c.objid)"
    " WHEN 'pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_trigger t WHERE t.oid = c.objid)"
    " WHEN 'pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_policy p WHERE p.oid = c.objid)"
    " WHEN 'pg_rewrite'::regclass THEN (SELECT w.ev_class FROM pg_rewrite w WHERE w.oid = c.objid)"
    " WHEN 'pg_statistic_ext'::regclass THEN (SELECT s.stxrelid FROM pg_statistic_ext s WHERE s.oid = c.objid)"
    " WHEN 'pg_type'::regclass THEN (SELECT t.typrelid FROM pg_type t WHERE t.oid = c.objid)"
    " END FROM changed c"
)

# The relations to read: %(rels)s, and the sequences %(sequences)s.
RELATION_QUERIES = {
    "relations": (
        "SELECT c.oid, c.relkind, format('%%I.%%I', n.nspname, c.relname), c.relpersistence,"
        " CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,"
        " CASE WHEN c.relispartition THEN (SELECT i.inhparent::regclass::text FROM pg_inherits i"
        "   WHERE i.inhrelid = c.oid) || ' ' || pg_get_expr(c.relpartbound, c.oid) END,"
        " CASE WHEN NOT c.relispartition THEN (SELECT string_agg(i.inhparent::regclass::text, ', '"
        "   ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid) END,"
        " array_to_string(c.reloptions, ', '), c.relrowsecurity, c.relforcerowsecurity, c.relreplident,"
        " CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END, c.relispopulated,"
        " (SELECT quote_ident(s.srvname) FROM pg_foreign_table f JOIN pg_foreign_server s ON s.oid = f.ftserver"
        "   WHERE f.ftrelid = c.oid)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = ANY(%(rels)s::oid[])"
    ),
    "columns": (
        "SELECT a.attrelid, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,"
        " CASE WHEN a.attcollation <> t.typcollation THEN format('%%I.%%I', cn.nspname, co.collname) END"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace"
        " WHERE a.attrelid = ANY(%(rels)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attrelid, a.attnum"
    ),
    "constraints": (
        "SELECT k.conrelid, quote_ident(k.conname), pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " WHERE k.conrelid = ANY(%(rels)s::oid[]) AND k.contype <> 't'"
    ),
    "indexes": (
        "SELECT i.indrelid, quote_ident(c.relname), pg_get_indexdef(i.indexrelid), i.indisvalid"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ANY(%(rels)s::oid[])"
    ),
    "triggers": (
        "SELECT t.tgrelid, quote_ident(t.tgname), pg_get_triggerdef(t.oid), t.tgenabled"
        " FROM pg_trigger t WHERE t.tgrelid = ANY(%(rels)s::oid[]) AND NOT t.tgisinternal"
    ),
    "rules": (
        "SELECT r.ev_class, quote_ident(r.rulename), pg_get_ruledef(r.oid) FROM pg_rewrite r"
        " WHERE r.ev_class = ANY(%(rels)s::oid[]) AND r.rulename <> '_RETURN'"
    ),
    "policies": (
        "SELECT p.polrelid, quote_ident(p.polname), p.polpermissive, p.polcmd,"
        " (SELECT string_agg(CASE WHEN r.oid = 0 THEN 'public' ELSE quote_ident(ro.rolname) END, ', '"
        "   ORDER BY 1) FROM unnest(p.polroles) AS r (oid) LEFT JOIN pg_roles ro ON ro.oid = r.oid),"
        " pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)"
        " FROM pg_policy p WHERE p.polrelid = ANY(%(rels)s::oid[])"
    ),
    "statistics": (
        "SELECT s.stxrelid, format('%%I.%%I', n.nspname, s.stxname), pg_get_statisticsobjdef(s.oid)"
        " FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace"
        " WHERE s.stxrelid = ANY(%(rels)s::oid[])"
    ),
    "sequences": (
        "SELECT c.oid, format('%%I.%%I', n.nspname, c.relname), format_type(s.seqtypid, NULL), s.seqstart,"
        " s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, c.relpersistence,"
        " (SELECT format('%%s.%%I', d.refobjid::regclass, a.attname) || CASE d.deptype WHEN 'i' THEN ' (identity)'"
        "   ELSE '' END FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        "   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass"
        "   AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0 LIMIT 1)"
        " FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = ANY(%(sequences)s::oid[])"
    ),
}

# Read whole each time.
OTHER_QUERIES = {
    "schemas": f"SELECT quote_ident(n.nspname) FROM pg_namespace n WHERE {_user_schema('n')}",
    "extensions": (
        "SELECT quote_ident(e.extname), e.extversion, quote_ident(n.nspname)"
        " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    ),
    "functions": (
        "SELECT p.prokind, format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),"
        " CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END,"
        " (SELECT concat_ws(', ', 'sfunc ' || a.aggtransfn::regprocedure, 'stype ' || format_type(a.aggtranstype,"
        "   NULL), 'finalfunc ' || nullif(a.aggfinalfn, 0)::regprocedure, 'combinefunc ' ||"
        "   nullif(a.aggcombinefn, 0)::regprocedure, 'initcond ' || quote_literal(a.agginitval),"
        "   'sortop ' || nullif(a.aggsortop, 0)::regoperator) FROM pg_aggregate a WHERE a.aggfnoid = p.oid)"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        f" WHERE {_user_schema('n')} AND {_not_extension_member('pg_proc', 'p.oid')}"
        # A range type's constructors come and go with it.
        " AND NOT EXISTS (SELECT FROM pg_depend x WHERE x.classid = 'pg_proc'::regclass AND x.objid = p.oid"
        " AND x.deptype = 'i')"
    ),
    "types": (
        "SELECT t.oid, t.typtype, format('%%I.%%I', n.nspname, t.typname),"
        " (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e"
        "   WHERE e.enumtypid = t.oid),"
        " CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END, t.typnotnull, t.typdefault,"
        " CASE WHEN t.typtype = 'd' AND t.typcollation <> b.typcollation THEN"
        "   (SELECT format('%%I.%%I', cn.nspname, co.collname) FROM pg_collation co"
        "   JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation) END,"
        " (SELECT concat_ws(', ', 'subtype ' || format_type(r.rngsubtype, NULL), 'subtype_diff ' ||"
        "   nullif(r.rngsubdiff, 0)::regproc, 'canonical ' || nullif(r.rngcanonical, 0)::regproc)"
        "   FROM pg_range r WHERE r.rngtypid = t.oid),"
        " CASE WHEN t.typtype = 'b' THEN concat_ws(', ', 'input ' || t.typinput::regproc, 'output ' ||"
        "   t.typoutput::regproc, 'length ' || t.typlen) END"
        " FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_type b ON b.oid = t.typbasetype"
        " WHERE t.typtype IN ('b', 'd', 'e', 'r', 'p') AND t.oid >= 16384 AND t.typelem = 0"
        f" AND {_user_schema('n')} AND {_not_extension_member('pg_type', 't.oid')}"
    ),
    "domain_constraints": (
        "SELECT k.contypid, quote_ident(k.conname), pg_get_constraintdef(k.oid) FROM pg_constraint k"
        " WHERE k.contypid >= 16384"
    ),
    "event_triggers": (
        "SELECT quote_ident(e.evtname), e.evtevent, e.evtfoid::regprocedure, e.evtenabled,"
        " (SELECT string_agg(quote_literal(tag), ', ' ORDER BY tag) FROM unnest(e.evttags) AS tag)"
        " FROM pg_event_trigger e"
    ),
    "comments": (
        "SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description FROM pg_description d"
        " WHERE d.objoid >= 16384 AND NOT (d.classoid = 'pg_class'::regclass AND d.objoid = %(history)s)"
        " AND NOT EXISTS (SELECT FROM pg_depend x WHERE x.classid = d.classoid AND x.objid = d.objoid"
        " AND x.deptype = 'e')"
    ),
}

RELKINDS = {"r": "table", "p": "partitioned table", "f": "foreign table", "v": "view", "m": "materialized view"}
IDENTITY = {"a": "generated always as identity", "d": "generated by default as identity"}
POLICY_COMMANDS = {"*": "all", "r": "select", "a": "insert", "w": "update", "d": "delete"}
TRIGGER_STATES = {"D": " (disabled)", "R": " (enabled replica)", "A": " (enabled always)"}
REPLICA_IDENTITY = {"n": "nothing", "f": "full", "i": "index"}

# sqlmigrate_drift --sql. A name as the queries above write it (quote_ident), and a table's part.
IDENTIFIER = r'(?:"(?:[^"]|"")*"|[^\s:."(]+)'
SCHEMA_RE = re.compile(IDENTIFIER)
PART_RE = re.compile(
    rf"{INDENT}(column|constraint|index|trigger|rule|policy|statistics) ({IDENTIFIER}(?:\.{IDENTIFIER})?)"
)
# Objects added by hand that a DROP removes losing no data; without CASCADE, one that something
# else still needs is refused by the server, not dropped with it.
DROPS = {
    "view": "VIEW",
    "materialized view": "MATERIALIZED VIEW",
    "function": "FUNCTION",
    "procedure": "PROCEDURE",
    "aggregate": "AGGREGATE",
    "sequence": "SEQUENCE",
    "schema": "SCHEMA",
    "event trigger": "EVENT TRIGGER",
}
# A table's parts added by hand, each dropped alone ({table} qualified, {schema} the table's).
PART_DROPS = {
    "index": "DROP INDEX {schema}.{name}",
    "constraint": "ALTER TABLE {table} DROP CONSTRAINT {name}",
    "trigger": "DROP TRIGGER {name} ON {table}",
    "policy": "DROP POLICY {name} ON {table}",
    "rule": "DROP RULE {name} ON {table}",
    "statistics": "DROP STATISTICS {name}",
}
TABLES = ("table", "partitioned table", "foreign table")


class PostgresReader(Reader):
    """Reads a PostgreSQL catalog; keeps each relation's object for the next snapshot, with what
    tells whether it changed."""

    def __init__(self, connection: BaseDatabaseWrapper, history_table: str) -> None:
        super().__init__(connection, history_table)
        self._horizon: str | None = None  # the last read's first xid not started yet
        self._parts: dict[int, int] = {}  # relation oid -> parts that can be dropped alone
        self._named: dict[tuple[int, int], str] = {}  # (catalog oid, object oid) -> xmin
        self._relations: dict[int, SchemaObject] = {}

    def read(self) -> Snapshot:
        """The schema as it is now, read in one transaction, in three or four round trips."""
        with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cursor:
            [[(history, pg_class, horizon)], _] = _batch(cursor, START, {"table": self.history_table})
            params: dict[str, Any] = {"history": history, "horizon": self._horizon}
            queries = [INVENTORY, NAMED, *([WRITTEN] if self._horizon else [])]
            inventory, named_rows, *written = _batch(cursor, ";\n".join(queries), params)
            parts = {oid: count for oid, _, count in inventory}
            named = {(catalog, oid): xmin for catalog, oid, xmin in named_rows}
            stale = self._stale(cursor, parts, named, {oid for (oid,) in (written or [[]])[0]}, pg_class)
            sequences = {oid for oid, is_sequence, _ in inventory if is_sequence}
            rows = _definitions(cursor, params, [oid for oid in stale if oid not in sequences], sequences & set(stale))
        fresh = {**_relations(rows), **_sequences(rows["sequences"])}
        self._relations = {oid: fresh.get(oid) or self._relations[oid] for oid in parts}
        self._horizon, self._parts, self._named = horizon, parts, named
        return Snapshot([*self._relations.values(), *_others(rows)])

    def fix(self, live: SchemaObject | None, wanted: SchemaObject | None) -> Fix:
        """Drop what was added by hand where no data is lost (a view, a function, a table's index
        or trigger, not a table or a column); put a function's or procedure's definition back
        (``pg_get_functiondef`` wrote a whole ``CREATE OR REPLACE``) and a column's default; the
        rest by hand."""
        if wanted is None and live is not None:
            return _drop(live)
        if wanted is not None and wanted.kind in ("function", "procedure"):
            return Fix(sql=("\n".join(line.removeprefix(INDENT) for line in wanted.lines[1:]),))
        if live is not None and wanted is not None and wanted.kind in TABLES:
            return _fix_table(live, wanted)
        return by_hand(live, wanted)

    def _stale(
        self, cursor: Any, parts: dict[int, int], named: dict[tuple[int, int], str], written: set[int], pg_class: int
    ) -> list[int]:
        """The relations to read again: all of them the first time; then the new ones, those with
        a row written or a part dropped since, and those that depend on a relation or a named
        object that changed or went (its name may appear in their text)."""
        if self._horizon is None:
            return sorted(parts)
        changed = {
            oid for oid in self._relations if oid not in parts or oid in written or parts[oid] != self._parts[oid]
        }
        stale = {oid for oid in parts if oid not in self._relations} | (changed & parts.keys())
        references = [(pg_class, oid) for oid in sorted(changed)]
        references += [key for key, xmin in self._named.items() if named.get(key) != xmin]
        if references:
            classes, objects = zip(*references, strict=True)
            [dependents] = _batch(cursor, DEPENDENTS, {"classes": list(classes), "objects": list(objects)})
            stale |= {oid for (oid,) in dependents if oid in parts}
        return sorted(stale)


def _definitions(cursor: Any, params: dict[str, Any], tables: list[int], sequences: set[int]) -> dict[str, Rows]:
    """The definitions of the relations ``tables`` and ``sequences`` and of every other object,
    each query's rows by its name, in one round trip."""
    params = {**params, "rels": tables, "sequences": sorted(sequences)}
    wanted = {name: sql for name, sql in RELATION_QUERIES.items() if (sequences if name == "sequences" else tables)}
    wanted |= OTHER_QUERIES
    read = dict(zip(wanted, _batch(cursor, ";\n".join(wanted.values()), params), strict=True))
    return {name: read.get(name, []) for name in {**RELATION_QUERIES, **OTHER_QUERIES}}


def _batch(cursor: Any, sql: str, params: dict[str, Any]) -> list[Rows]:
    """The rows of each statement of ``sql``, sent in one round trip (none for a statement that
    returns none)."""
    cursor.execute(sql, params)
    results = []
    while True:
        results.append(cursor.fetchall() if cursor.description else [])
        if not cursor.nextset():
            return results


def _indented(text: str | None) -> list[str]:
    """A multi-line definition as lines under its object, trailing spaces dropped (an editor's
    whitespace trimming must not make a schema file differ)."""
    if not text:
        return []
    return [(INDENT + line).rstrip() for line in text.strip("\n").split("\n")]


def _part_lines(parts: list[str]) -> Iterator[str]:
    """An object's parts, indented under it; a part's own further lines (a rule's) one step more."""
    for part in parts:
        first, *rest = part.rstrip().split("\n")
        yield INDENT + first
        yield from (INDENT * 2 + line.strip() for line in rest if line.strip())


def _grouped(rows: Rows, line: Callable[[tuple[Any, ...]], str]) -> dict[int, list[str]]:
    """The lines of ``rows`` by the object (first column) they belong to, each group sorted."""
    grouped: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        grouped[row[0]].append(line(row))
    return {oid: sorted(lines) for oid, lines in grouped.items()}


def _literal(text: str) -> str:
    """A comment or label as one line: an SQL literal with line breaks escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''").replace("\n", "\\n").replace("\r", "\\r") + "'"


def _column(row: tuple[Any, ...]) -> str:
    _, name, type_, notnull, default, identity, generated, collation = row
    column = f"column {name} {type_}"
    if collation:
        column += f" collate {collation}"
    if notnull:
        column += " not null"
    if generated == "s":
        column += f" generated always as ({default}) stored"
    elif default is not None:
        column += f" default {default}"
    if identity in IDENTITY:
        column += " " + IDENTITY[identity]
    return column


def _policy(row: tuple[Any, ...]) -> str:
    _, name, permissive, command, roles, using, check = row
    line = f"policy {name}: {'permissive' if permissive else 'restrictive'} for {POLICY_COMMANDS[command]} to {roles}"
    if using is not None:
        line += f" using ({using})"
    if check is not None:
        line += f" with check ({check})"
    return line


PARTS: dict[str, Callable[[tuple[Any, ...]], str]] = {
    "constraints": lambda r: f"constraint {r[1]}: {r[2]}",
    "indexes": lambda r: f"index {r[1]}: {r[2]}" + ("" if r[3] else " (invalid)"),
    "triggers": lambda r: f"trigger {r[1]}: {r[2]}{TRIGGER_STATES.get(r[3], '')}",
    "rules": lambda r: f"rule {r[1]}: {r[2]}",
    "policies": _policy,
    "statistics": lambda r: f"statistics {r[1]}: {r[2]}",
}


def _relations(rows: dict[str, Rows]) -> dict[int, SchemaObject]:
    """Tables, views and composite types with their columns, and under tables their constraints,
    indexes, triggers, rules, policies and extended statistics: columns in their order, the rest
    sorted by name."""
    parts: dict[int, list[str]] = defaultdict(list)
    for row in rows["columns"]:
        parts[row[0]].append(_column(row))
    for query, line in PARTS.items():
        for oid, lines in _grouped(rows[query], line).items():
            parts[oid] += lines
    objects = {}
    for oid, relkind, name, *details in rows["relations"]:
        if relkind == "c":
            objects[oid] = SchemaObject("type", name, (f"type {name}: composite", *_part_lines(parts[oid])))
            continue
        kind = RELKINDS[relkind]
        header = f"{kind} {name}"
        described = _relation_details(relkind, *details)
        if described:
            header += ": " + ", ".join(described)
        lines = [header, *_part_lines(parts[oid])]
        viewdef = details[8]
        if viewdef is not None:
            lines += [INDENT + "as", *_indented(viewdef)]
        objects[oid] = SchemaObject(kind, name, tuple(lines))
    return objects


def _relation_details(
    relkind: str,
    persistence: str,
    partition_key: str | None,
    partition_of: str | None,
    inherits: str | None,
    options: str | None,
    rls: bool,
    force_rls: bool,
    replident: str,
    viewdef: str | None,
    populated: bool,
    server: str | None,
) -> list[str]:
    details = [
        "unlogged" if persistence == "u" else "",
        f"partition by {partition_key}" if partition_key else "",
        f"partition of {partition_of}" if partition_of else "",
        f"inherits {inherits}" if inherits else "",
        f"server {server}" if server else "",
        f"with ({options})" if options else "",
        "row level security" if rls else "",
        "forced row level security" if force_rls else "",
        f"replica identity {REPLICA_IDENTITY[replident]}" if relkind in "rp" and replident != "d" else "",
        "not populated" if relkind == "m" and not populated else "",
    ]
    return [detail for detail in details if detail]


def _sequences(rows: Rows) -> dict[int, SchemaObject]:
    objects = {}
    for oid, name, type_, start, increment, minimum, maximum, cache, cycle, persistence, owner in rows:
        details = f"{type_} start {start} increment {increment} min {minimum} max {maximum} cache {cache}"
        details += " cycle" if cycle else ""
        details += " unlogged" if persistence == "u" else ""
        details += f", owned by {owner}" if owner else ""
        objects[oid] = SchemaObject("sequence", name, (f"sequence {name}: {details}",))
    return objects


def _others(rows: dict[str, Rows]) -> Iterator[SchemaObject]:
    """Everything but relations: schemas, extensions, functions, types, event triggers, comments."""
    for (name,) in rows["schemas"]:
        yield SchemaObject("schema", name, (f"schema {name}",))
    for name, version, schema in rows["extensions"]:
        yield SchemaObject("extension", name, (f"extension {name}: version {version}, schema {schema}",))
    yield from _functions(rows["functions"])
    yield from _types(rows["types"], _grouped(rows["domain_constraints"], PARTS["constraints"]))
    for name, event, function, enabled, tags in rows["event_triggers"]:
        details = f"on {event} execute {function}" + (f" when tag in ({tags})" if tags else "")
        details += TRIGGER_STATES.get(enabled, "")
        yield SchemaObject("event trigger", name, (f"event trigger {name}: {details}",))
    for what, text in rows["comments"]:
        yield SchemaObject("comment on", what, (f"comment on {what}: {_literal(text)}",))


def _functions(rows: Rows) -> Iterator[SchemaObject]:
    kinds = {"f": "function", "w": "function", "p": "procedure", "a": "aggregate"}
    for prokind, name, definition, aggregate in rows:
        kind = kinds[prokind]
        if kind == "aggregate":
            yield SchemaObject(kind, name, (f"aggregate {name}: {aggregate}",))
        else:
            yield SchemaObject(kind, name, (f"{kind} {name}", *_indented(definition)))


def _types(rows: Rows, constraints: dict[int, list[str]]) -> Iterator[SchemaObject]:
    for oid, typtype, name, labels, base, notnull, default, collation, range_, base_io in rows:
        if typtype == "e":
            header = f"type {name}: enum ({labels or ''})"
        elif typtype == "d":
            header = f"type {name}: domain {base}"
            header += f" collate {collation}" if collation else ""
            header += " not null" if notnull else ""
            header += f" default {default}" if default is not None else ""
        elif typtype == "r":
            header = f"type {name}: range {range_}"
        elif typtype == "p":
            header = f"type {name}: shell"
        else:
            header = f"type {name}: base {base_io}"
        yield SchemaObject("type", name, (header, *_part_lines(constraints.get(oid, []))))


def _drop(live: SchemaObject) -> Fix:
    """The DROP of an object added by hand, if it loses no data."""
    if live.kind in DROPS:
        return Fix(sql=(f"DROP {DROPS[live.kind]} {live.name}",))
    if live.kind == "type":
        domain = live.lines[0].startswith(f"type {live.name}: domain ")
        return Fix(sql=(f"DROP {'DOMAIN' if domain else 'TYPE'} {live.name}",))
    return by_hand(live, None)


def _parts(table: SchemaObject) -> dict[tuple[str, str], tuple[str, ...]]:
    """A table's parts by kind and name (``("index", "orders_total_idx")``), each with its lines."""
    parts: dict[tuple[str, str], tuple[str, ...]] = {}
    key = None
    for line in table.lines[1:]:
        match = PART_RE.match(line)
        if match:
            key = (match[1], match[2])
            parts[key] = (line,)
        elif key is not None:
            parts[key] += (line,)  # a rule's further lines
    return parts


def _set_default(table: str, column: str, have: tuple[str, ...], want: tuple[str, ...]) -> str | None:
    """``ALTER COLUMN ... SET DEFAULT`` (or ``DROP DEFAULT``) when a column's lines differ only in
    its default, which touches no row; None otherwise (identity and generated columns too)."""
    if have == want or any(" as identity" in line or " generated always as (" in line for line in have + want):
        return None
    before, _, _ = have[0].partition(" default ")
    after, _, default = want[0].partition(" default ")
    if before != after:
        return None
    return f"ALTER TABLE {table} ALTER COLUMN {column} " + (f"SET DEFAULT {default}" if default else "DROP DEFAULT")


def _fix_table(live: SchemaObject, wanted: SchemaObject) -> Fix:
    """A changed table: its parts added by hand dropped (an index a constraint added by hand
    owns goes with the constraint), a column added by hand and everything else by hand."""
    have, want = _parts(live), _parts(wanted)
    constraints = {name for kind, name in have.keys() - want.keys() if kind == "constraint"}
    schema = SCHEMA_RE.match(live.name)
    sql, left = [], []
    if live.lines[0] != wanted.lines[0]:
        left.append(f"{CHANGED_BY_HAND} (its first line)")
    for (kind, name), lines in have.items():
        if (kind, name) in want:
            default = _set_default(live.name, name, lines, want[kind, name]) if kind == "column" else None
            if default:
                sql.append(default)
            elif want[kind, name] != lines:
                left.append(f"{kind} {name}: {CHANGED_BY_HAND}")
        elif kind in PART_DROPS:
            if not (kind == "index" and name in constraints):
                sql.append(PART_DROPS[kind].format(schema=schema[0] if schema else "", table=live.name, name=name))
        else:
            left.append(f"{kind} {name}: only in the live database: drop it by hand if it is unwanted (its data goes)")
    for kind, name in sorted(want.keys() - have.keys()):
        left.append(f"{kind} {name}: only in the rebuild: create it by hand as the migrations do (the line marked -)")
    if not sql and not left:
        left.append(f"{CHANGED_BY_HAND} (the order of its columns)")
    return Fix(tuple(sql), tuple(left))
