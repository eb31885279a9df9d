"""SQLite: ``sqlite_master`` in one query, its SQL normalised the way ``ALTER TABLE`` rewrites it."""

from __future__ import annotations

import re

from .model import INDENT, Fix, Reader, SchemaObject, Snapshot, by_hand

# A string literal (kept as it is), a "quoted" plain identifier (unquoted), or a run of whitespace.
TOKEN_RE = re.compile(r"""('(?:[^']|'')*')|"([A-Za-z_][A-Za-z0-9_]*)"|(\s+)""")
LITERAL_RE = re.compile(r"('(?:[^']|'')*')")
PUNCTUATION_RE = re.compile(r"\s*([(),])\s*")
PART_RE = re.compile(r"'(?:[^']|'')*'|[(),]")


def normalise(sql: str) -> str:
    """SQLite's stored SQL as a fresh ``CREATE`` would write it, whatever ``ALTER TABLE`` did to
    it: whitespace collapsed, none inside parentheses or before commas, simple identifiers
    unquoted (``RENAME`` quotes the names it writes), no final semicolon."""

    def token(match: re.Match[str]) -> str:
        literal, identifier, _ = match.groups()
        if literal is not None:
            return literal
        return identifier if identifier is not None else " "

    pieces = LITERAL_RE.split(TOKEN_RE.sub(token, sql.strip()).rstrip(";").strip())
    for index in range(0, len(pieces), 2):  # the text between string literals
        pieces[index] = PUNCTUATION_RE.sub(lambda m: m.group(1) + (" " if m.group(1) == "," else ""), pieces[index])
    return "".join(pieces).strip()


def top_level_parts(body: str) -> list[str]:
    """A table's column and constraint definitions: ``body`` split at commas outside parentheses
    and string literals."""
    parts, depth, start = [], 0, 0
    for match in PART_RE.finditer(body):
        char = match.group()
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(body[start : match.start()].strip())
            start = match.end()
    parts.append(body[start:].strip())
    return [part for part in parts if part]


class SQLiteReader(Reader):
    """Reads ``sqlite_master``: tables one line per column or constraint, the rest one line each."""

    def read(self) -> Snapshot:
        """The schema as it is now, internal ``sqlite_*`` objects and the history table left out."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
                " WHERE name NOT LIKE 'sqlite\\_%%' ESCAPE '\\' AND tbl_name <> %s AND sql IS NOT NULL",
                [self.history_table],
            )
            rows = cursor.fetchall()
        return Snapshot(schema_object(*row) for row in rows)

    def fix(self, live: SchemaObject | None, wanted: SchemaObject | None) -> Fix:
        """Drop an index, trigger or view added by hand; the rest by hand (the stored SQL, once
        normalised, may not run as it reads: a keyword it unquoted)."""
        if wanted is None and live is not None and live.kind in ("index", "trigger", "view"):
            name = live.name if live.kind == "view" else live.name.rpartition(" on ")[0]
            quoted = '"' + name.replace('"', '""') + '"'  # quote_name would leave a " inside as it is
            return Fix(sql=(f"DROP {live.kind.upper()} {quoted}",))
        return by_hand(live, wanted)


def schema_object(type_: str, name: str, table: str, sql: str) -> SchemaObject:
    """One ``sqlite_master`` row as an object: a table's name comes from the row (the SQL of a
    renamed table still starts with its old one)."""
    text = normalise(sql)
    if type_ == "table":
        body, _, options = text.partition("(")[2].rpartition(")")
        header = f"table {name}" + (f": {options.strip()}" if options.strip() else "")
        return SchemaObject("table", name, (header, *(INDENT + part for part in top_level_parts(body))))
    label = f"{name} on {table}" if type_ in ("index", "trigger") else name
    return SchemaObject(type_, label, (f"{type_} {label}", INDENT + text))
