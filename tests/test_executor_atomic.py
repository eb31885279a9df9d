"""The atomic promise as a property: whatever SQL a migration holds, after a run either its
history row exists and every effect of its statements is there, or neither is; and running
again agrees with the first run. A ``no-transaction`` migration keeps what ran before a failure,
and each ``BEGIN ... COMMIT`` group in it is whole or absent.

Migrations are drawn from a vocabulary of statements (DDL, DML, session settings, savepoints,
transaction control, DO blocks, comments that look like statements, failing statements) in any
order, on SQLite and PostgreSQL. Each statement's effect is a table or a row in ``effects``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MIGRATION = "20240101000000_drawn"


@dataclass(frozen=True)
class Fragment:
    """SQL and what it leaves behind when its migration is applied."""

    sql: str
    effects: frozenset[str] = frozenset()


def numbers() -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=6)  # small, so duplicates (failures) happen too


def create_table(n: int) -> Fragment:
    return Fragment(f"CREATE TABLE e_{n} (id integer);", frozenset({f"table:e_{n}"}))


def insert(n: int) -> Fragment:
    return Fragment(f"INSERT INTO effects VALUES ({n});", frozenset({f"row:{n}"}))


def do_insert(n: int) -> Fragment:
    return Fragment(f"DO $$\nBEGIN\n  INSERT INTO effects VALUES ({n});\nEND\n$$;", frozenset({f"row:{n}"}))


TRANSACTION_CONTROL = {
    "postgresql": [
        "BEGIN;",
        "START TRANSACTION;",
        "COMMIT;",
        "END;",
        "ROLLBACK;",
        "ABORT;",
        "COMMIT AND CHAIN;",
        "PREPARE TRANSACTION 'drawn';",
        "COMMIT PREPARED 'drawn';",
    ],
    "sqlite": ["BEGIN;", "BEGIN IMMEDIATE;", "COMMIT;", "END TRANSACTION;", "ROLLBACK;"],
}
FAILING = {
    "postgresql": ["SELECT 1/0;", "DO $$ BEGIN RAISE EXCEPTION 'planned'; END $$;", "INSERT INTO nowhere VALUES (1);"],
    "sqlite": ["SELECT * FROM nowhere;", "INSERT INTO effects VALUES (NULL, 'too many');"],
}
SESSION = {
    "postgresql": [
        "SET search_path = nowhere;",  # every later unqualified statement fails
        "SET LOCAL search_path = nowhere;",
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "SET TIME ZONE 'Asia/Tokyo';",
        "SET statement_timeout = '1h';",
    ],
    "sqlite": ["PRAGMA foreign_keys = OFF;", "PRAGMA recursive_triggers = ON;"],
}
LOOKALIKES = ["-- BEGIN;\n-- COMMIT;", "/* ROLLBACK; */ SELECT 1;", "SELECT 'COMMIT; BEGIN;';"]


def savepoint_block(vendor: str) -> st.SearchStrategy[Fragment]:
    """``SAVEPOINT``, a statement, then ``RELEASE`` (it stays) or ``ROLLBACK TO`` (it goes)."""

    def block(inner: Fragment, keep: bool) -> Fragment:
        end = "RELEASE SAVEPOINT sp;" if keep else "ROLLBACK TO SAVEPOINT sp;"
        return Fragment(f"SAVEPOINT sp;\n{inner.sql}\n{end}", inner.effects if keep else frozenset())

    return st.builds(block, simple_fragments(vendor), st.booleans())


def simple_fragments(vendor: str) -> st.SearchStrategy[Fragment]:
    options = [
        numbers().map(create_table),
        numbers().map(insert),
        st.sampled_from(FAILING[vendor]).map(Fragment),
        st.sampled_from(SESSION[vendor]).map(Fragment),
        st.sampled_from(LOOKALIKES).map(Fragment),
    ]
    if vendor == "postgresql":
        options.append(numbers().map(do_insert))
    return st.one_of(options)


def fragments(vendor: str) -> st.SearchStrategy[Fragment]:
    control = st.sampled_from(TRANSACTION_CONTROL[vendor]).map(Fragment)
    return st.one_of(simple_fragments(vendor), simple_fragments(vendor), savepoint_block(vendor), control)


def group(vendor: str) -> st.SearchStrategy[Fragment]:
    """``BEGIN``, some statements, then ``COMMIT`` (they stay) or ``ROLLBACK`` (they go)."""

    def block(inner: list[Fragment], keep: bool) -> Fragment:
        sql = "\n".join(["BEGIN;", *(fragment.sql for fragment in inner), "COMMIT;" if keep else "ROLLBACK;"])
        return Fragment(sql, frozenset().union(*(f.effects for f in inner)) if keep else frozenset())

    inner = st.one_of(simple_fragments(vendor), savepoint_block(vendor))
    return st.builds(block, st.lists(inner, min_size=1, max_size=3), st.booleans())


def reset(target) -> None:
    for table in target.tables():
        target.query(f'DROP TABLE "{table}"')
    target.query("CREATE TABLE effects (n integer PRIMARY KEY)")
    for path in target.directory.iterdir():
        path.unlink()


def present(target, effects: frozenset[str]) -> set[str]:
    tables = {f"table:{name}" for name in target.tables()}
    rows = {f"row:{n}" for (n,) in target.query("SELECT n FROM effects")}
    return (tables | rows) & effects


def recorded(target) -> bool:
    return "schema_migrations" in target.tables() and target.history() == [MIGRATION]


def check_all_or_nothing(target, expected: frozenset[str], sql: str) -> bool:
    is_recorded = recorded(target)
    found = present(target, expected)
    assert found == (expected if is_recorded else set()), f"recorded={is_recorded}, effects {found} of:\n{sql}"
    return is_recorded


@pytest.mark.parametrize("target", ["sqlite", "postgresql"], indirect=True)
def test_a_migration_is_applied_whole_with_its_row_or_not_at_all(target):
    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(fragments(target.vendor), min_size=1, max_size=6))
    def run(drawn: list[Fragment]) -> None:
        reset(target)
        sql = "\n".join(fragment.sql for fragment in drawn)
        expected = frozenset().union(*(fragment.effects for fragment in drawn))
        target.migration(MIGRATION, sql)

        first = target.call("sqlmigrate_up")
        applied = check_all_or_nothing(target, expected, sql)
        second = target.call("sqlmigrate_up")

        assert (first.code == 0) == applied, first.text
        assert check_all_or_nothing(target, expected, sql) == applied
        if applied:
            assert second.code == 0 and "No pending migrations." in second.out
        else:
            assert (second.code, second.err) == (first.code, first.err)

    run()


@pytest.mark.parametrize("target", ["sqlite", "postgresql"], indirect=True)
def test_a_no_transaction_migration_keeps_what_ran_before_a_failure_and_groups_whole(target):
    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(st.one_of(simple_fragments(target.vendor), group(target.vendor)), min_size=1, max_size=5))
    def run(units: list[Fragment]) -> None:
        reset(target)
        sql = "\n".join(unit.sql for unit in units)
        target.migration(MIGRATION, sql, header="-- sqlmigrate: no-transaction\n")
        everything = frozenset().union(*(unit.effects for unit in units))
        prefixes = [frozenset().union(*(unit.effects for unit in units[:k])) for k in range(len(units) + 1)]

        result = target.call("sqlmigrate_up")

        found = present(target, everything)
        if recorded(target):
            assert result.code == 0 and found == everything, f"effects {found} of:\n{sql}"
        else:
            assert result.code != 0 and found in prefixes[:-1], f"effects {found} of:\n{sql}\n{result.err}"
        assert target.query("SELECT 1") == [(1,)]  # the session is usable: no group left open

    run()
