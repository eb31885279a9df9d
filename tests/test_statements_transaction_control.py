"""Transaction control, COPY and psql meta-commands in migration files.

A transactional migration must not end or nest the transaction sqlmigrate runs it in; a
no-transaction migration may group statements with BEGIN ... COMMIT, checked when the file is
loaded. COPY from or to the client and psql meta-commands cannot run in any migration. Each is
refused before anything runs, with the file line and the fix.
"""

from __future__ import annotations

import pytest

from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES
from sqlmigrate_app.statements import (
    refusal_in_transaction,
    refusal_without_transaction,
    split,
    split_sqlite,
    transaction_control,
)

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("target", ["sqlite"], indirect=True)
GOOD = "20240101000000_good"
BAD = "20240101000001_bad"
NO_TRANSACTION = "-- sqlmigrate: no-transaction\n"
OWN_TRANSACTION = (
    ": sqlmigrate runs each migration in a transaction of its own, so remove BEGIN/COMMIT, or add "
    "'-- sqlmigrate: no-transaction' before -- UP to group statements yourself"
)


def assert_refused(target, line: int, message: str) -> str:
    """``validate`` (exit 7) and ``up`` (exit 1) both name BAD's line and give one line starting
    with ``message``; nothing ran. Returns that line."""
    where = f"{target.directory / BAD}.sql:{line}: {message}"

    validated = target.call("sqlmigrate_validate")
    applied = target.call("sqlmigrate_up")

    assert validated.code == EXIT_CODES[ProblemKind.BAD_FILE] == 7, validated.text
    assert validated.err.splitlines()[0].startswith(f"bad_file: {where}"), validated.err
    assert applied.code == 1, applied.text
    error: str = applied.err.strip().splitlines()[-1]
    assert error.startswith(where), error
    assert target.tables() == set()  # not the good migration, not even the history table
    return error


def with_good(target, up: str, header: str = "", down: str = "") -> None:
    target.migration(GOOD, "CREATE TABLE good (id INTEGER);", "DROP TABLE good;")
    target.migration(BAD, up, down, header=header)


# Transactional migrations: no transaction control --------------------------------------------

CONTROL = {  # statement: what the message calls it, and what it does
    "BEGIN;": "'BEGIN' starts a transaction inside the migration's transaction",
    "begin transaction isolation level serializable;": "'BEGIN' starts a transaction inside",
    "BEGIN IMMEDIATE;": "'BEGIN' starts a transaction inside",  # SQLite
    "START TRANSACTION;": "'START TRANSACTION' starts a transaction inside",
    "COMMIT;": "'COMMIT' ends the migration's transaction",
    "COMMIT TRANSACTION;": "'COMMIT' ends",  # SQLite and PostgreSQL
    "COMMIT AND CHAIN;": "'COMMIT AND CHAIN' ends",
    "END;": "'END' ends",
    "END TRANSACTION;": "'END' ends",
    "ROLLBACK;": "'ROLLBACK' ends",
    "ROLLBACK WORK AND CHAIN;": "'ROLLBACK AND CHAIN' ends",
    "ABORT;": "'ABORT' ends",
}


@pytest.mark.parametrize("statement", CONTROL, ids=CONTROL.values())
def test_transaction_control_in_a_transactional_migration_is_refused_before_anything_runs(target, statement):
    with_good(target, f"CREATE TABLE a (id INTEGER);\n-- the next one:\n  {statement}\nCREATE TABLE b (id INTEGER);")

    error = assert_refused(target, 4, CONTROL[statement])

    assert error.endswith(OWN_TRANSACTION)


def test_a_commit_halfway_no_longer_commits_half_the_migration(target):
    # Before: on PostgreSQL the COMMIT committed table a and the history row, then 1/0 failed.
    with_good(target, "BEGIN; CREATE TABLE a (id INTEGER); COMMIT; CREATE TABLE b (id INTEGER); SELECT 1/0;")

    error = assert_refused(target, 2, "'BEGIN' starts a transaction inside the migration's transaction")

    assert error == (
        f"{target.directory / BAD}.sql:2: 'BEGIN' starts a transaction inside the migration's transaction"
        + OWN_TRANSACTION
    )


TWO_PHASE = ["PREPARE TRANSACTION 'deploy';", "COMMIT PREPARED 'deploy';", "ROLLBACK PREPARED 'deploy';"]


@pytest.mark.parametrize("header", ["", NO_TRANSACTION], ids=["transactional", "no-transaction"])
@pytest.mark.parametrize("statement", TWO_PHASE)
def test_two_phase_commit_is_refused_in_any_migration(target, statement, header):
    with_good(target, f"CREATE TABLE things (id INTEGER);\n{statement}", header=header)
    name = " ".join(statement.split()[:2])

    assert_refused(
        target,
        3 + bool(header),
        f"'{name}' is two-phase commit, which migrations cannot take part in "
        "(a prepared transaction outlives the session); remove it",
    )


