"""History rows another tool wrote, with ids and names sqlmigrate would never write: a newline
(that could pass for a line of output), a tab, terminal control characters, very long text,
non-ASCII, HTML, nothing at all. No file has these ids: each is a ``missing`` migration."""

from __future__ import annotations

from typing import Any

ODD_IDS = [
    "20240101000009_newline\n✅ Executed | 20240101000010_fake | Fake",
    "20240101000011_tab\there",
    "20240101000012_control\x1b[2J\x07\u202e",
    "20240101000013_" + "long" * 1000,
    "20240101000014_ünïcödé_日本",
    "20240101000015_<script>alert(1)</script>",
    "",
]
# Another tool's table of sqlmigrate's shape, with text columns: ids longer than VARCHAR(255) fit.
TEXT_HISTORY = (
    "CREATE TABLE schema_migrations (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " executed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, checksum TEXT NOT NULL)"
)


def add_odd_rows(target: Any) -> None:
    """A history row per odd id, its name as odd."""
    for odd in ODD_IDS:
        target.query(
            "INSERT INTO schema_migrations (id, name, checksum) VALUES (%s, %s, %s)", [odd, f"name {odd}", "0" * 64]
        )
