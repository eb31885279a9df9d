"""psycopg 3 wire-protocol helpers, private to the PostgreSQL backend: one simple-query message
whose results are read one at a time, COPY refused, the BEGIN psycopg would send, literals."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

# Called with the index of each result of a message and the result, as it arrives (a batch's
# progress: see PostgresBackend.run_batch).
Watch = Callable[[int, Any], None]


def literal(value: str) -> str:
    """An E'' string literal of ``value``."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def identifier(name: str) -> str:
    """``name`` as a quoted identifier, a double quote in it doubled (Django's ``quote_name``
    leaves it as it is)."""
    return '"' + name.replace('"', '""') + '"'


class Outcome(NamedTuple):
    """What one simple-query message did: its first error (the server runs nothing after it),
    how many results came before that error, the rows touched by each of its last ``kept``
    statements (when it ran to the end), and the index and tag of every result that ended a transaction (``COMMIT``,
    ``ROLLBACK``, ``PREPARE TRANSACTION``: a ``ROLLBACK TO`` savepoint is tagged ``ROLLBACK`` too)."""

    error: Exception | None
    failed_at: int
    rows: list[int]
    ends: list[tuple[int, str]]


def simple_query(conn: Any, sql: str | Sequence[str], kept: int = 0, watch: Watch | None = None) -> Outcome:
    """Send ``sql`` (the parts of one text) in one simple-query message and read its results one
    at a time, dropping each (``cursor.execute`` would hold one per statement until the last
    arrived). Call with ``conn.lock`` held.

    The I/O goes through ``Connection.wait``, which cancels the query on Ctrl-C and reads on
    to the end before raising it: a ``watch`` sees every result the server sent.
    """
    parts = [sql] if isinstance(sql, str) else list(sql)
    if any("\0" in part for part in parts):  # libpq would stop reading at it, the rest lost
        from psycopg import ProgrammingError

        return Outcome(ProgrammingError("the SQL holds a NUL byte, where PostgreSQL would stop reading it"), 0, [], [])
    encoding = conn.info.encoding
    query = _encoded(parts, encoding, conn.pgconn)
    outcome: Outcome = conn.wait(_simple_query_gen(conn.pgconn, query, encoding, kept, watch))
    return outcome


def _encoded(parts: list[str], encoding: str, pgconn: Any) -> bytes | bytearray:
    """The parts encoded into one buffer. A big section between a few statements is copied once,
    a megabyte at a time, where joining and then encoding would copy it twice (what that costs
    the 50,000-INSERT migration's peak: benchmarks/README.md). Plain ASCII (what such sections
    are) only; psycopg's C implementation takes the bytearray as it is."""
    if len(parts) == 1 or not all(part.isascii() for part in parts):
        return "".join(parts).encode(encoding)
    buffer = bytearray(sum(map(len, parts)))
    with memoryview(buffer) as view:
        at = 0
        for part in parts:
            for start in range(0, len(part), 1 << 20):
                piece = part[start : start + (1 << 20)].encode(encoding)
                view[at : at + len(piece)] = piece
                at += len(piece)
    return buffer if type(pgconn).__module__.startswith("psycopg_binary") else bytes(buffer)


def single_value(result: Any) -> bytes | None:
    """The value of a result of one row and one column, else None."""
    if result.ntuples != 1 or result.nfields != 1:
        return None
    value: bytes | None = result.get_value(0, 0)
    return value


def single_row(result: Any) -> tuple[bytes | None, ...] | None:
    """The values of a result of one row, else None."""
    if result.ntuples != 1:
        return None
    return tuple(result.get_value(0, column) for column in range(result.nfields))


def loaded_rows(conn: Any, result: Any, at_a_time: int = 1000) -> Iterator[tuple[Any, ...]]:
    """``result``'s rows as Python values, through the connection's loaders (Django's), made
    ``at_a_time``: never a list of every row."""
    from psycopg.adapt import Transformer

    loader = Transformer(conn)
    loader.set_pgresult(result)
    for start in range(0, result.ntuples, at_a_time):
        yield from loader.load_rows(start, min(start + at_a_time, result.ntuples), tuple)