def test_savepoints_run_inside_the_migrations_transaction(target):
    up = (
        "CREATE TABLE t (n INTEGER);\nINSERT INTO t VALUES (1);\nSAVEPOINT before_two;\nINSERT INTO t VALUES (2);\n"
        "ROLLBACK TRANSACTION TO SAVEPOINT before_two;\nSAVEPOINT three;\nINSERT INTO t VALUES (3);\nRELEASE three;\n"
        "RELEASE SAVEPOINT before_two;"
    )
    target.migration("20240101000000_savepoints", up, "DROP TABLE t;")

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT n FROM t ORDER BY n") == [(1,), (3,)]
    assert target.history() == ["20240101000000_savepoints"]


@pg_only
def test_transaction_words_in_strings_comments_and_bodies_are_not_transaction_control(target):
    up = """\
SELECT 'BEGIN; COMMIT;' AS "end"; -- COMMIT;
/* END; /* ROLLBACK; */ */ CREATE TABLE log (what TEXT);
DO $$
BEGIN
  INSERT INTO log VALUES ('from DO');
END
$$;
CREATE FUNCTION sign_of(x INTEGER) RETURNS TEXT LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x < 0 THEN 'minus'
  END;
END;
CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  INSERT INTO log VALUES ('trigger');
  RETURN NEW;
END;
$body$;
CREATE TABLE t (n INTEGER);
CREATE TRIGGER t_log AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION log_it();
INSERT INTO t SELECT CASE WHEN true THEN 1
END;
"""
    target.migration("20240101000000_words", up)

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT what FROM log ORDER BY what") == [("from DO",), ("trigger",)]
    assert target.query("SELECT sign_of(-1)") == [("minus",)]


@sqlite_only
def test_sqlite_trigger_bodies_stay_one_statement_for_the_check(target):
    # Cut at its inner semicolons, the body's END would look like transaction control.
    up = """\
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
CREATE TABLE audit (note_id INTEGER, what TEXT);
CREATE TRIGGER IF NOT EXISTS notes_audit AFTER INSERT ON notes FOR EACH ROW WHEN NEW.id > 0
BEGIN
  INSERT INTO audit VALUES (NEW.id, CASE WHEN NEW.body LIKE '%;%' THEN 'semicolon; inside' ELSE 'plain' END);
  UPDATE audit SET what = what || '!' WHERE note_id = NEW.id;
END;
INSERT INTO notes VALUES (1, 'a;b'), (2, 'ab');
"""
    target.migration("20240101000000_trigger", up, "DROP TABLE audit;\nDROP TABLE notes;")

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT note_id, what FROM audit ORDER BY note_id") == [
        (1, "semicolon; inside!"),
        (2, "plain!"),
    ]


# no-transaction migrations: BEGIN ... COMMIT groups --------------------------------------------


@sqlite_only
def test_sqlite_table_rebuild_recipe_groups_statements_in_a_no_transaction_migration(target):
    target.migration("20240101000000_t", "CREATE TABLE t (id INTEGER, name TEXT);\nINSERT INTO t VALUES (1, 'a');")
    up = """\
PRAGMA foreign_keys=OFF;
BEGIN;
CREATE TABLE t_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
INSERT INTO t_new SELECT id, name FROM t;
DROP TABLE t;
ALTER TABLE t_new RENAME TO t;
COMMIT;
PRAGMA foreign_keys=ON;"""
    target.migration("20240101000001_rebuild", up, header=NO_TRANSACTION)

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT id, name FROM t") == [(1, "a")]
    assert "t_new" not in target.tables()
    assert target.history() == ["20240101000000_t", "20240101000001_rebuild"]


GROUP_FAILS = {
    "a statement inside it": ("INSERT INTO nowhere VALUES (1);", 7),
    "its COMMIT (a deferred foreign key)": ("INSERT INTO child VALUES (42);", 8),
}


