"""The ``--sql`` script is what ``up`` runs: applied by psql (or the sqlite3 shell) to one
database, it leaves the schema, the data and the history rows ``sqlmigrate_up`` leaves in an
identical one, for the project's own migration sets; psql's ``:name`` variables are made inert
(psql itself is the oracle, PostgreSQL's lexer says the server reads the same tokens); the
session is put back between migrations and the history table named as ``up`` names it; and
``--plan`` and ``--sql`` refuse an unmet ``requires=`` as ``up`` does.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pglast
import pytest
from django.core.management import call_command
from django.db import connections
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlmigrate_app import snapshot
from sqlmigrate_app.backends.postgresql import inert_psql_variables
from sqlmigrate_app.statements import psql_open_body, psql_variable_colons

from .support import migrations
from .support.migrations import LEAKS, demo_migrations
from .support.target import Target
from .support.twins import twin

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
SPLITTING = Path(__file__).parent / "splitting"
FIRST, SECOND, THIRD = "20240101000001_first", "20240101000002_second", "20240101000003_third"


def run_script(target: Target, script: str, *psql_options: str) -> subprocess.CompletedProcess[str]:
    """Run a script as its header says: ``psql -v ON_ERROR_STOP=1 -f FILE``, ``sqlite3 -bail``
    (Python's ``executescript`` when the sqlite3 shell is not installed)."""
    path = target.directory.parent / "script.sql"
    path.write_text(script, encoding="utf-8")
    if target.vendor == "postgresql":
        command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *psql_options, "-d", target.url, "-f", str(path)]
        env = {**os.environ, "PGTZ": "UTC"}  # the time zone Django gives sqlmigrate's session (USE_TZ)
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    database = target.url.removeprefix("sqlite:///")
    if shutil.which("sqlite3"):
        with path.open() as script_file:
            return subprocess.run(
                ["sqlite3", "-bail", database], stdin=script_file, capture_output=True, text=True, timeout=120
            )
    with sqlite3.connect(database, isolation_level=None) as connection:
        connection.executescript(script)
    return subprocess.CompletedProcess([], 0, "", "")


def state(target: Target, data: str = "") -> tuple[str, list[tuple[str, ...]], list[tuple[object, ...]]]:
    """The schema as ``verify`` and ``dump`` read it, the history rows (``executed_at`` aside),
    and what the query ``data`` returns."""
    connections[target.alias].close()  # a fresh session: the test's own leaves nothing behind
    schema = snapshot.take(connections[target.alias], "schema_migrations").text()
    rows = target.query("SELECT id, name, checksum FROM schema_migrations ORDER BY id")
    return schema, rows, target.query(data) if data else []


def assert_script_does_what_up_does(target: Target, data: str = "", *psql_options: str) -> None:
    """``up --sql`` run by hand on ``target``, ``up`` on a twin: the same schema, rows and data."""
    script = target.call("sqlmigrate_up", sql=True)
    assert script.code == 0, script.text

    ran = run_script(target, script.out, *psql_options)

    assert ran.returncode == 0, ran.stdout + ran.stderr + script.out
    with twin(target) as other:
        applied = other.call("sqlmigrate_up")
        assert applied.code == 0, applied.text
        expected = state(other, data)
    assert state(target, data) == expected
    assert expected[1], "the set applied nothing"


# The project's own migration sets -----------------------------------------------------------------


def demo_set(target: Target) -> str:
    """migrations_sql/ (and on PostgreSQL an enum, a plpgsql trigger function, a view)."""
    demo_migrations(target)
    return ""


def session_set(target: Target) -> str:
    """Each of test_executor_session's leaks: a migration that changes a session setting, then one
    that fails or differs if it leaked."""
    if target.vendor == "sqlite":  # PRAGMA foreign_keys does nothing inside a transaction
        target.migration(
            FIRST,
            "PRAGMA foreign_keys = OFF;\nCREATE TABLE parent (id INTEGER PRIMARY KEY);",
            header="-- sqlmigrate: no-transaction\n",
        )
        target.migration(
            SECOND,
            "CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) ON DELETE CASCADE);\n"
            "INSERT INTO parent VALUES (1);\nINSERT INTO child VALUES (1);\nDELETE FROM parent;",
            "DROP TABLE child;",
        )
        return "SELECT count(*) FROM child"  # 0: the cascade ran, foreign keys were on again
    for number, (sets, plain) in enumerate(LEAKS.values()):
        table = f"t{number}"
        target.migration(f"2024010100{number:02d}00_sets", f"CREATE TABLE first_{table} (id integer);\n{sets}")
        target.migration(f"2024010100{number:02d}01_plain", plain.replace("second", f"second_{table}"))
    return ""


