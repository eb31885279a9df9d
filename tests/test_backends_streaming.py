"""A section travels whole, in one round trip; its results are read one at a time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connections, transaction

from sqlmigrate_app.backends import StatementError, backend_for
from sqlmigrate_app.files import Section
from sqlmigrate_app.statements import Statement

from .support.target import ROOT

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
MIGRATION = "20240101000000_fill"
NEXT = "20240101000001_next"


def test_error_deep_inside_a_large_section_names_its_line(target):
    inserts = [f"INSERT INTO filled VALUES ({i});" for i in range(5000)]
    inserts[2999] = "INSERT INTO filled (missing_column) VALUES (2999);"
    target.migration(MIGRATION, "CREATE TABLE filled (id INTEGER);\n" + "\n".join(inserts), "DROP TABLE filled;")

    result = target.call("sqlmigrate_up")

    # Line 1 is "-- UP", line 2 the CREATE TABLE, line 3 the first INSERT.
    assert result.code == 1
    assert f"{MIGRATION}.sql:{3 + 2999}: {MIGRATION} failed:" in result.err and "missing_column" in result.err
    assert "filled" not in target.tables() and target.history() == []


@pg_only
def test_notices_and_query_results_inside_a_section_are_ignored(target):
    target.migration(
        MIGRATION,
        "CREATE TABLE filled (id INTEGER);\n"
        "DO $$ BEGIN RAISE NOTICE 'a notice'; RAISE WARNING 'a warning'; END $$;\n"
        "SELECT generate_series(1, 1000);\n"
        "INSERT INTO filled SELECT generate_series(1, 3);\n"
        "SELECT count(*) FROM filled;",
        "DROP TABLE filled;",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT count(*) FROM filled") == [(3,)]
    assert target.history() == [MIGRATION]


@pg_only
@pytest.mark.parametrize(
    "copy, transactional, ran",
    [
        ("COPY filled FROM STDIN;", True, None),
        ("COPY (SELECT generate_series(1, 100000)) TO STDOUT;", True, None),
        ("COPY filled FROM STDIN;", False, [2, 3]),
    ],
)
def test_copy_to_or_from_the_client_is_refused_and_the_connection_stays_usable(target, copy, transactional, ran):
    """A file holding such a COPY is refused when it is loaded
    (test_statements_transaction_control.py), so this second line of defence is driven here through
    the backend, as the runner drives it: a section in the runner's outermost transaction, or
    statement by statement in autocommit."""
    backend = backend_for(connections[target.alias])
    up = f"CREATE TABLE filled (id INTEGER);\nINSERT INTO filled VALUES (1);\n{copy}\nINSERT INTO filled VALUES (2);"
    section = Section(up, 2)
    statements_ran: list[Statement] = []

    with pytest.raises(StatementError) as failed:
        if transactional:
            with transaction.atomic(using=target.alias):
                backend.run_section(backend.raw_cursor(), section, may_commit=True)
        else:
            backend.run_statements(backend.raw_cursor(), backend.split(section), statements_ran)

    direction = "FROM STDIN" if "STDIN" in copy else "TO STDOUT"
    assert f"COPY ... {direction} cannot run in a migration" in str(failed.value)
    assert failed.value.line == 4  # counted from the results before it: the section ran once
    if transactional:
        assert "filled" not in target.tables()
    else:
        assert [statement.line for statement in statements_ran] == ran
        assert target.query("SELECT id FROM filled") == [(1,)]
        target.query("DROP TABLE filled")

    # The same connection (in-process) goes on working.
    target.migration(MIGRATION, "CREATE TABLE IF NOT EXISTS filled (id INTEGER);", "DROP TABLE filled;")
    target.migration(NEXT, "INSERT INTO filled VALUES (3);", "DELETE FROM filled;")
    result = target.call("sqlmigrate_up")
    assert result.code == 0, result.text
    assert target.history() == [MIGRATION, NEXT]


@pg_only
def test_a_section_run_first_in_a_transaction_begins_it(target):
    """Django's atomic leaves BEGIN to the first query: the section must send it, or the
    server would commit the section on its own."""
    connections[target.alias].close()
    backend = backend_for(connections[target.alias])
    with pytest.raises(ZeroDivisionError), transaction.atomic(using=target.alias):
        backend.run_section(
            backend.raw_cursor(), Section("CREATE TABLE filled (id INTEGER);\nINSERT INTO filled VALUES (1);", 2)
        )
        1 / 0  # noqa: B018

    assert "filled" not in target.tables()


@pg_only
def test_the_lock_leaves_the_session_settings_as_it_found_them(target):
    target.migration(MIGRATION, "CREATE TABLE filled (id INTEGER);", "DROP TABLE filled;")
    before = target.query("SHOW client_connection_check_interval")

    assert target.call("sqlmigrate_up").code == 0

    assert target.query("SHOW client_connection_check_interval") == before


# Runs its arguments and prints their peak RSS. Measured from the child's own rusage the peak
# would include pytest's memory: Linux keeps the high-water mark of the process forked before exec.
PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def peak_rss_mb(target) -> float:
    """Run ``manage.py sqlmigrate_up`` in a child process and return its peak resident memory."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, sys.executable, str(ROOT / "manage.py"), "sqlmigrate_up"]
        + ["--dir", str(target.directory)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stderr.splitlines()[-1]) / 1024  # Linux: KB


def insert_lines(rows: list[str], per_statement: int) -> str:
    """INSERTs of ``per_statement`` rows each, padded so any grouping takes the same bytes."""
    lines = []
    for i, row in enumerate(rows):
        head = "INSERT INTO filled VALUES " if i % per_statement == 0 else " " * len("INSERT INTO filled VALUES ")
        tail = ";" if (i + 1) % per_statement == 0 else ","
        lines.append(f"{head}{row}{tail}\n")
    return "".join(lines)


@pg_only
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KB on Linux")
def test_peak_memory_does_not_grow_with_the_number_of_statements(target):
    """50,000 one-row INSERTs take no more memory than 50 INSERTs of 1,000 rows, the same bytes.
    (cursor.execute kept 50,000 results until the last arrived: about 12 MB more.)"""
    rows = [f"({i}, 'row number {i:06d}', '{{\"n\": {i}}}')" for i in range(50_000)]
    many, few = insert_lines(rows, 1), insert_lines(rows, 1000)
    assert len(few) == len(many)
    table = "CREATE TABLE filled (id integer, name text, data jsonb);\n"

    target.migration(MIGRATION, table + few, "DROP TABLE filled;")
    few_mb = peak_rss_mb(target)
    target.query("DROP TABLE filled")
    target.query("DELETE FROM schema_migrations")
    target.migration(MIGRATION, table + many, "DROP TABLE filled;")
    many_mb = peak_rss_mb(target)

    assert target.query("SELECT count(*) FROM filled") == [(50_000,)]
    assert many_mb - few_mb < 4, f"peak RSS: {many_mb:.1f} MB for 50,000 statements, {few_mb:.1f} MB for 50"
