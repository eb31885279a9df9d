"""Statement handling: what the server parses, no-transaction migrations, error lines."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sqlmigrate_app.directory import load_directory
from sqlmigrate_app.statements import Statement, refusal_in_transaction, split

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("target", ["sqlite"], indirect=True)

PG_TRICKY = """\
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); -- a comment; with a semicolon
/* a block comment; with one too */
INSERT INTO notes VALUES (1, 'semi;colon'), (2, E'it\\'s; escaped'), (3, $$dollar; quoted$$);
CREATE FUNCTION add_one(x INTEGER) RETURNS INTEGER LANGUAGE plpgsql AS $body$
BEGIN
  RETURN x + 1; -- inside the body
END;
$body$;
CREATE FUNCTION add_two(x INTEGER) RETURNS INTEGER LANGUAGE sql
BEGIN ATOMIC
  SELECT x + 1;
  SELECT x + 2;
END;
DO $$
BEGIN
  INSERT INTO notes VALUES (4, 'from; DO');
END
$$;
"""


@pg_only
def test_postgres_sections_are_parsed_by_the_server(target):
    target.migration(
        "20240101000000_tricky", PG_TRICKY, "DROP FUNCTION add_two; DROP FUNCTION add_one; DROP TABLE notes;"
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT body FROM notes ORDER BY id") == [
        ("semi;colon",),
        ("it's; escaped",),
        ("dollar; quoted",),
        ("from; DO",),
    ]
    assert target.query("SELECT add_one(1), add_two(1)") == [(2, 3)]
    assert target.call("sqlmigrate_down").code == 0
    assert "notes" not in target.tables()


@pg_only
def test_tricky_sql_also_works_split_in_a_no_transaction_migration(target):
    target.migration(
        "20240101000000_tricky", PG_TRICKY, "DROP FUNCTION add_two; DROP FUNCTION add_one; DROP TABLE notes;",
        header="-- sqlmigrate: no-transaction\n",
    )  # fmt: skip

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT count(*) FROM notes") == [(4,)]
    assert target.query("SELECT add_one(1), add_two(1)") == [(2, 3)]


@sqlite_only
def test_sqlite_trigger_bodies_strings_and_comments(target):
    up = """\
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); -- comment; here
CREATE TABLE audit (note_id INTEGER, what TEXT);
CREATE TRIGGER notes_audit AFTER INSERT ON notes
BEGIN
  INSERT INTO audit VALUES (NEW.id, 'inserted; really');
  UPDATE audit SET what = what || '!' WHERE note_id = NEW.id;