def no_transaction_set(target: Target) -> str:
    """A ``no-transaction`` migration with timeouts that empties ``search_path``, an index with a
    lock timeout (as test_up_and_down_sql_print_the_script_and_change_nothing has), and a
    migration after them."""
    target.migration(FIRST, "CREATE TABLE a (id integer);", header="-- sqlmigrate: lock-timeout=5s\n")
    if target.vendor == "postgresql":
        target.migration(
            SECOND,
            "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE INDEX CONCURRENTLY a_id ON public.a (id);",
            header="-- sqlmigrate: no-transaction\n-- sqlmigrate: lock-timeout=3s\n"
            "-- sqlmigrate: statement-timeout=1min\n",
        )
        target.migration(
            THIRD, "CREATE TABLE c (id integer);\nSELECT 1 / (current_setting('lock_timeout') = '0')::int;"
        )
        return ""
    target.migration(
        SECOND,
        "PRAGMA foreign_keys = OFF;\nCREATE INDEX a_id ON a (id);",
        header="-- sqlmigrate: no-transaction\n",
    )
    target.migration(THIRD, "CREATE TABLE c (id integer);")
    return ""


CORPUS_SETUP = """\
CREATE TABLE t (a integer, begin integer);
CREATE TABLE log (what text);
CREATE TABLE t2 (begin integer, "end" integer);
CREATE TABLE begin (id integer);
CREATE FUNCTION "begin"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
"""
# The splitting corpus's inputs that run on a server once CORPUS_SETUP made what they use; the
# DO block that commits needs no-transaction.
CORPUS = {
    "quotes_and_comments": "",
    "case_end_outside_bodies": "",
    "begin_atomic_bodies": "",
    "rule_parenthesised_actions": "",
    "rule_select_begin": "",
    "pg_trigger_named_begin": "",
    "dollar_quotes": "-- sqlmigrate: no-transaction\n",
}
RENAMED = {"CREATE FUNCTION f()": "CREATE FUNCTION f2()"}  # pg_trigger_named_begin's f() is a trigger function


def splitting_corpus_set(target: Target) -> str:
    """tests/splitting/*/input.sql, each a migration: quotes, comments, dollar quotes, BEGIN
    ATOMIC bodies, rules, names such as begin and end (SQLite: its trigger bodies)."""
    if target.vendor == "sqlite":
        target.migration(FIRST, "CREATE TABLE notes (id INTEGER);\nCREATE TABLE audit (note_id INTEGER, what TEXT);")
        sql = (SPLITTING / "sqlite_triggers" / "input.sql").read_text(encoding="utf-8")
        target.migration(SECOND, sql.replace("END TRANSACTION;", "").replace("TEMP ", "").replace("temporary ", ""))
        return ""
    target.migration("20240101000000_setup", CORPUS_SETUP)
    for number, (case, header) in enumerate(CORPUS.items(), 1):
        sql = (SPLITTING / case / "input.sql").read_text(encoding="utf-8")
        for old, new in RENAMED.items():
            sql = sql.replace(old, new)
        target.migration(f"202401010000{number:02d}_{case}", sql, header=header)
    return ""


SETS = {
    "demo": demo_set,
    "session settings": session_set,
    "no-transaction and timeouts": no_transaction_set,
    "splitting corpus": splitting_corpus_set,
}


@pytest.mark.parametrize("write_set", SETS.values(), ids=SETS.keys())
def test_the_script_run_by_hand_leaves_what_up_leaves(target, write_set):
    data = write_set(target)

    assert_script_does_what_up_does(target, data)


# Row 5: SET search_path ---------------------------------------------------------------------------


@pg_only
@pytest.mark.parametrize("header", ["", "-- sqlmigrate: no-transaction\n"], ids=["transactional", "no-transaction"])
def test_a_migration_that_sets_search_path_moves_no_later_table_or_history_row(target, header):
    target.migration(
        FIRST, "CREATE SCHEMA app;\nSET search_path = app;\nCREATE TABLE settings (id integer);", header=header
    )
    target.migration(SECOND, "CREATE TABLE orders (id integer);")

    assert_script_does_what_up_does(target)

    assert target.query(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema <> "
        "'pg_catalog' AND table_schema <> 'information_schema' ORDER BY 2"
    ) == [("public", "orders"), ("public", "schema_migrations"), ("app", "settings")]