def idle(conn: Any) -> bool:
    """Whether the session is outside any transaction and waits for a query."""
    from psycopg import pq

    return bool(conn.pgconn.transaction_status == pq.TransactionStatus.IDLE)


def busy(conn: Any) -> bool:
    """Whether a query's results are still coming."""
    from psycopg import pq

    return bool(conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE)


def begin_statements(conn: Any) -> list[str]:
    """The BEGIN psycopg would send in a round trip of its own before the first statement of
    a transaction (with the same options: isolation level, read only, deferrable)."""
    if conn.autocommit or conn.info.transaction_status.name != "IDLE":
        return []
    parts = ["BEGIN"]
    if conn.isolation_level is not None:
        parts.append(f"ISOLATION LEVEL {conn.isolation_level.name.replace('_', ' ')}")
    if conn.read_only is not None:
        parts.append("READ ONLY" if conn.read_only else "READ WRITE")
    if conn.deferrable is not None:
        parts.append("DEFERRABLE" if conn.deferrable else "NOT DEFERRABLE")
    return [" ".join(parts)]


def _simple_query_gen(pgconn: Any, query: bytes | bytearray, encoding: str, kept: int, watch: Watch | None) -> Any:
    """psycopg's ``execute`` generator, reading results one by one instead of into a list; the
    :class:`Outcome`. It reads on to the end either way, so the connection is ready for the
    ROLLBACK. COPY to or from the client is refused: sqlmigrate has no data to send nor anywhere
    to put what comes back.
    """
    from psycopg import ProgrammingError, errors, generators, pq

    copy_states = (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH)
    pgconn.send_query(query)
    yield from generators.send(pgconn)
    first_error, failed_at, count = None, 0, 0
    rows: deque[int] = deque(maxlen=kept)
    ends: list[tuple[int, str]] = []
    while True:
        try:
            result = yield from generators.fetch(pgconn)
        except errors.DatabaseError:
            if first_error is None:
                raise
            result = None  # the server closed the connection after saying why
        if result is None:
            return Outcome(first_error, failed_at, list(rows), ends)
        if kept:
            rows.append(result.command_tuples or 0)
        if watch is not None:
            watch(count, result)
        status, error = result.status, None
        if status == pq.ExecStatus.FATAL_ERROR:
            error = errors.error_from_result(result, encoding=encoding)
        elif status in copy_states:
            yield from _leave_copy(pgconn, pq.ExecStatus(status))
            error = ProgrammingError(COPY_REFUSED[pq.ExecStatus(status).name])
        elif result.command_status in TRANSACTION_ENDS:
            ends.append((count, result.command_status.decode()))
        if error is not None and first_error is None:
            first_error, failed_at = error, count
        count += 1


# The command tags of the statements that end a transaction block.
TRANSACTION_ENDS = frozenset((b"COMMIT", b"ROLLBACK", b"PREPARE TRANSACTION"))
COPY_REFUSED = {
    "COPY_IN": "COPY ... FROM STDIN cannot run in a migration: there is no input to read; "
    "use INSERT, or COPY from a file on the server",
    "COPY_OUT": "COPY ... TO STDOUT cannot run in a migration: its output would be lost; "
    "COPY to a file on the server instead",
    "COPY_BOTH": "COPY in both directions (replication) cannot run in a migration",
}


def _leave_copy(pgconn: Any, status: Any) -> Any:
    """End COPY mode: a COPY FROM STDIN fails (CopyFail), a COPY TO STDOUT's rows are read and
    dropped; either way the server then goes on to its next result."""
    from psycopg import generators, pq
    from psycopg.waiting import Wait

    if status != pq.ExecStatus.COPY_OUT:
        # COPY_IN: CopyFail aborts the statement. COPY_BOTH: CopyDone, then read what is left.
        message = b"COPY FROM STDIN cannot run in a migration" if status == pq.ExecStatus.COPY_IN else None
        while pgconn.put_copy_end(message) == 0:
            while not (yield Wait.W):
                continue
        yield from generators.send(pgconn)
        if status == pq.ExecStatus.COPY_IN:
            return
    while (size := pgconn.get_copy_data(1)[0]) != -1:
        if size == 0:
            while not (yield Wait.R):
                continue
            pgconn.consume_input()
