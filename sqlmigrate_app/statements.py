"""Split SQL into statements, keeping the file line of each, and check them before they run.

PostgreSQL gets a transactional section whole, in one round trip, so splitting is only needed
where statements must run one by one: SQLite (whose driver takes one statement per call) and
``no-transaction`` migrations. SQLite's own ``complete_statement`` decides where its statements
end (strings, comments, trigger bodies). Everywhere else a small scanner does, following
PostgreSQL's lexical rules and grammar: quoted strings, ``E''`` strings, quoted identifiers,
``$$``/``$tag$`` bodies, ``--`` and nested ``/* */`` comments, ``BEGIN ATOMIC`` routine bodies
and parenthesised rule actions (not psql's guess at routine bodies: see NESTING_RE), and
SQLite's ``CREATE TRIGGER ... BEGIN ... END``, since the checks below read either database's
files with it. It jumps between quotes and semicolons with compiled regexes and ``str.find``, so
it stays linear.

The scanner assumes ``standard_conforming_strings = on``, PostgreSQL's default: with it off, a
backslash in a plain ``'...'`` string escapes the next character (``'a\\';b'`` is one string),
so statements would end elsewhere. That setting is not supported.

The same scanner checks a migration's statements (:func:`statement_error`), where they matter:
every file in ``validate`` and the system check; the files a command will run in ``up`` and
``down`` (and their ``--plan`` and ``--sql``), ``redo`` and ``verify``; none in ``status`` or the
admin page. It looks only at each statement's first words: statements PostgreSQL refuses inside
a transaction block, transaction control (``BEGIN``, ``COMMIT``, ...) and what no migration can
run (``COPY ... FROM STDIN``, psql meta-commands, two-phase commit). Word pre-filters, run once
per file (:func:`_hints`), keep it from scanning ordinary migrations at all. Its other readers:
which SQL may change session settings (:func:`may_change_session`), and for the ``--sql`` script
what psql reads otherwise than the server (:func:`psql_variable_colons`, :func:`psql_open_body`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from .directory import MigrationSet
from .errors import MigrationFileError

if TYPE_CHECKING:
    from .files import Migration

LEADING_NOISE_RE = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)  # before a SQLite statement
# Cheap pre-filter: only text containing one of these words can hold a statement that
# PostgreSQL refuses inside a transaction, so big ordinary migrations are never scanned. Plain
# substring tests on the lowered text, rather than a case-insensitive regex: benchmarks/README.md.
NON_TRANSACTIONAL_HINTS = (
    "concurrently", "vacuum", "database", "tablespace", "system", "reindex", "cluster", "subscription", "discard",
)  # fmt: skip

# The scanner jumps from one of these to the next (C speed); what lies between is plain SQL.
SPECIAL_RE = re.compile(r"""[;'"$/-]""")
COMMENT_OR_QUOTE_RE = re.compile(r"""[;'"$]|--|/\*""")
NON_SPACE_RE = re.compile(r"\S")
BLOCK_COMMENT_RE = re.compile(r"/\*|\*/")
# What follows E' (backslash escapes, and '' too): the rest of the string, closing quote included.
E_STRING_REST_RE = re.compile(r"[^'\\]*(?:(?:\\.|'')[^'\\]*)*'", re.DOTALL)
# $$ or $tag$, the tag an identifier without $ (for PostgreSQL any non-ASCII character is a letter).
DOLLAR_QUOTE_RE = re.compile(r"\$(?:(?:[^\W\d]|[^\x00-\x7f])(?:\w|[^\x00-\x7f])*)?\$")
WORD_RE = re.compile(r"[\w$]+|[^\s\w$]")
# How every statement PostgreSQL refuses inside a transaction block starts (or a comment comes
# first): the other statements, CREATE TABLE and the like, need no closer look.
_REFUSED_HEAD = (
    r"(?:vacuum|reindex|cluster|discard)(?![\w$])|alter\s+table(?![\w$])"
    r"|(?:create|drop|alter)(?:\s+(?:unique|index|database|tablespace|system|subscription)(?![\w$])|\s*(?:--|/\*))"
)
REFUSED_HEAD_RE = re.compile(_REFUSED_HEAD, re.IGNORECASE)
REFUSED_PAIRS = {
    "CREATE DATABASE", "DROP DATABASE", "CREATE TABLESPACE", "DROP TABLESPACE", "ALTER SYSTEM", "DROP SUBSCRIPTION",
    "DISCARD ALL",
}  # fmt: skip
# How transaction control, COPY and psql meta-commands start. Words like END and START are in
# many migrations (CASE ... END, "start_date"), so when the text mentions one, a second
# pre-filter looks for it where a statement can start: at the very start, or after a semicolon,
# a line break or a comment. One regex for each, so that the regex engine can jump from one
# literal ; or line break to the next (rather than one regex for all: benchmarks/README.md).
CONTROL_WORDS = (
    "begin", "start", "commit", "end", "rollback", "abort", "prepare", "savepoint", "release", "copy",
)  # fmt: skip
_CONTROL_HEAD = r"(?:begin|start|commit|end|rollback|abort|prepare|savepoint|release|copy)(?![\w$])"
CONTROL_HEAD_RE = re.compile(_CONTROL_HEAD, re.IGNORECASE)
CONTROL_AFTER_RES = tuple(re.compile(rf"{after}\s*(?:{_CONTROL_HEAD})", re.IGNORECASE) for after in (";", "\n", r"\*/"))
CONTROL_AT_START_RE = re.compile(rf"\s*(?:{_CONTROL_HEAD})", re.IGNORECASE)
# A psql meta-command can start anywhere outside quotes: a backslash is its one hint.
ALL_HINTS = (*NON_TRANSACTIONAL_HINTS, *CONTROL_WORDS, "\\")
ANY_HEAD_RE = re.compile(f"{_REFUSED_HEAD}|{_CONTROL_HEAD}", re.IGNORECASE)
META_COMMAND_RE = re.compile(r"\\(?:[A-Za-z]+|\S)?")
BACKSLASH_OR_QUOTE_RE = re.compile(r"""[\\'"$]|--|/\*""")
# Enough words for the longest head looked at (CREATE SUBSCRIPTION's WITH list, COPY (query) TO).
WORDS_LOOKED_AT = 256
# The only statements whose top-level semicolons may not end them, and what nests in them, as
# PostgreSQL's grammar (and SQLite's) has it:
# - routine: the SQL-standard body of CREATE [OR REPLACE] FUNCTION / PROCEDURE, BEGIN ATOMIC
#   ... END: it opens at the two words BEGIN ATOMIC outside parentheses (nothing else in a
#   routine's head is those two words), and it closes at an END right after a semicolon (or
#   right after BEGIN ATOMIC): each statement of the body ends in a semicolon, and an END
#   anywhere else closes a CASE or is a column label (``SELECT 1 end`` is valid SQL);
# - rule: multi-action rules, DO (...; ...): parentheses;
# - trigger: SQLite's CREATE [TEMP] TRIGGER ... BEGIN ...; END, whose BEGIN is followed by a
#   statement (TRIGGER_BODY_RE) and whose END, like a routine's, follows a semicolon.
# Elsewhere PostgreSQL refuses a semicolon inside parentheses: a syntax error, so the server runs
# nothing of the section. psql's own heuristic (any BEGIN in a routine opens a body) is not
# followed: ``CREATE FUNCTION f(begin int) ... RETURN begin; ROLLBACK`` is two statements.
_NOISE = r"(?:\s|--[^\n]*|/\*.*?\*/)+"
NESTING_RE = re.compile(
    rf"create{_NOISE}(?:(?:or{_NOISE}replace{_NOISE})?(?:(?P<routine>function|procedure)|(?P<rule>rule))"
    rf"|(?:temp(?:orary)?{_NOISE})?(?P<trigger>trigger))(?![\w$])",
    re.IGNORECASE | re.DOTALL,
)
NESTING_TOKEN_RE = re.compile(r"(?<![\w$])[\w$]+|[^\s\w$]")
TRIGGER_BODY_RE = re.compile(
    rf"{_NOISE}(?:insert|update|delete|select|replace|values|with)(?![\w$])", re.IGNORECASE | re.DOTALL
)
# The last token of a nesting statement when it is one of these (any other token: "").
_BODY_OPENED, _SEMICOLON = "begin atomic", ";"


@dataclass(frozen=True)
class Statement:
    """One statement of a section and the file line its first token is on."""

    sql: str
    line: int


@dataclass(frozen=True)
class Refusal:
    """Why a section cannot run as written, and the fix; ``line`` is the file line of the statement."""

    line: int
    message: str


class _Control(NamedTuple):
    """A transaction-control statement: what it does, and its name as messages show it (``COMMIT AND CHAIN``)."""

    kind: Literal["begin", "commit", "rollback", "savepoint", "two-phase"]
    name: str


def _is_identifier_char(char: str) -> bool:
    return char.isalnum() or char in "_$" or char > "\x7f"


def _skip(sql: str, at: int) -> int:
    """The end of the comment or quoted text at ``at`` (where SPECIAL_RE found something other
    than ``;``), or ``at + 1`` for a ``$`` that opens nothing (``a$b``, ``$1``)."""
    char = sql[at]
    if char == "-":
        newline = sql.find("\n", at)
        return len(sql) if newline == -1 else newline + 1
    if char == "/":  # comments nest
        depth = 0
        for match in BLOCK_COMMENT_RE.finditer(sql, at):
            depth += 1 if match[0] == "/*" else -1
            if depth == 0:
                return match.end()
        return len(sql)
    if char == "$":
        tag = None if at and _is_identifier_char(sql[at - 1]) else DOLLAR_QUOTE_RE.match(sql, at)
        if tag is None:
            return at + 1
        close = sql.find(tag[0], tag.end())
        return len(sql) if close == -1 else close + len(tag[0])
    if char == "'" and at and sql[at - 1] in "eE" and (at == 1 or not _is_identifier_char(sql[at - 2])):
        rest = E_STRING_REST_RE.match(sql, at + 1)
        return rest.end() if rest else len(sql)
    # '...' or "...": a doubled quote inside reads as two adjacent quoted texts, the same thing here.
    close = sql.find(char, at + 1)
    return len(sql) if close == -1 else close + 1


def _spans(sql: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each statement, from its first token (past whitespace and comments) to
    just after its top-level ``;`` or the end of the text. Top level: outside quotes and comments
    (and, in a few statements, parentheses and bodies: see NESTING_RE)."""
    head, pos = -1, 0
    nesting: _Nesting | None = None
    search, find, length = SPECIAL_RE.search, sql.find, len(sql)
    while True:
        match = search(sql, pos)
        at = match.start() if match else length
        if head < 0:
            first = NON_SPACE_RE.search(sql, pos, at)
            if first is not None:
                head = first.start()
                kind = NESTING_RE.match(sql, head)
                nesting = _Nesting(kind.lastgroup) if kind and kind.lastgroup else None
        if nesting is not None:
            nesting.read(sql, pos, at)
        if match is None:
            if head >= 0:
                yield head, length
            return
        char = sql[at]
        if char == ";":
            pos = at + 1
            if head >= 0 and (nesting is None or nesting.ends_at_semicolon()):
                yield head, pos
                head, nesting = -1, None
            continue
        if char == "'" and sql[at - 1] not in "eE":  # the common case, inline: a plain string
            close = find("'", at + 1)
            pos = length if close == -1 else close + 1
        elif char in "-/" and sql.startswith("--" if char == "-" else "/*", at):
            pos = _skip(sql, at)  # a comment
            continue
        else:
            pos = _skip(sql, at) if char != "-" and char != "/" else at + 1
        if head < 0:
            head = at
        if nesting is not None:
            nesting.last = ""  # a quoted text or an operator: a token


class _Nesting:
    """Where the scanner is in a statement of a kind that may hold semicolons (see NESTING_RE):
    its parenthesis depth, whether it is inside its body, and its last token when that is one
    that opens or may close a body (``_BODY_OPENED``, ``_SEMICOLON``, ``"begin"``)."""

    __slots__ = ("kind", "parens", "body", "last")

    def __init__(self, kind: str) -> None:
        self.kind, self.parens, self.body, self.last = kind, 0, False, ""

    def read(self, sql: str, start: int, end: int) -> None:
        """Follow the plain SQL text ``sql[start:end]`` (no quotes, comments or semicolons)."""
        for match in NESTING_TOKEN_RE.finditer(sql, start, end):
            token = match[0].lower()
            if match.end() == end and end < len(sql) and _is_identifier_char(sql[end]):
                token = ""  # end$x: one identifier, cut by the scanner at $
            last, self.last = self.last, ""
            if token == "(" or token == ")":
                self.parens = self.parens + 1 if token == "(" else max(0, self.parens - 1)
            elif self.parens or self.kind == "rule":
                continue
            elif self.body:
                self.body = not (token == "end" and last in (_SEMICOLON, _BODY_OPENED))
            elif self.kind == "routine" and token == "begin":
                self.last = "begin"
            elif self.kind == "routine" and token == "atomic" and last == "begin":
                self.body, self.last = True, _BODY_OPENED
            elif self.kind == "trigger" and token == "begin" and TRIGGER_BODY_RE.match(sql, match.end()):
                self.body = True

    def ends_at_semicolon(self) -> bool:
        """Whether a top-level semicolon here ends the statement: not inside parentheses (rule
        actions) or a body."""
        if self.parens:
            return False
        self.last = _SEMICOLON
        return not self.body


def _leading_words(sql: str, start: int, end: int, count: int = 12) -> list[str]:
    """The first words and punctuation of a statement, upper-cased, skipping comments. A quoted
    text is one word, as written (its first 64 characters); a ``$$`` body is the word ``$``."""
    words: list[str] = []
    pos = start
    while len(words) < count and pos < end:
        match = COMMENT_OR_QUOTE_RE.search(sql, pos, end)
        at = match.start() if match else end
        for word in WORD_RE.finditer(sql, pos, at):
            words.append(word[0].upper())
            if len(words) == count:
                return words
        if match is None or sql[at] == ";":
            break
        pos = _skip(sql, at)
        if sql[at] in "'\"":
            words.append(sql[at : min(pos, at + 64)])
        elif sql[at] not in "-/":
            words.append(sql[at])
    return words


def _statements(chunks: Iterator[str], first_line: int) -> list[Statement]:
    """Turn consecutive chunks of a section into statements, skipping empty ones."""
    statements = []
    line = first_line
    for chunk in chunks:
        noise = LEADING_NOISE_RE.match(chunk)
        skipped = noise.end() if noise else 0
        if chunk[skipped:].strip(" \t\n;"):
            statements.append(Statement(chunk, line + chunk.count("\n", 0, skipped)))
        line += chunk.count("\n")
    return statements


def _sqlite_chunks(sql: str) -> Iterator[str]:
    start = 0
    end = sql.find(";")
    # complete_statement refuses a NUL byte; running the statement will too, in one line.
    seen = sql.replace("\0", " ") if "\0" in sql else sql
    while end != -1:
        if sqlite3.complete_statement(seen[start : end + 1]):
            yield sql[start : end + 1]
            start = end + 1
        end = sql.find(";", end + 1)
    if start < len(sql):
        yield sql[start:]


def split_sqlite(sql: str, first_line: int = 1) -> list[Statement]:
    """SQLite statements one by one, where ``sqlite3.complete_statement`` ends them."""
    return _statements(_sqlite_chunks(sql), first_line)


def split(sql: str, first_line: int = 1) -> list[Statement]:
    """PostgreSQL statements one by one, each from its first token (leading comments left out)."""
    statements = []
    line, counted = first_line, 0
    for start, end in _spans(sql):
        line += sql.count("\n", counted, start)
        counted = start
        statements.append(Statement(sql[start:end], line))
    return statements


# One statement: what it is -------------------------------------------------------------------


def _refused(words: list[str]) -> bool:
    """Whether a statement starting with ``words`` (never none: only statements whose head a
    pre-filter matched are looked at) is one PostgreSQL will not run inside a transaction block."""
    head, pair = words[0], " ".join(words[:2])
    if head == "VACUUM" or pair in REFUSED_PAIRS:
        return True
    if head == "REINDEX":
        return _reindex_refused(words)
    if head == "CLUSTER":  # CLUSTER [VERBOSE] with no table: every table clustered before
        return words[1:] in ([], ["VERBOSE"])
    if pair == "ALTER DATABASE":  # ALTER DATABASE name SET TABLESPACE ...
        return words[3:5] == ["SET", "TABLESPACE"]
    if pair == "ALTER TABLE":  # ALTER TABLE [IF EXISTS] [ONLY] name DETACH PARTITION p CONCURRENTLY
        detach = any(words[i : i + 2] == ["DETACH", "PARTITION"] for i in range(2, len(words)))
        return detach and words[-1] == "CONCURRENTLY"
    if pair == "CREATE SUBSCRIPTION":  # it creates a replication slot unless told not to
        options = _options(words, words.index("WITH") + 1) if "WITH" in words else {}
        return not any(_boolean(options.get(name, "TRUE")) is False for name in ("CONNECT", "CREATE_SLOT"))
    # CREATE [UNIQUE] INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY (a keyword: no index has that name)
    rest = words[2:] if words[:2] == ["CREATE", "UNIQUE"] else words[1:]
    return head in ("CREATE", "DROP") and rest[:2] == ["INDEX", "CONCURRENTLY"]


def _reindex_refused(words: list[str]) -> bool:
    """REINDEX [(option [value], ...)] {INDEX | TABLE | SCHEMA | DATABASE | SYSTEM} [CONCURRENTLY] name."""
    options: dict[str, str | None] = {}
    target = words[1:]
    if target[:1] == ["("]:
        options = _options(words, 1)
        target = words[words.index(")") + 1 :] if ")" in words else []
    if "CONCURRENTLY" in options and _boolean(options["CONCURRENTLY"]):
        return True
    return target[:1] in (["SCHEMA"], ["DATABASE"], ["SYSTEM"]) or target[1:2] == ["CONCURRENTLY"]


def _options(words: list[str], at: int) -> dict[str, str | None]:
    """The ``(name [[=] value], ...)`` list at ``words[at]``: each option's value, None when bare."""
    options: dict[str, str | None] = {}
    if words[at : at + 1] != ["("]:
        return options
    item: list[str] = []
    depth = 0
    for word in words[at:]:
        depth += 1 if word == "(" else -1 if word == ")" else 0
        if depth == 1 and word == "(":
            continue
        if depth <= 0 or (depth == 1 and word == ","):
            value = [part for part in item[1:] if part != "="]
            if item:
                options[item[0]] = value[0] if value else None
            item = []
            if depth <= 0:
                break
        else:
            item.append(word)
    return options


def _boolean(value: str | None) -> bool | None:
    """An option's value as PostgreSQL reads a Boolean (defGetBoolean): bare means true; None when
    it is not one (the server then refuses the statement itself)."""
    if value is None:
        return True
    word = value.strip("'").upper()
    return True if word in ("TRUE", "ON", "1") else False if word in ("FALSE", "OFF", "0") else None


def _control(words: list[str]) -> _Control | None:
    """What a statement does to the session's transaction, from its leading words (PostgreSQL and
    SQLite syntax), or None when it is not transaction control."""
    head, second = (words + ["", ""])[:2]
    if head == "BEGIN" and second != "ATOMIC":
        return _Control("begin", "BEGIN")
    if head == "START" and second == "TRANSACTION":
        return _Control("begin", "START TRANSACTION")
    if (head, second) == ("PREPARE", "TRANSACTION") or (head in ("COMMIT", "ROLLBACK") and second == "PREPARED"):
        return _Control("two-phase", f"{head} {second}")
    if head in ("SAVEPOINT", "RELEASE"):
        return _Control("savepoint", head)
    if head not in ("COMMIT", "END", "ROLLBACK", "ABORT"):
        return None
    rest = words[2:] if second in ("WORK", "TRANSACTION") else words[1:]
    if rest[:1] == ["TO"]:
        return _Control("savepoint", f"{head} TO")  # ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name
    chain = " AND CHAIN" if rest[:2] == ["AND", "CHAIN"] else ""
    return _Control("commit" if head in ("COMMIT", "END") else "rollback", head + chain)


def transaction_control(statement: str) -> Literal["begin", "commit", "rollback"] | None:
    """What one statement does to a group of a ``no-transaction`` migration: ``"begin"`` opens one
    (``BEGIN`` in any form but ``BEGIN ATOMIC``, ``START TRANSACTION``), ``"commit"`` closes it
    keeping its work (``COMMIT``, ``END``), ``"rollback"`` closes it undoing its work
    (``ROLLBACK``, ``ABORT``); None for any other statement, savepoints included (``SAVEPOINT``,
    ``RELEASE``, ``ROLLBACK TO``). ``statement`` is one statement as :func:`split` or
    :func:`split_sqlite` returns it; leading comments do not matter.

    What :func:`statement_error` has checked of each section of such a migration before it runs,
    so the runner need not: a group never opens inside another, every group is closed by the
    end of the section and nothing closes one that is not open; savepoints occur only inside
    groups; no statement refused inside a transaction block (CREATE INDEX CONCURRENTLY, ...) is
    inside one; there is no ``AND CHAIN`` and no two-phase commit. So the statements of a group
    took effect only once its ``"commit"`` succeeded; if one of them fails, the session is left
    in a failed transaction block that only a ROLLBACK ends.
    """
    control = _control(_leading_words(statement, 0, len(statement)))
    if control is None or control.kind == "savepoint" or control.kind == "two-phase":
        return None
    return control.kind


def _copy_with_client(words: list[str]) -> str | None:
    """``"FROM stdin"`` or ``"TO stdout"`` for a COPY that needs a client, else None."""
    if words[:1] != ["COPY"]:
        return None
    depth = 0
    for index, word in enumerate(words):
        depth += 1 if word == "(" else -1 if word == ")" else 0
        if depth == 0 and (word, words[index + 1 : index + 2]) in (("FROM", ["STDIN"]), ("TO", ["STDOUT"])):
            return f"{word} {words[index + 1].lower()}"
    return None


# Messages ------------------------------------------------------------------------------------

NO_TRANSACTION_FIX = "add a '-- sqlmigrate: no-transaction' line before -- UP"
OWN_TRANSACTION = (
    "sqlmigrate runs each migration in a transaction of its own, so remove BEGIN/COMMIT, or add "
    "'-- sqlmigrate: no-transaction' before -- UP to group statements yourself"
)


def _shown(statement: Statement) -> str:
    return " ".join(statement.sql.split()[:3]).rstrip(";")


def _never_runs(statement: Statement, words: list[str]) -> str | None:
    """Why no migration, transactional or not, can run this statement, or None."""
    copy = _copy_with_client(words)
    if copy == "FROM stdin":
        return (
            "COPY ... FROM stdin: COPY data blocks (pg_dump's plain format) are not supported; "
            "dump with --inserts (or --column-inserts), or COPY from a file on the server"
        )
    if copy == "TO stdout":
        return "COPY ... TO stdout: a migration has no client to send the rows to; COPY to a file on the server"
    control = _control(words)
    if control is not None and control.kind == "two-phase":
        return (
            f"'{control.name}' is two-phase commit, which migrations cannot take part in "
            "(a prepared transaction outlives the session); remove it"
        )
    return None


# Sections: the first refusal -------------------------------------------------------------------


def _lowered_chunks(sql: str) -> Iterable[str]:
    """``sql`` in lower case, a megabyte (plus an overlap) at a time, so a big section is not copied whole."""
    step = 1 << 20
    if len(sql) <= step:
        return (sql.lower(),)
    return (sql[start : start + step + 64].lower() for start in range(0, len(sql), step))


def mentions(sql: str, words: tuple[str, ...]) -> bool:
    """True when any of the lower-case ``words`` appears in ``sql``, in any case, even in a
    string or comment: a cheap pre-filter."""
    return any(any(map(chunk.__contains__, words)) for chunk in _lowered_chunks(sql))


class _Hints(NamedTuple):
    """What a text may hold, by the pre-filters above: each False rules out a kind of refusal
    without a scan; a True only means the text must be scanned for it."""

    refused: bool  # a statement refused inside a transaction block
    controlled: bool  # transaction control or COPY
    meta: bool  # a psql meta-command (a backslash)


def _hints(sql: str) -> _Hints:
    """The pre-filters, the one place they run: a pass over the text for every hint word at once
    (the usual answer: none), then, for the words found, which kinds they hint at. The hints of a
    whole file hold for each of its sections."""
    refused = controlled = meta = False
    for chunk in _lowered_chunks(sql):
        if not any(map(chunk.__contains__, ALL_HINTS)):  # the usual answer, in one pass
            continue
        refused = refused or any(map(chunk.__contains__, NON_TRANSACTIONAL_HINTS))
        controlled = controlled or any(map(chunk.__contains__, CONTROL_WORDS))
        meta = meta or "\\" in chunk
    if controlled:
        controlled = CONTROL_AT_START_RE.match(sql) is not None or any(r.search(sql) for r in CONTROL_AFTER_RES)
    return _Hints(refused, controlled, meta)


def _headed(sql: str, first_line: int, head_re: re.Pattern[str]) -> Iterator[tuple[Statement, list[str]]]:
    """Each statement whose start ``head_re`` matches, with its leading words."""
    line, counted = first_line, 0
    for start, end in _spans(sql):
        if head_re.match(sql, start):
            line += sql.count("\n", counted, start)
            counted = start
            yield Statement(sql[start:end], line), _leading_words(sql, start, end, WORDS_LOOKED_AT)


def _checked(sql: str, first_line: int, hints: _Hints) -> Iterable[tuple[Statement, list[str]]]:
    """The statements a section check must look at: none in most sections, which mention no word
    that could start one (see the pre-filters above)."""
    refused, controlled = hints.refused, hints.controlled
    if not (refused or controlled):
        return ()
    head_re = ANY_HEAD_RE if refused and controlled else REFUSED_HEAD_RE if refused else CONTROL_HEAD_RE
    return _headed(sql, first_line, head_re)


def _meta_command(sql: str, first_line: int) -> Refusal | None:
    """A backslash outside quotes, comments and dollar quotes, where psql would run the rest of
    the line as one of its own commands (``\\! rm -rf``, ``\\connect``) and the server, which has
    no backslash operator, reports a syntax error: refused, so that ``up --sql | psql`` never
    does what ``up`` cannot."""
    pos = 0
    while (match := BACKSLASH_OR_QUOTE_RE.search(sql, pos)) is not None:
        at = match.start()
        if sql[at] == "\\":
            meta = META_COMMAND_RE.match(sql, at)
            command = meta[0] if meta else "\\"
            return Refusal(first_line + sql.count("\n", 0, at), f"psql meta-command '{command}' is not SQL; remove it")
        pos = _skip(sql, at)
    return None


def _earliest(*refusals: Refusal | None) -> Refusal | None:
    """The refusal on the first line, of those found."""
    return min((refusal for refusal in refusals if refusal is not None), key=lambda r: r.line, default=None)


def refusal_in_transaction(sql: str, first_line: int = 1) -> Refusal | None:
    """The first statement of a section that cannot run inside the migration's transaction:
    transaction control (it would end or nest that transaction), a statement PostgreSQL refuses
    in a transaction block, or what no migration can run; None when there is none."""
    return _in_transaction(sql, first_line, _hints(sql))


def _in_transaction(sql: str, first_line: int, hints: _Hints) -> Refusal | None:
    meta = _meta_command(sql, first_line) if hints.meta else None
    return _earliest(meta, _statement_in_transaction(sql, first_line, hints))


def _statement_in_transaction(sql: str, first_line: int, hints: _Hints) -> Refusal | None:
    for statement, words in _checked(sql, first_line, hints):
        message = _never_runs(statement, words)
        control = _control(words)
        if message is None and control is not None and control.kind in ("begin", "commit", "rollback"):
            verb = "starts a transaction inside" if control.kind == "begin" else "ends"
            message = f"'{control.name}' {verb} the migration's transaction: {OWN_TRANSACTION}"
        if message is None and _refused(words):
            message = f"'{_shown(statement)} ...' cannot run inside a transaction; {NO_TRANSACTION_FIX}"
        if message is not None:
            return Refusal(statement.line, message)
    return None


def refusal_without_transaction(sql: str, first_line: int = 1) -> Refusal | None:
    """The first statement of a ``no-transaction`` section that cannot run as written: what no
    migration can run, or a BEGIN ... COMMIT group that is not well formed (see
    :func:`transaction_control` for what that promises the runner); None when there is none."""
    return _without_transaction(sql, first_line, _hints(sql))


def _without_transaction(sql: str, first_line: int, hints: _Hints) -> Refusal | None:
    meta = _meta_command(sql, first_line) if hints.meta else None
    return _earliest(meta, _statement_without_transaction(sql, first_line, hints))


def _statement_without_transaction(sql: str, first_line: int, hints: _Hints) -> Refusal | None:
    group: Statement | None = None  # the BEGIN of the open group
    for statement, words in _checked(sql, first_line, hints):
        control = _control(words)
        message = _never_runs(statement, words) or _group_refusal(statement, words, control, group)
        if message is not None:
            return Refusal(statement.line, message)
        if control is not None and control.kind in ("begin", "commit", "rollback"):
            group = statement if control.kind == "begin" else None
    if group is not None:
        return Refusal(group.line, f"BEGIN on line {group.line} has no COMMIT: end the group before the section ends")
    return None


def _group_refusal(
    statement: Statement, words: list[str], control: _Control | None, group: Statement | None
) -> str | None:
    """What is wrong with this statement given the open group (``group``: its BEGIN), or None."""
    kind, name = control if control is not None else (None, "")
    if kind == "begin" and group is not None:
        return f"'{name}' inside the group opened on line {group.line}: groups do not nest; COMMIT that one first"
    if kind in ("commit", "rollback") and group is None:
        return f"'{name}' with no BEGIN before it: outside a group each statement commits on its own; remove it"
    if kind in ("commit", "rollback") and name.endswith("CHAIN"):
        return f"'{name}' opens the next group itself, which sqlmigrate does not follow: write COMMIT, then BEGIN"
    if kind == "savepoint" and group is None:
        return (
            f"'{name}' outside BEGIN ... COMMIT: savepoints exist only inside a transaction; "
            "open a group with BEGIN first"
        )
    if group is not None and _refused(words):
        return (
            f"'{_shown(statement)} ...' cannot run inside a transaction, and the group opened on line "
            f"{group.line} is one: move it after that group's COMMIT"
        )
    return None


# Migrations: their statements checked ---------------------------------------------------------


def statement_error(migration: Migration) -> MigrationFileError | None:
    """The first statement of either section that cannot run as the migration is written (see
    :func:`refusal_in_transaction`, or :func:`refusal_without_transaction` for a
    ``no-transaction`` migration), as the file's error; None when there is none.

    The one check of a file that reads its statements, so it runs only where they matter (see
    the module's docstring); ``status`` and the admin page skip it.
    """
    hints = _hints(f"{migration.up_sql}\n{migration.down_sql}")  # one pass over the file, not one per section
    if not any(hints):
        return None  # the usual answer
    check = _in_transaction if migration.transactional else _without_transaction
    for sql, line in ((migration.up_sql, migration.up_line), (migration.down_sql, migration.down_line)):
        refusal = check(sql, line, hints)
        if refusal is not None:
            return MigrationFileError(migration.path, refusal.message, refusal.line)
    return None


def check_statements(migrations: Iterable[Migration]) -> None:
    """Raise the first statement error of these migrations, before any of them runs."""
    for migration in migrations:
        error = statement_error(migration)
        if error is not None:
            raise error


def with_statements_checked(found: MigrationSet) -> MigrationSet:
    """``found`` with every migration's statements checked: a migration with a refused statement
    becomes an error, in file order among the others (what ``validate`` reports)."""
    checked = MigrationSet(found.directory, errors=list(found.errors))
    for migration in [*found.migrations, *found.repeatables]:
        error = statement_error(migration)
        if error is None:
            (checked.repeatables if migration.repeatable else checked.migrations).append(migration)
        else:
            checked.errors.append(error)
    if len(checked.errors) > len(found.errors):
        checked.errors.sort(key=lambda error: error.path.name)
    return checked


# Words without which a section cannot change a session setting beyond its transaction.
SESSION_HINTS = ("set", "pragma")
TRANSACTION_SCOPED_SET = (["LOCAL"], ["CONSTRAINTS"], ["TRANSACTION"])


def may_change_session(sql: str) -> bool:
    """True when running ``sql`` may leave a session setting changed after its transaction: a
    ``SET`` (not ``SET LOCAL``, ``SET CONSTRAINTS``, ``SET TRANSACTION``), ``RESET`` or ``PRAGMA``
    statement, ``set_config()`` anywhere, or a ``DO`` block that mentions SET. A function made
    by an earlier migration that changes settings when called is not seen."""
    if not mentions(sql, SESSION_HINTS):
        return False
    if mentions(sql, ("set_config",)):
        return True
    for start, end in _spans(sql):
        words = _leading_words(sql, start, end, 2)
        head = words[0] if words else ""
        if head in ("RESET", "PRAGMA") or (head == "SET" and words[1:2] not in TRANSACTION_SCOPED_SET):
            return True
        if head == "DO" and mentions(sql[start:end], ("set",)):
            return True
    return False


# psql variables ------------------------------------------------------------------------------

# psql reads ':name', ":'name'", ':"name"' and ':{?name}' outside quotes, comments and dollar
# quotes as variable references (psqlscan.l); '::' is a cast.
PSQL_SPECIAL_RE = re.compile(r"""[:'"$/-]""")


def _is_psql_variable_char(char: str) -> bool:
    return (char.isascii() and (char.isalnum() or char == "_")) or char > "\x7f"


def psql_variable_colons(sql: str) -> list[int]:
    """The offsets of the colons psql would read as the start of a variable reference, which it
    replaces when a variable of that name is set (``USER``, ``PORT``, ``-v name=...``). The
    server reads a ``:`` as a token of its own, so a space after one changes nothing for it."""
    if ":" not in sql:
        return []
    colons: list[int] = []
    pos, search = 0, PSQL_SPECIAL_RE.search
    while match := search(sql, pos):
        at = match.start()
        char = sql[at]
        if char == ":":
            after = sql[at + 1 : at + 2]
            if after == ":":  # a cast: psql reads '::' first, then what follows
                pos = at + 2
                continue
            if after and (after in "'\"{" or _is_psql_variable_char(after)):
                colons.append(at)
            pos = at + 1
        elif char in "-/" and not sql.startswith("--" if char == "-" else "/*", at):
            pos = at + 1
        else:
            pos = _skip(sql, at)
    return colons


# psql's guess at function bodies (psqlscan.l, PostgreSQL 14+): in a statement whose first words
# are CREATE [OR REPLACE] FUNCTION|PROCEDURE, the words begin, case (inside one) and end outside
# parentheses open and close a body, and a semicolon inside one does not end the statement.
PSQL_WORD_RE = re.compile(r"(?<![\w$])(?:[^\W\d]|[^\x00-\x7f])(?:[\w$]|[^\x00-\x7f])*|[()]")
PSQL_HEAD_WORDS = ("create", "or", "replace", "function", "procedure")


def _psql_routine(heads: list[str]) -> bool:
    """psql's test of a statement's first four words (each one's initial when it is one of
    PSQL_HEAD_WORDS, else a space) for CREATE [OR REPLACE] FUNCTION|PROCEDURE."""
    return heads[0] == "c" and (heads[1] in "fp" or (heads[1:3] == ["o", "r"] and heads[3] in "fp"))


def psql_open_body(sql: str) -> int | None:
    """The offset of the word that opened a function body psql still takes to be open at the
    end of ``sql`` (a function or parameter named begin, say), so that psql would read what
    follows ``sql`` into the same statement; None when it is not."""
    words, heads, parens = 0, [" "] * 4, 0
    opened: list[int] = []  # where each open begin (or case inside one) is
    pos = 0
    while True:
        match = SPECIAL_RE.search(sql, pos)
        at = match.start() if match else len(sql)
        for word in PSQL_WORD_RE.finditer(sql, pos, at):
            token = word[0].lower()
            if token in ("(", ")"):
                parens = parens + 1 if token == "(" else max(0, parens - 1)
                continue
            if word.end() == at and at < len(sql) and sql[at] == "$":
                continue  # begin$x: one identifier, cut by the scanner at $
            if words < 4 and token in PSQL_HEAD_WORDS:
                heads[words] = token[0]
            words += 1
            if parens == 0 and _psql_routine(heads):
                if token == "begin" or (token == "case" and opened):
                    opened.append(word.start())
                elif token == "end" and opened:
                    opened.pop()
        if match is None:
            return opened[0] if opened else None
        if sql[at] == ";" and parens == 0 and not opened:
            words, heads = 0, [" "] * 4
        if sql[at] == ";" or (sql[at] in "-/" and not sql.startswith("--" if sql[at] == "-" else "/*", at)):
            pos = at + 1
        else:
            pos = _skip(sql, at)
