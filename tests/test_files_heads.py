"""The parser finds markers and directives with one regex (``files.HEAD_RE``); this checks it
against the line-by-line reading it replaced, on generated files (Hypothesis): same sections, same
directives, same error on the same line."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sqlmigrate_app.errors import EmptyMigration, MigrationFileError
from sqlmigrate_app.files import SQL_LINE_RE, parse_directive, parse_text

PATH = Path("/migrations/20240101000000_x.sql")
MARKER_RE = re.compile(r"^--\s*(?P<marker>up|down)\s*$", re.IGNORECASE)
DIRECTIVE_RE = re.compile(r"^--\s*sqlmigrate\s*:\s*(?P<body>.*?)\s*$", re.IGNORECASE)


def reference_parse(text: str) -> tuple[object, ...]:
    """The parser as it was before HEAD_RE: every line starting with ``--``, stripped, matched."""
    if not text or text.isspace():
        raise MigrationFileError(PATH, "file is empty: it needs a -- UP section", 1)
    first_sql = SQL_LINE_RE.search(text)
    line_of_sql = text.count("\n", 0, first_sql.start()) + 1 if first_sql else 1
    up = down = None
    up_start = down_start = down_line_start = len(text) + 1
    options: dict[str, object] = {}
    offset = 0
    for line_no, line in enumerate(text.split("\n"), 1):
        start, offset = offset, offset + len(line) + 1
        stripped = line.strip()
        if not stripped.startswith("--"):
            continue
        if up is None and first_sql is not None and first_sql.start() < start:
            raise MigrationFileError(PATH, "SQL before the -- UP marker", line_of_sql)
        marker = MARKER_RE.match(stripped)
        if marker:
            kind = marker["marker"].upper()
            if kind == "UP" and up is not None:
                raise MigrationFileError(PATH, f"second -- UP marker (the first is on line {up})", line_no)
            if kind == "UP" and down is not None:
                raise MigrationFileError(PATH, "-- UP after -- DOWN: the UP section comes first", line_no)
            if kind == "DOWN" and up is None:
                raise MigrationFileError(PATH, "-- DOWN before -- UP: the UP section comes first", line_no)
            if kind == "DOWN" and down is not None:
                raise MigrationFileError(PATH, f"second -- DOWN marker (the first is on line {down})", line_no)
            if kind == "UP":
                up, up_start = line_no, offset
            else:
                down, down_start, down_line_start = line_no, offset, start
            continue
        directive = DIRECTIVE_RE.match(stripped)
        if directive:
            if up is not None:
                raise MigrationFileError(PATH, "directives go before the -- UP marker", line_no)
            parse_directive(PATH, line_no, directive["body"], options)
    if up is None:
        if first_sql is not None:
            raise MigrationFileError(PATH, "SQL before the -- UP marker", line_of_sql)
        raise MigrationFileError(PATH, "no -- UP marker", 1)
    up_sql = text[up_start : down_line_start - 1]
    first_up_sql = SQL_LINE_RE.search(up_sql)
    if first_up_sql is None and not options.get("empty"):
        raise EmptyMigration(PATH, "the -- UP section is empty: write its SQL, or add '-- sqlmigrate: empty' ...", up)
    if first_up_sql is not None and options.get("empty"):
        sql_line = up + 1 + up_sql.count("\n", 0, first_up_sql.start())
        raise MigrationFileError(PATH, "'-- sqlmigrate: empty' but the -- UP section holds SQL", sql_line)
    down_sql = text[down_start:] if down is not None else ""
    return up_sql, up + 1, down_sql, down + 1 if down is not None else 0, sorted(options.items(), key=str)


def outcome(parse: object, text: str) -> tuple[object, ...]:
    try:
        return ("ok", parse(text))  # type: ignore[operator]
    except MigrationFileError as exc:
        message = exc.message.split(": write its SQL")[0]  # the reference abbreviates this one
        return ("error", type(exc).__name__, message, exc.line)


def parse_now(text: str) -> tuple[object, ...]:
    m = parse_text(PATH.parent, "20240101000000_x", text)
    options: dict[str, object] = {"transactional": m.transactional, "lock_timeout": m.lock_timeout, "empty": m.empty}
    options.update(statement_timeout=m.statement_timeout, requires=m.requires)
    defaults = {"transactional": True, "lock_timeout": None, "statement_timeout": None, "empty": False, "requires": ()}
    changed = sorted(((key, value) for key, value in options.items() if value != defaults[key]), key=str)
    return m.up.sql, m.up.line, m.down.sql, m.down.line, changed


PIECES = st.sampled_from(
    [
        "--", "-- ", "---", "- -", " ", "\t", "\u00a0", "\x0b", "\n", "\n", "\n",
        "up", "UP", "Up", "down", "DOWN", "upx", "sqlmigrate", "SQLMigrate", ":", " : ",
        "no-transaction", "lock-timeout=5s", "statement-timeout = 2 min", "lock-timeout=soon", "retry", "empty",
        "requires=auth.0001_initial", "requires=nope",
        "SELECT 1;", "x", "'-- UP'", "/* -- DOWN */",
    ]
)  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=40).map("".join))
def test_heads_read_files_as_the_line_by_line_parser_did(text):
    assert outcome(parse_now, text) == outcome(reference_parse, text)


LINES = ["-- UP\n", "-- DOWN\n", "-- sqlmigrate: no-transaction\n", "SELECT 1;\n", "-- a comment\n", "  -- up  \n"]
LINES += ["x -- down\n", "\n", "-- sqlmigrate: empty\n", "-- sqlmigrate: requires=auth.0001_initial\n"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(LINES), max_size=12).map("".join))
def test_heads_on_whole_lines(text):
    assert outcome(parse_now, text) == outcome(reference_parse, text)