@pg_only
def test_the_history_table_is_named_with_the_schema_up_would_use(target):
    target.migration(FIRST, "CREATE TABLE a (id integer);")

    script = target.call("sqlmigrate_up", sql=True)

    assert 'CREATE TABLE IF NOT EXISTS "public"."schema_migrations"' in script.out
    assert (
        f"""INSERT INTO "public"."schema_migrations" (id, name, checksum, executed_at) VALUES ('{FIRST}',"""
        in script.out
    )


# The session put back -----------------------------------------------------------------------------


@pg_only
def test_set_role_in_a_migration_is_put_back_before_the_next(target):
    role = f"limited_{target.url.rsplit('/', 1)[-1]}"  # roles are cluster-wide: named after the database
    target.query(f"CREATE ROLE {role}")
    try:
        # As the limited role, migration 2 could not create a table in public (PostgreSQL 15+).
        target.migration(FIRST, f"CREATE TABLE a (id integer);\nSET ROLE {role};")
        target.migration(SECOND, "CREATE TABLE b (id integer);")

        script = target.call("sqlmigrate_up", sql=True)
        ran = run_script(target, script.out)

        assert ran.returncode == 0, ran.stderr
        assert "COMMIT;\nRESET SESSION AUTHORIZATION;\nRESET ROLE;\nRESET ALL;\n" in script.out
        assert target.history() == [FIRST, SECOND]
    finally:
        target.query(f"DROP OWNED BY {role}")
        target.query(f"DROP ROLE {role}")


def test_only_a_migration_that_may_change_the_session_is_followed_by_a_reset(target):
    target.migration(FIRST, "CREATE TABLE a (id integer);")
    target.migration(
        SECOND, "SET search_path = public;" if target.vendor == "postgresql" else "PRAGMA foreign_keys = 0;"
    )

    script = target.call("sqlmigrate_up", sql=True).out

    reset = "RESET ALL;" if target.vendor == "postgresql" else "PRAGMA foreign_keys = 1;"
    first, second = script.split(f"-- {SECOND}")
    assert reset not in first.split(f"-- {FIRST}")[1] and second.count(reset) == 1
    if target.vendor == "sqlite":  # the script starts as sqlmigrate's connection does
        assert first.count("PRAGMA foreign_keys = 1;") == 1


# psql variables -----------------------------------------------------------------------------------


@pg_only
def test_psql_variables_in_a_migration_are_not_interpolated(target):
    # n and name are set with -v, PORT by psql itself (a column named port, written in capitals).
    target.migration(
        FIRST,
        "CREATE TABLE services (port integer);\nINSERT INTO services VALUES (2);\n"
        "CREATE TABLE sliced AS SELECT\n"
        "  (ARRAY[1, 2, 3, 4])[2:n] AS by_column,\n"
        "  (ARRAY[1, 2, 3, 4])[1:PORT] AS by_port,\n"
        "  (ARRAY[1, 2, 3, 4])[1:'2'] AS by_literal,\n"
        '  (ARRAY[1, 2, 3, 4])[1:"n"] AS by_quoted,\n'
        "  ':n' AS in_a_string, $$:n$$ AS dollar_quoted, n::text AS cast  -- :n\n"
        "FROM services, (VALUES (3)) AS v (n);",
    )

    assert_script_does_what_up_does(target, "SELECT * FROM sliced", "-v", "n=1/0", "-v", "2=oops")

    assert target.query("SELECT * FROM sliced") == [([2, 3], [1, 2], [1, 2], [1, 2, 3], ":n", ":n", "3")]


# The colons, psql itself as the oracle --------------------------------------------------------------

NAMES = ("n", "x1", "é")
MARK = "ZZINTERPOLATEDZZ"
# Dollar quotes and E'' strings have spaces around them, $1 after it, and there is no lone $: the
# scanner takes a $ or E' right after a digit or a $ for part of an identifier, where PostgreSQL
# starts a quote (SQL the server refuses anyway: a constant right after another, a lone $).
FRAGMENTS = [
    "SELECT", " ", "\n", "a", "1", "[", "]", "(", ")", ",", "+", "-", "$1 ", "=", "a$b", "e",
    "'a'", "'it''s'", " E'\\'' ", '"q"', '"a""b"', " $$x$$ ", " $t$ y $t$ ", "-- c\n", "/* c /* d */ e */",
    "::", ":=", ":", "::int",
]  # fmt: skip


