"""The history table takes its values as bound parameters, never as SQL text.

No value a user controls can carry a quote there today (ids and names come from file names limited
to ``[a-z0-9_]``, checksums are hex), so this goes through :class:`HistoryTable` itself, the one
place that writes those columns, with values that would break naive quoting.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from sqlmigrate_app.history import HistoryTable

HOSTILE_ID = "20240101000000_it's"
HOSTILE_NAME = "x'); DROP TABLE schema_migrations; --"
HOSTILE_CHECKSUM = "\\'\"; SELECT 1 /* %s %(x)s"


def test_history_values_are_bound_parameters(target: Any) -> None:
    history = HistoryTable(connections[target.alias], "schema_migrations")
    history.create()

    history.insert(HOSTILE_ID, HOSTILE_NAME, HOSTILE_CHECKSUM)

    [row] = history.read().values()
    assert (row.id, row.name, row.checksum) == (HOSTILE_ID, HOSTILE_NAME, HOSTILE_CHECKSUM)
    assert target.query("SELECT count(*) FROM schema_migrations WHERE name = %s", [HOSTILE_NAME]) == [(1,)]
    assert history.delete(HOSTILE_ID)
    assert "schema_migrations" in target.tables() and history.read() == {}
