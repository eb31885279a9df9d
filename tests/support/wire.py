"""What a PostgreSQL connection sends, read from libpq's own protocol trace."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import psycopg
from django.db import connections


def queries_on_the_wire(alias: str, trace: Path, run: Callable[[], object]) -> list[str]:
    """The text of every simple-query message the connection ``alias`` sends during ``run()``."""
    connection = connections[alias]
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with trace.open("w") as out:
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        try:
            run()
        finally:
            pgconn.untrace()
    # One message per entry; a query's own newlines stay inside its entry.
    messages = re.split(r"\n(?=[FB]\t\d+\t)", trace.read_text())
    return [message.split("\tQuery\t", 1)[1].strip().strip('"') for message in messages if "\tQuery\t" in message]
