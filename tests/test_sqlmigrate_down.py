"""sqlmigrate_down: the newest migration by default, N, --to, --all, --plan; what it refuses before anything runs."""

from __future__ import annotations

import re

import pytest

from .support.migrations import FIRST, SECOND, THIRD, three
from .support.target import ok


def test_down_rolls_back_the_newest_by_default_and_n_on_request(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    result = ok(target.call("sqlmigrate_down"))
    assert re.fullmatch(rf"Rolling back {THIRD}\.\.\. OK \(\d+ ms\)\nRolled back 1 migration in \d+ ms\.\n", result.out)
    assert target.history() == [FIRST, SECOND]
    assert "c" not in target.tables()
    ok(target.call("sqlmigrate_down", "2"))
    assert target.history() == []
    assert not {"a", "b"} & target.tables()


def test_down_to_rolls_back_everything_newer(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    plan = ok(target.call("sqlmigrate_down", to=FIRST, plan=True))
    assert plan.out == f"Planned rollbacks:\n  {THIRD}\n  {SECOND}\n"
    assert target.history() == [FIRST, SECOND, THIRD]
    ok(target.call("sqlmigrate_down", to=FIRST))
    assert target.history() == [FIRST]
    assert "a" in target.tables() and "b" not in target.tables()
    assert ok(target.call("sqlmigrate_down", to=FIRST)).out == "Nothing to roll back.\n"


@pytest.mark.parametrize(
    "args, options, message",
    [
        (("0",), {}, "cannot roll back 0 migrations: give a number of at least 1"),
        (("-1",), {}, "cannot roll back -1 migrations"),
        (("4",), {}, "cannot roll back 4 migrations: only 3 are applied"),
        ((), {"to": "20230101000000_unknown"}, "--to 20230101000000_unknown: no such migration"),
        (("1",), {"to": FIRST}, "either a number of migrations or --to"),
    ],
)
def test_down_refuses_bad_requests(target, args, options, message):
    three(target)
    ok(target.call("sqlmigrate_up"))
    result = target.call("sqlmigrate_down", *args, **options)
    assert result.code == 1
    assert message in result.err
    assert target.history() == [FIRST, SECOND, THIRD]


def test_down_refuses_missing_modified_or_irreversible_migrations_before_anything_runs(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);", "")
    target.migration(THIRD, "CREATE TABLE c (id INTEGER);", "DROP TABLE c;")
    ok(target.call("sqlmigrate_up"))

    irreversible = target.call("sqlmigrate_down", "2")
    assert irreversible.code == 1
    assert f"cannot roll back {SECOND}: its -- DOWN section is empty" in irreversible.err
    assert target.history() == [FIRST, SECOND, THIRD] and "c" in target.tables()

    third = target.directory / f"{THIRD}.sql"
    third.write_text(third.read_text().replace("DROP TABLE c;", "DROP TABLE c; -- edited"))
    modified = target.call("sqlmigrate_down")
    assert modified.code == 1 and "changed since it was applied" in modified.err

    third.unlink()
    missing = target.call("sqlmigrate_down")
    assert missing.code == 1 and f"cannot roll back {THIRD}: migration {THIRD} was applied but its file" in missing.err
    assert target.history() == [FIRST, SECOND, THIRD] and "c" in target.tables()


def test_down_with_nothing_applied_is_a_clear_error(target):
    three(target)
    result = target.call("sqlmigrate_down")
    assert result.code == 1
    assert result.err == "cannot roll back 1 migration: none is applied"


def test_down_plan_at_verbosity_2_shows_the_down_sql(target):
    three(target)
    ok(target.call("sqlmigrate_up"))
    result = ok(target.call("sqlmigrate_down", "2", plan=True, verbosity=2))
    assert result.out.index(THIRD) < result.out.index("DROP TABLE c;") < result.out.index(SECOND)
    assert target.history() == [FIRST, SECOND, THIRD]


def test_down_all_rolls_everything_back_and_names_every_irreversible_migration(target):
    three(target, down_for_second="")
    target.migration("20240104000000_create_d", "CREATE TABLE d (id INTEGER);")
    target.call("sqlmigrate_up")

    refused = target.call("sqlmigrate_down", everything=True)

    assert refused.code == 1
    assert refused.err == (
        "cannot roll back 2 migrations: their -- DOWN sections are empty: "
        f"{target.directory / '20240104000000_create_d.sql'}, {target.directory / (SECOND + '.sql')}"
    )
    assert len(target.history()) == 4  # refused whole: nothing was rolled back
    three(target)  # both get a DOWN section, and the history their new checksums
    target.migration("20240104000000_create_d", "CREATE TABLE d (id INTEGER);", "DROP TABLE d;")
    assert target.call("sqlmigrate_repair", interactive=False).code == 0
    done = target.call("sqlmigrate_down", everything=True)
    assert done.code == 0, done.text
    assert target.history() == [] and not {"a", "b", "c", "d"} & target.tables()
    assert target.call("sqlmigrate_down", everything=True).out == "Nothing to roll back.\n"