@pytest.mark.parametrize(("failing", "line"), GROUP_FAILS.values(), ids=GROUP_FAILS.keys())
def test_a_group_that_fails_is_rolled_back_and_the_report_says_what_stayed(target, failing, line):
    target.query("PRAGMA foreign_keys = ON" if target.vendor == "sqlite" else "SELECT 1")
    up = f"""\
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (parent_id INTEGER REFERENCES parent DEFERRABLE INITIALLY DEFERRED);
BEGIN;
INSERT INTO parent VALUES (1);
{failing}
COMMIT;
CREATE TABLE after (id INTEGER);"""
    target.migration(BAD, up, header=NO_TRANSACTION)

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert result.err.startswith(f"{target.directory / BAD}.sql:{line}: {BAD} failed: ")
    assert result.err.endswith(
        "[no-transaction: 2 of 7 statements had already run (lines 3, 4); "
        "the group begun on line 5 was rolled back; it was not recorded]"
    )
    assert target.query("SELECT count(*) FROM parent") == [(0,)]
    assert "after" not in target.tables() and target.history() == []
    # The session is not left in the failed transaction: the fixed file runs on the same one.
    target.migration(BAD, up.replace(failing, "INSERT INTO child VALUES (1);"), header=NO_TRANSACTION)
    target.query("DROP TABLE child")
    target.query("DROP TABLE parent")
    assert target.call("sqlmigrate_up").code == 0
    assert target.query("SELECT count(*) FROM child") == [(1,)]


@pg_only
def test_postgres_group_then_index_concurrently_in_a_no_transaction_migration(target):
    target.migration("20240101000000_t", "CREATE TABLE t (id INTEGER, name TEXT);\nINSERT INTO t VALUES (1, 'a');")
    up = """\
START TRANSACTION;
CREATE TABLE t_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
INSERT INTO t_new SELECT id, name FROM t;
SAVEPOINT copied;
DROP TABLE t;
ALTER TABLE t_new RENAME TO t;
RELEASE copied;
END;
CREATE INDEX CONCURRENTLY t_name ON t (name);"""
    target.migration("20240101000001_rebuild", up, header=NO_TRANSACTION)

    result = target.call("sqlmigrate_up")

    assert result.code == 0, result.text
    assert target.query("SELECT id, name FROM t") == [(1, "a")]
    assert target.query("SELECT indexname FROM pg_indexes WHERE tablename = 't' ORDER BY 1") == [
        ("t_name",),
        ("t_new_pkey",),
    ]


BAD_GROUPS = {  # UP section (its first line is line 3): line, message
    "nested": (
        "BEGIN;\nCREATE TABLE a (id INTEGER);\nBEGIN;\nCOMMIT;",
        5,
        "'BEGIN' inside the group opened on line 3: groups do not nest; COMMIT that one first",
    ),
    "commit without begin": (
        "CREATE TABLE a (id INTEGER);\nCOMMIT;",
        4,
        "'COMMIT' with no BEGIN before it: outside a group each statement commits on its own; remove it",
    ),
    "rollback after the group": (
        "BEGIN;\nCOMMIT;\n  ROLLBACK;",
        5,
        "'ROLLBACK' with no BEGIN before it: outside a group each statement commits on its own; remove it",
    ),
    "never committed": (
        "CREATE TABLE a (id INTEGER);\nBEGIN;\nCREATE TABLE b (id INTEGER);\n",
        4,
        "BEGIN on line 4 has no COMMIT: end the group before the section ends",
    ),
    "savepoint outside": (
        "CREATE TABLE a (id INTEGER);\nSAVEPOINT s;",
        4,
        "'SAVEPOINT' outside BEGIN ... COMMIT: savepoints exist only inside a transaction; "
        "open a group with BEGIN first",
    ),
    "release outside": ("BEGIN;\nSAVEPOINT s;\nCOMMIT;\nRELEASE s;", 6, "'RELEASE' outside BEGIN ... COMMIT"),
    "rollback to outside": ("ROLLBACK TO SAVEPOINT s;", 3, "'ROLLBACK TO' outside BEGIN ... COMMIT"),
    "concurrently inside": (
        "BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (n);\nCOMMIT;",
        4,
        "'CREATE INDEX CONCURRENTLY ...' cannot run inside a transaction, and the group opened on line 3 "
        "is one: move it after that group's COMMIT",
    ),
    "vacuum inside": ("BEGIN;\n\nVACUUM;\nCOMMIT;", 5, "'VACUUM ...' cannot run inside a transaction, and the group"),
    "chain": (
        "BEGIN;\nCOMMIT AND CHAIN;\nCOMMIT;",
        4,
        "'COMMIT AND CHAIN' opens the next group itself, which sqlmigrate does not follow: write COMMIT, then BEGIN",
    ),
}


@pytest.mark.parametrize(("up", "line", "message"), BAD_GROUPS.values(), ids=BAD_GROUPS.keys())
def test_badly_formed_groups_are_refused_before_anything_runs(target, up, line, message):
    with_good(target, up, header=NO_TRANSACTION)

    assert_refused(target, line, message)


def test_a_group_left_open_in_the_down_section_is_refused_too(target):
    with_good(target, "SELECT 1;", header=NO_TRANSACTION, down="DROP TABLE x;\nBEGIN;\nDROP TABLE y;")

    assert_refused(target, 6, "BEGIN on line 6 has no COMMIT: end the group before the section ends")