def colons() -> st.SearchStrategy[str]:
    name = st.sampled_from(NAMES)
    return st.one_of(
        name.map(lambda n: f":{n}"),
        name.map(lambda n: f":'{n}'"),
        name.map(lambda n: f':"{n}"'),
        name.map(lambda n: f":{{?{n}}}"),
        name.map(lambda n: f"'{{:{n}}}'"),
        name.map(lambda n: f" $$ :{n} $$ "),
        name.map(lambda n: f"-- :{n}\n"),
        name.map(lambda n: f"/* :{n} */"),
        name.map(lambda n: f'":{n}"'),
        name.map(lambda n: f" E'\\':{n}' "),
    )


def texts() -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(FRAGMENTS), colons()), min_size=1, max_size=12).map("".join)


def echoed_by_psql(server: str, texts: list[str]) -> list[str]:
    """What psql sends the server for each text, every variable of NAMES set to MARK (``:{?n}``
    becomes TRUE or FALSE whatever is set)."""
    separator = "SELECT 'ZZSEPARATORZZ';"
    script = "".join(f"{text}\n;\n{separator}\n" for text in texts)
    variables = [option for name in NAMES for option in ("-v", f"{name}={MARK}")]
    ran = subprocess.run(
        ["psql", "-X", "-q", "-e", *variables, "-d", server, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return ran.stdout.split(separator)[:-1]


def balanced(text: str) -> bool:
    """Whether PostgreSQL's lexer reads ``text`` to its end (no quote or comment left open, which
    would run into the next text psql reads)."""
    try:
        pglast.parser.scan(text)
    except pglast.parser.ParseError:
        return False
    return True


def interpolated(sent: str) -> bool:
    return any(word in sent for word in (MARK, "TRUE", "FALSE"))


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(texts().filter(balanced), min_size=1, max_size=30))
def test_psql_interpolates_nothing_in_the_scripts_text(postgres_server, drawn):
    plain = echoed_by_psql(postgres_server, drawn)
    made_inert = echoed_by_psql(postgres_server, [inert_psql_variables(text) for text in drawn])

    for text, sent, sent_inert in zip(drawn, plain, made_inert, strict=True):
        assert not interpolated(sent_inert), text
        assert interpolated(sent) <= bool(psql_variable_colons(text)), text  # what psql reads is found


@settings(max_examples=500, deadline=None)
@given(texts())
def test_the_server_reads_the_same_tokens_with_the_spaces(text):
    def tokens(sql: str) -> list[tuple[str, str]] | str:
        try:
            return [(token.name, sql[token.start : token.end + 1]) for token in pglast.parser.scan(sql)]
        except pglast.parser.ParseError as exc:  # an unterminated quote: the same error either way
            return str(exc).split(", at ")[0]

    assert tokens(inert_psql_variables(text)) == tokens(text)


# psql's guess at function bodies --------------------------------------------------------------------

BODIES = {
    "a function named begin": ("CREATE FUNCTION begin() RETURNS int LANGUAGE sql RETURN 1;", True),
    "a parameter named begin": ("CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN begin + 1;", True),
    "in a schema": ("CREATE OR REPLACE FUNCTION public.begin() RETURNS int LANGUAGE sql RETURN 1;", True),
    "a procedure": ("CREATE PROCEDURE p(begin int) LANGUAGE sql BEGIN ATOMIC SELECT begin; END;", True),
    "quoted": ('CREATE FUNCTION "begin"() RETURNS int LANGUAGE sql RETURN 1;', False),
    "in parentheses": ("CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN (begin);", False),
    "BEGIN ATOMIC with CASE": (
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 END; END;",
        False,
    ),
    "a table named begin": ("CREATE TABLE begin (begin integer);", False),
    "in a dollar quote": ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;", False),
    "begin$x": ("CREATE FUNCTION begin$x() RETURNS int LANGUAGE sql RETURN 1;", False),
}


@pytest.mark.parametrize("sql, reads_on", BODIES.values(), ids=BODIES.keys())
def test_psql_open_body_agrees_with_psql(postgres_server, sql, reads_on):
    # current_query() is the whole query string psql sent: this statement's alone, or glued to ours.
    script = f"BEGIN;\n{sql}\nSELECT current_query() LIKE 'SELECT%' AS alone;\nROLLBACK;\n"

    ran = subprocess.run(
        ["psql", "-X", "-At", "-d", postgres_server, "-f", "-"], input=script, capture_output=True, text=True
    )

    assert ran.stderr == ""
    assert ("t" not in ran.stdout.split()) == reads_on
    assert (psql_open_body(sql) is not None) == reads_on


@pg_only
def test_a_section_psql_would_read_past_is_refused_for_the_script_only(target):
    target.migration(FIRST, "CREATE TABLE a (id integer);")
    target.migration(SECOND, "CREATE FUNCTION f(begin int) RETURNS int\n  LANGUAGE sql RETURN begin + 1;")

    script = target.call("sqlmigrate_up", sql=True)
    applied = target.call("sqlmigrate_up")

    assert script.code == 1 and script.out == ""
    assert script.err.startswith(f"{target.directory / SECOND}.sql:3: psql takes 'begin' for the start of a function")
    assert 'quote the name ("begin")' in script.err
    assert applied.code == 0 and target.history() == [FIRST, SECOND]


# Row 4: psql meta-commands --------------------------------------------------------------------------


@pg_only
def test_a_meta_command_inside_a_statement_never_reaches_psql(target, tmp_path):
    ran = tmp_path / "ran"
    target.migration(FIRST, f"SELECT 1 \\! touch {ran}\n;")

    script = target.call("sqlmigrate_up", sql=True)
    if script.code == 0:
        run_script(target, script.out)
    applied = target.call("sqlmigrate_up")

    assert not ran.exists(), "psql ran a shell command from the --sql script"
    assert (script.code, script.err) == (applied.code, applied.err)  # refused, as up refuses it
    assert script.code == 1 and f"{target.directory / FIRST}.sql:2: psql meta-command" in script.err
    assert target.tables() == set()


# requires= -------------------------------------------------------------------------------------------

AUTH = "auth.0012_alter_user_first_name_max_length"


def test_plan_and_sql_refuse_an_unmet_requirement_as_up_does(target):
    target.migration(
        FIRST,
        "CREATE TABLE notes (user_id INTEGER REFERENCES auth_user (id));",
        header=f"-- sqlmigrate: requires={AUTH}\n",
    )

    refused = [target.call("sqlmigrate_up", **options) for options in ({}, {"plan": True}, {"sql": True})]
    call_command("migrate", "auth", database=target.alias, verbosity=0)
    planned, script = target.call("sqlmigrate_up", plan=True), target.call("sqlmigrate_up", sql=True)

    assert [(result.code, result.err) for result in refused] == [(refused[0].code, refused[0].err)] * 3
    assert refused[0].code == 1 and f"requires the Django migration {AUTH}, which is not applied" in refused[0].err
    assert refused[1].out == refused[2].out == ""
    assert planned.code == 0 and FIRST in planned.out
    assert script.code == 0 and "CREATE TABLE notes" in script.out
    assert target.call("sqlmigrate_up", fake=True).code == 0  # --fake runs nothing: no requirement


def run_script_checked(target, script: str) -> None:
    """Run a script with psql or Python's sqlite3, failing on its first error."""
    if target.vendor == "postgresql":
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", target.url], input=script, text=True, check=True)
    else:
        with sqlite3.connect(target.url.removeprefix("sqlite:///"), isolation_level=None) as connection:
            connection.executescript(script)


def test_up_and_down_sql_print_the_script_and_change_nothing(target):
    migrations.three(target)
    target.migration(
        "20240104000000_index",
        "CREATE INDEX a_id ON a (id)",
        "DROP INDEX a_id",
        header="-- sqlmigrate: lock-timeout=5s\n",
    )

    script = target.call("sqlmigrate_up", sql=True)

    assert script.code == 0, script.text
    assert target.tables() == set()  # not even the history table
    assert script.out.count("BEGIN;") == 4 and script.out.count("COMMIT;") == 4
    if target.vendor == "postgresql":
        assert "SET LOCAL lock_timeout = '5s';" in script.out
    run_script_checked(target, script.out)
    assert target.history() == [migrations.FIRST, migrations.SECOND, migrations.THIRD, "20240104000000_index"]
    assert target.call("sqlmigrate_validate").code == 0  # the same rows sqlmigrate_up writes

    down = target.call("sqlmigrate_down", "2", sql=True)
    assert target.history() == [migrations.FIRST, migrations.SECOND, migrations.THIRD, "20240104000000_index"]
    run_script_checked(target, down.out)
    assert target.history() == [migrations.FIRST, migrations.SECOND]


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_the_sql_script_run_in_another_time_zone_records_utc(target):
    target.migration("20240101000001_one", "CREATE TABLE one (id integer);")
    script = target.call("sqlmigrate_up", "--sql").out

    ran = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", target.url],
        input=script,
        capture_output=True,
        text=True,
        env={**os.environ, "PGTZ": "Asia/Tokyo"},
        timeout=60,
    )

    assert ran.returncode == 0, ran.stderr
    (delta,) = target.query(
        "SELECT abs(extract(epoch FROM (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') - executed_at)) FROM schema_migrations"
    )[0]
    assert delta < 60