END;
/* block; comment */
INSERT INTO notes VALUES (1, 'semi;colon');
"""
    target.migration("20240101000000_trigger", up, "DROP TABLE audit; DROP TABLE notes;")

    assert target.call("sqlmigrate_up").code == 0
    assert target.query("SELECT body FROM notes") == [("semi;colon",)]
    assert target.query("SELECT note_id, what FROM audit") == [(1, "inserted; really!")]


@pg_only
def test_no_transaction_index_concurrently_records_history_after_the_last_statement(target):
    target.migration("20240101000000_things", "CREATE TABLE things (id INTEGER, name TEXT);", "DROP TABLE things;")
    assert target.call("sqlmigrate_up").code == 0
    target.migration(
        "20240101000001_index",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS things_name ON things (name);\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS things_id ON things (id);",
        "DROP INDEX CONCURRENTLY IF EXISTS things_id;\nDROP INDEX CONCURRENTLY IF EXISTS things_name;",
        header="-- sqlmigrate: no-transaction\n",
    )

    assert target.call("sqlmigrate_up").code == 0
    assert target.query("SELECT indexname FROM pg_indexes WHERE tablename = 'things' ORDER BY 1") == [
        ("things_id",),
        ("things_name",),
    ]
    assert target.history() == ["20240101000000_things", "20240101000001_index"]
    assert target.call("sqlmigrate_down").code == 0
    assert target.query("SELECT indexname FROM pg_indexes WHERE tablename = 'things'") == []


def test_failing_no_transaction_statement_says_what_already_ran(target):
    target.migration(
        "20240101000000_steps",
        "CREATE TABLE one (id INTEGER);\nCREATE TABLE two (id INTEGER);\nINSERT INTO nowhere VALUES (1);\n"
        "CREATE TABLE three (id INTEGER);",
        header="-- sqlmigrate: no-transaction\n",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    error = result.err.strip().splitlines()[-1]
    assert "20240101000000_steps.sql:5:" in error
    assert "no-transaction: 2 of 4 statements had already run (lines 3, 4)" in error
    assert {"one", "two"} <= target.tables() and "three" not in target.tables()
    assert target.history() == []  # written only after the last statement succeeds
    (target.directory / "20240101000000_steps.sql").unlink()
    target.migration(
        "20240101000001_one_step",
        "CREATE TABLE four (id INTEGER);\nINSERT INTO nowhere VALUES (1);",
        header="-- sqlmigrate: no-transaction\n",
    )
    one = target.call("sqlmigrate_up")
    assert "no-transaction: 1 of 2 statements had already run (line 3);" in one.err  # not "(lines 3)"


REFUSED = [
    "CREATE INDEX CONCURRENTLY things_name ON things (name);",
    "DROP INDEX CONCURRENTLY things_name;",
    "REINDEX TABLE CONCURRENTLY things;",
    "REINDEX (VERBOSE) SCHEMA public;",
    "REINDEX DATABASE other;",
    "ALTER DATABASE other SET TABLESPACE pg_default;",
    "VACUUM things;",
    "CLUSTER;",
    "CLUSTER VERBOSE;",
    "CREATE DATABASE other;",
    "DROP DATABASE other;",
    "CREATE TABLESPACE space LOCATION '/tmp';",
    "DROP TABLESPACE space;",
    "ALTER SYSTEM SET work_mem = '8MB';",
    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS things_id ON things (id);",
    "DROP INDEX CONCURRENTLY IF EXISTS things_name;",
    "REINDEX (CONCURRENTLY) TABLE things;",
    "REINDEX (VERBOSE, CONCURRENTLY on) TABLE things;",
    "REINDEX (concurrently 'true') INDEX things_name;",
    "ALTER TABLE things DETACH PARTITION things_1 CONCURRENTLY;",
    "ALTER TABLE IF EXISTS ONLY public.things DETACH PARTITION public.things_1 CONCURRENTLY;",
    "CREATE SUBSCRIPTION sub CONNECTION 'dbname=none' PUBLICATION pub;",
    "CREATE SUBSCRIPTION sub CONNECTION 'dbname=none' PUBLICATION a, b WITH (enabled = false, create_slot);",
    "DROP SUBSCRIPTION IF EXISTS sub;",
    "DISCARD ALL;",
]


@pg_only
@pytest.mark.parametrize("statement", REFUSED)
def test_statements_refused_in_a_transaction_are_caught_before_anything_runs(target, statement):
    target.migration("20240101000000_first", "CREATE TABLE first (id INTEGER);", "DROP TABLE first;")
    target.migration("20240101000001_bad", f"CREATE TABLE things (id INTEGER, name TEXT);\n{statement}")

    validated = target.call("sqlmigrate_validate")
    applied = target.call("sqlmigrate_up")

    for result in (validated, applied):
        assert result.code in (1, 7), result.text
        assert "20240101000001_bad.sql:3:" in result.text
        assert "add a '-- sqlmigrate: no-transaction' line before -- UP" in result.text
    assert "first" not in target.tables() and "things" not in target.tables()


def test_unknown_directive_names_file_and_line(target):
    target.migration(
        "20240101000000_typo", "CREATE TABLE t (id INTEGER);", header="-- one\n-- sqlmigrate: no-transactoin\n"
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000000_typo.sql:2: unknown directive 'no-transactoin'" in result.err
    assert "t" not in target.tables()


@pg_only
def test_error_line_comes_from_the_server_position(target):
    target.migration(
        "20240101000000_typo", "-- comment\nCREATE TABLE a (id INTEGER);\n\nSELEC 1;\nCREATE TABLE b (id INTEGER);"
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000000_typo.sql:5: 20240101000000_typo failed: syntax error" in result.err


def test_error_line_without_position_is_found_from_the_one_execution(target):
    # A unique violation carries no position: the statements completed before it give its line.
    up = "CREATE TABLE u (id INTEGER PRIMARY KEY);\nINSERT INTO u VALUES (1);\n\n\n"
    up += "INSERT INTO u VALUES (1);\nINSERT INTO u VALUES (2);"
    target.migration("20240101000000_dup", up)

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000000_dup.sql:6: 20240101000000_dup failed:" in result.err
    assert "u" not in target.tables() and target.history() == []


# The scanner behind split() and the no-transaction check -----------------------------------

HIDDEN = {  # hint words where PostgreSQL reads no statement: none of these may be flagged
    "string": "SELECT 'x; VACUUM t; CREATE DATABASE d';",
    "doubled quote": "SELECT 'it''s; VACUUM t';",
    "E string": "SELECT E'it\\'s; VACUUM t; \\\\';",
    "quoted identifier": 'CREATE TABLE "x; VACUUM t" (id INTEGER);',
    "doubled identifier quote": 'CREATE TABLE "a"";VACUUM" (id INTEGER);',
    "dollar quote": "SELECT $$; VACUUM t; $$;",
    "tagged dollar quote": "SELECT $body$ $$; VACUUM t; $$ $body$;",
    "line comment": "SELECT 1; -- ; VACUUM t;\n",
    "nested block comment": "/* a /* b; */ ; VACUUM t; */ SELECT 1;",
    "word inside a statement": "SELECT 1 AS vacuum; CREATE TABLE database (tablespace INTEGER);",
}


@pytest.mark.parametrize("sql", HIDDEN.values(), ids=HIDDEN.keys())
def test_hint_words_in_quotes_and_comments_are_not_statements(sql):
    assert refusal_in_transaction(sql, 1) is None


@pg_only
def test_quoted_hint_words_really_run_inside_a_transaction(target):
    # The server agrees: every one of them runs in a transactional migration.
    target.migration("20240101000000_hidden", "\n".join(HIDDEN.values()))

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert {"x; VACUUM t", 'a";VACUUM', "database"} <= target.tables()


TRICKY_PREFIX = """\
SELECT 'a;b', E'c\\';d' AS "e;f", $$g;h$$, $t$ $$; $t$; -- i;
/* j /* k; */ l; */ SELECT a$b$c FROM (SELECT 1 AS a$b$c) AS s;
"""


@pytest.mark.parametrize("statement", REFUSED)
def test_refused_statements_after_semicolons_in_quotes_and_comments_are_found(statement):
    sql = f"{TRICKY_PREFIX}\n  {statement.lower()}\n"
    refused = refusal_in_transaction(sql, 10)
    assert refused is not None
    assert refused.line == 13
    assert "cannot run inside a transaction" in refused.message
    assert split(sql, 10)[-1] == Statement(statement.lower(), 13)


# Each of these runs inside a transaction block (PostgreSQL 15): none may be refused.
ALLOWED_IN_TRANSACTION = """\
CREATE TABLE things (id INTEGER, name TEXT);
CREATE INDEX concurrently_idx ON things (name);
DROP INDEX concurrently_idx;
CREATE UNIQUE INDEX concurrently_unique ON things (id);
REINDEX (CONCURRENTLY false) TABLE things;
REINDEX (VERBOSE, CONCURRENTLY 0) TABLE things;
REINDEX (concurrently 'off') TABLE things;
CREATE TABLE parted (n INTEGER) PARTITION BY RANGE (n);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
ALTER TABLE parted DETACH PARTITION parted_1;
DISCARD PLANS;
DISCARD SEQUENCES;
DISCARD TEMP;
CREATE SUBSCRIPTION sub_off CONNECTION 'dbname=none' PUBLICATION pub WITH (connect = false);
CREATE SUBSCRIPTION sub_no_slot CONNECTION '{publisher}' PUBLICATION pub WITH (enabled = off, create_slot = 'false');
ALTER SUBSCRIPTION sub_off SET (slot_name = NONE);
ALTER SUBSCRIPTION sub_no_slot SET (slot_name = NONE);
"""


@pg_only
def test_statements_that_only_look_non_transactional_run_in_a_transactional_migration(target):
    url = urlsplit(target.url)  # the subscription without a slot connects: to this very database
    publisher = f"host={url.hostname} port={url.port} user={url.username} dbname={url.path[1:]}"
    target.migration("20240101000000_lookalikes", ALLOWED_IN_TRANSACTION.format(publisher=publisher))

    try:
        result = target.call("sqlmigrate_up")

        assert result.code == 0, result.text
        assert target.query("SELECT subname FROM pg_subscription ORDER BY 1") == [("sub_no_slot",), ("sub_off",)]
        assert target.query("SELECT indexname FROM pg_indexes WHERE tablename = 'things'") == [("concurrently_unique",)]
    finally:  # no slot to drop, so this needs no publisher; a database with subscriptions cannot be dropped
        for name in ("sub_off", "sub_no_slot"):
            target.query(f"DROP SUBSCRIPTION IF EXISTS {name}")


@pytest.mark.parametrize(
    "statement",
    [
        *ALLOWED_IN_TRANSACTION.split(";\n"),
        "ALTER TABLE parted DETACH PARTITION parted_1 FINALIZE",
        "ALTER TABLE detach DETACH PARTITION concurrently_named",
        "REINDEX (CONCURRENTLY yes) TABLE t",  # not a Boolean to PostgreSQL: it fails, inside the transaction
        "REINDEX (TABLESPACE concurrently_space) TABLE t",
        'CREATE INDEX "concurrently" ON t (a)',
        "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (connect = false, create_slot = true)",
        "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (CREATE_SLOT = 0)",
        "ALTER SUBSCRIPTION s DISABLE",
        "DISCARD TEMPORARY",
    ],
)
def test_lookalikes_of_refused_statements_are_not_refused(statement):
    assert refusal_in_transaction(statement) is None


def test_refused_statement_is_found_whatever_the_layout():
    refused = refusal_in_transaction("SELECT 1; CREATE /* unique? */ UNIQUE\n-- x\nINDEX\tConcurrently i ON t (n)", 1)
    assert refused is not None and refused.line == 1
    refused = refusal_in_transaction("SELECT 1;\n\nalter -- the whole server\n  System SET work_mem = '8MB'", 1)
    assert refused is not None and refused.line == 3
    for allowed in (
        "CREATE INDEX i ON t (concurrently)",
        "REINDEX TABLE schema",
        "ALTER DATABASE d SET work_mem = 1",
        "CLUSTER things USING things_pkey",
        "CLUSTER VERBOSE things",
    ):
        assert refusal_in_transaction(f"SELECT 1;\n{allowed};", 1) is None


def test_split_keeps_quotes_comments_and_routine_bodies_whole():
    sql = TRICKY_PREFIX + (
        "CREATE FUNCTION sign_of(x INTEGER) RETURNS TEXT LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT CASE WHEN x < 0 THEN 'minus; one' ELSE 'plus' END;\nEND;\n"
        "CREATE RULE two AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b);\n"
        "SELECT 'no semicolon at the end'"
    )
    statements = split(sql, 5)
    assert [(statement.line, statement.sql.split()[0]) for statement in statements] == [
        (5, "SELECT"),
        (6, "SELECT"),
        (7, "CREATE"),
        (11, "CREATE"),
        (12, "SELECT"),
    ]
    assert statements[2].sql.endswith("ELSE 'plus' END;\nEND;")
    assert statements[3].sql.endswith("(NOTIFY a; NOTIFY b);")


@pg_only
def test_tricky_statements_run_one_by_one_in_a_no_transaction_migration(target):
    up = TRICKY_PREFIX + (
        "CREATE TABLE t (n INTEGER);\nCREATE TABLE log (what TEXT);\n"
        "CREATE FUNCTION sign_of(x INTEGER) RETURNS TEXT LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT CASE WHEN x < 0 THEN 'minus; one' ELSE 'plus' END;\nEND;\n"
        "CREATE RULE two AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES ('a;'); INSERT INTO log VALUES ('b'));\n"
        "INSERT INTO t VALUES (1);"
    )
    target.migration("20240101000000_tricky", up, header="-- sqlmigrate: no-transaction\n")

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT sign_of(-1), sign_of(1)") == [("minus; one", "plus")]
    assert target.query("SELECT what FROM log ORDER BY what") == [("a;",), ("b",)]


def write_big(directory: Path) -> None:
    """One migration of 50,000 single-row INSERT statements (about 4 MB), as benchmarks/ times."""
    rows = "".join(
        f"INSERT INTO big_rows (name, amount, data) VALUES ('row number {i:06d}', {i * 7 % 1000}, "
        f"""'{{"n": {i}, "even": {str(i % 2 == 0).lower()}}}');\n"""
        for i in range(50_000)
    )
    (directory / "20200101000000_big_insert.sql").write_text(
        "-- UP\n"
        "CREATE TABLE big_rows (id bigserial PRIMARY KEY, name varchar(100) NOT NULL, amount integer, data jsonb);\n"
        f"{rows}"
        "-- DOWN\n"
        "DROP TABLE big_rows;\n"
    )


def test_a_5_mb_migration_with_hint_words_in_every_string_is_scanned_whole(tmp_path):
    # 50,000 INSERTs whose strings all say "database", so the pre-filter lets every statement
    # through to the scanner (how long that takes is measured in benchmarks/, not here).
    write_big(tmp_path)
    [path] = tmp_path.glob("*.sql")
    path.write_text(path.read_text().replace("'row number", "'database row number"))

    [migration] = load_directory(tmp_path).migrations
    statements = split(migration.up.sql, migration.up.line)

    assert len(statements) == 50_001
    assert statements[-1].line == 50_002 and statements[-1].sql.startswith("INSERT INTO big_rows")


def test_no_transaction_migration_failing_at_its_first_statement_says_none_ran(target):
    target.migration(
        "20240101000000_steps",
        "INSERT INTO nowhere VALUES (1);\nCREATE TABLE one (id INTEGER);",
        header="-- sqlmigrate: no-transaction\n",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    error = result.err.strip().splitlines()[-1]
    assert "20240101000000_steps.sql:3:" in error
    assert "no-transaction: none of its 2 statements had run" in error
    assert "one" not in target.tables() and target.history() == []