TRANSACTION_CONTROL = {
    "BEGIN;": "begin",
    "  -- comment\n/* another */ begin work;": "begin",
    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY": "begin",
    "BEGIN DEFERRED TRANSACTION;": "begin",
    "start transaction;": "begin",
    "COMMIT;": "commit",
    "COMMIT WORK AND NO CHAIN;": "commit",
    "END;": "commit",
    "end transaction": "commit",
    "ROLLBACK;": "rollback",
    "ROLLBACK TRANSACTION;": "rollback",
    "ABORT WORK;": "rollback",
    "ROLLBACK TO s;": None,
    "ROLLBACK WORK TO SAVEPOINT s;": None,
    "ROLLBACK TRANSACTION TO s;": None,
    "SAVEPOINT s;": None,
    "RELEASE s;": None,
    "RELEASE SAVEPOINT s;": None,
    "BEGIN ATOMIC SELECT 1; END;": None,
    "START something;": None,
    "PREPARE TRANSACTION 'x';": None,
    "COMMIT PREPARED 'x';": None,
    "ROLLBACK PREPARED 'x';": None,
    "PREPARE q AS SELECT 1;": None,
    "SELECT 'BEGIN';": None,
    "-- COMMIT\nSELECT 1;": None,
    '"begin";': None,
    "": None,
}


@pytest.mark.parametrize(("statement", "kind"), TRANSACTION_CONTROL.items(), ids=repr)
def test_transaction_control_tells_what_a_statement_does_to_a_group(statement, kind):
    assert transaction_control(statement) == kind


@pytest.mark.parametrize("splitter", [split, split_sqlite])
def test_transaction_control_reads_the_statements_the_splitters_return(splitter):
    sql = "PRAGMA x;\n-- open\nBEGIN;\nINSERT INTO t VALUES (';');\nSAVEPOINT a;\n/* c */ COMMIT;\nSELECT 'END';"

    kinds = [transaction_control(statement.sql) for statement in splitter(sql, 3)]

    assert kinds == [None, "begin", None, None, "commit", None]


# COPY and psql meta-commands: never in a migration --------------------------------------------

PG_DUMP = """\
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE TABLE public.t (a integer, b text);

COPY public.t (a, b) FROM stdin;
1	one
2	it's two
\\.

"""
COPY_FROM_STDIN = (
    "COPY ... FROM stdin: COPY data blocks (pg_dump's plain format) are not supported; "
    "dump with --inserts (or --column-inserts), or COPY from a file on the server"
)


@pytest.mark.parametrize("header", ["", NO_TRANSACTION], ids=["transactional", "no-transaction"])
def test_pg_dump_plain_format_data_is_refused_before_anything_runs(target, header):
    # Before: PostgreSQL failed with 'syntax error at or near "1"' on the first data row.
    with_good(target, PG_DUMP, header=header)

    assert_refused(target, 6 + bool(header), COPY_FROM_STDIN)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("copy t from STDIN with (format csv);", COPY_FROM_STDIN),
        ("COPY (SELECT a FROM t WHERE b IN (SELECT b FROM u)) TO STDOUT;", "COPY ... TO stdout: a migration has no"),
        ("COPY t TO stdout WITH CSV HEADER;", "COPY ... TO stdout: a migration has no client to send the rows to"),
    ],
)
def test_copy_from_or_to_the_client_is_refused_before_anything_runs(target, statement, message):
    with_good(target, f"CREATE TABLE t (a INTEGER, b TEXT);\n{statement}")

    assert_refused(target, 3, message)


@pytest.mark.parametrize(
    ("up", "line", "command"),
    [
        ("\\connect mydb\nCREATE TABLE t (a INTEGER);", 2, "\\connect"),
        ("\\restrict Xk2yZ\nCREATE TABLE t (a INTEGER);\n\\unrestrict Xk2yZ\n", 2, "\\restrict"),
        ("CREATE TABLE t (a INTEGER);\n  \\set ON_ERROR_STOP on\nSELECT 1;", 3, "\\set"),
    ],
)
def test_psql_meta_commands_are_refused_before_anything_runs(target, up, line, command):
    with_good(target, up)

    assert_refused(target, line, f"psql meta-command '{command}' is not SQL; remove it")


def test_copy_with_server_files_and_backslashes_inside_statements_are_not_refused():
    sql = (
        "COPY t FROM '/srv/data.csv' WITH (FORMAT csv);\nCOPY (SELECT a FROM stdin) TO '/tmp/out';\n"
        "SELECT E'\\\\connect', '\\.';\nCREATE TABLE copy (stdin INTEGER);"
    )
    assert refusal_in_transaction(sql) is None
    assert refusal_without_transaction(sql) is None
