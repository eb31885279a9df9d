"""The floor under sqlmigrate_up for one migration: a bare psycopg process, no Django, sending
BEGIN, the UP section, the history INSERT and COMMIT as one query.

    python benchmarks/one_round_trip.py DATABASE_URL FILE.sql

``run.py`` times it next to ``sqlmigrate_up`` so the report can say how much of a migration's
cost is the server's and how much is start-up.
"""

import hashlib
import sys
from pathlib import Path

import psycopg


def main(url: str, path: str) -> None:
    text = Path(path).read_text(encoding="utf-8")
    up = text.split("-- UP\n", 1)[1].split("-- DOWN\n", 1)[0]
    migration_id = path.rsplit("/", 1)[-1].removesuffix(".sql")
    checksum = hashlib.sha256(text.encode()).hexdigest()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (id VARCHAR(255) PRIMARY KEY, name VARCHAR(255) NOT NULL,"
            " executed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, checksum VARCHAR(64) NOT NULL)"
        )
        history = f"INSERT INTO schema_migrations (id, name, checksum) VALUES ('{migration_id}', 'x', '{checksum}')"
        conn.execute(f"BEGIN;\n{up};\n{history};\nCOMMIT")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
