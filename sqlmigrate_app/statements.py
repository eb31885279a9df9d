"""Split SQL into statements, keeping the file line of each.

PostgreSQL gets a transactional section whole, in one round trip, so splitting is only needed
where statements must run one by one: SQLite (whose driver takes one statement per call) and
``no-transaction`` migrations. SQLite's own ``complete_statement`` decides where its statements
end (strings, comments, trigger bodies); sqlparse does it for everything else (dollar quotes,
``BEGIN ATOMIC`` bodies, ``E''`` strings).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import sqlparse

LEADING_NOISE_RE = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)
# Cheap pre-filter: only text containing one of these words can hold a statement that
# PostgreSQL refuses inside a transaction, so big ordinary migrations are never parsed.
# Tested on the lowered text, a megabyte at a time: a case-insensitive regex alternation took
# 100 ms on a 4 MB migration, this takes a few.
NON_TRANSACTIONAL_HINTS = ("concurrently", "vacuum", "database", "tablespace")
ALTER_SYSTEM_RE = re.compile(r"alter\s+system")


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int


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
    while end != -1:
        if sqlite3.complete_statement(sql[start : end + 1]):
            yield sql[start : end + 1]
            start = end + 1
        end = sql.find(";", end + 1)
    if start < len(sql):
        yield sql[start:]


def split_sqlite(sql: str, first_line: int = 1) -> list[Statement]:
    return _statements(_sqlite_chunks(sql), first_line)


def split(sql: str, first_line: int = 1) -> list[Statement]:
    return _statements((str(statement) for statement in sqlparse.parse(sql)), first_line)


def _leading_words(statement: str, count: int = 8) -> list[str]:
    parsed = sqlparse.parse(statement)
    if not parsed:
        return []
    words = []
    for token in parsed[0].flatten():
        if token.is_whitespace or token.ttype in sqlparse.tokens.Comment:
            continue
        words.append(token.value.upper())
        if len(words) == count:
            break
    return words


def refused_in_transaction(statement: str) -> bool:
    """True for the statements PostgreSQL will not run inside a transaction block."""
    words = _leading_words(statement)
    if not words:
        return False
    head = words[0]
    if head == "VACUUM" or " ".join(words[:2]) in {
        "CREATE DATABASE",
        "DROP DATABASE",
        "CREATE TABLESPACE",
        "DROP TABLESPACE",
        "ALTER SYSTEM",
    }:
        return True
    return head in {"CREATE", "DROP", "REINDEX"} and "CONCURRENTLY" in words and ("INDEX" in words or head == "REINDEX")


def _may_hold_non_transactional(sql: str) -> bool:
    """The cheap pre-filter, lowering a megabyte (plus an overlap) at a time."""
    step = 1 << 20
    for start in range(0, len(sql), step):
        chunk = sql[start : start + step + 64].lower()
        if any(word in chunk for word in NON_TRANSACTIONAL_HINTS) or ALTER_SYSTEM_RE.search(chunk):
            return True
    return False


def first_non_transactional(sql: str, first_line: int = 1) -> Statement | None:
    if not _may_hold_non_transactional(sql):
        return None
    return next((s for s in split(sql, first_line) if refused_in_transaction(s.sql)), None)
