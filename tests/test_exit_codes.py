"""Distinct exit codes for pipelines: ``sqlmigrate_status --check`` and ``sqlmigrate_validate``
tell "deploy needs migrations" (3) from "history was tampered with" (5, 6) and the rest."""

from __future__ import annotations

import pytest

FIRST, SECOND = "20240101000000_create_a", "20240102000000_create_b"


def applied(target, *ids):
    for migration_id in ids:
        table = migration_id.rsplit("_", 1)[1]
        target.migration(migration_id, f"CREATE TABLE t_{table} (id INTEGER);", f"DROP TABLE t_{table};")
    assert target.call("sqlmigrate_up").code == 0


def up_to_date(target):
    applied(target, FIRST, SECOND)


def pending(target):
    applied(target, FIRST)
    target.migration(SECOND, "CREATE TABLE t_b (id INTEGER);")


def out_of_order(target):
    applied(target, SECOND)
    target.migration(FIRST, "CREATE TABLE t_a (id INTEGER);")


def modified(target):
    applied(target, FIRST, SECOND)
    target.migration(FIRST, "CREATE TABLE t_a (id INTEGER, added INTEGER);", "DROP TABLE t_a;")


def missing(target):
    applied(target, FIRST, SECOND)
    (target.directory / f"{SECOND}.sql").unlink()


def bad_file(target):
    applied(target, FIRST)
    target.write(f"{SECOND}.sql", "CREATE TABLE t_b (id INTEGER);\n")


def history_table(target):
    target.migration(FIRST, "CREATE TABLE t_a (id INTEGER);")
    target.query("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, dirty BOOLEAN)")


def modified_and_pending(target):
    modified(target)
    target.migration("20240103000000_create_c", "CREATE TABLE t_c (id INTEGER);")


# state -> (exit code of status --check, exit code of validate)
CASES = {
    up_to_date: (0, 0),
    pending: (3, 0),  # pending is not a problem with files or history
    out_of_order: (4, 4),
    modified: (5, 5),
    missing: (6, 6),
    bad_file: (7, 7),
    history_table: (8, 8),
    modified_and_pending: (5, 5),  # several kinds: the highest code
}


@pytest.mark.parametrize("state", CASES, ids=lambda state: state.__name__)
def test_status_check_and_validate_exit_codes(target, state):
    state(target)
    status_code, validate_code = CASES[state]
    status = target.call("sqlmigrate_status", check=True)
    assert status.code == status_code, status.text
    validate = target.call("sqlmigrate_validate")
    assert validate.code == validate_code, validate.text


def test_status_without_check_exits_0_even_when_behind(target):
    pending(target)
    assert target.call("sqlmigrate_status").code == 0


@pytest.mark.parametrize("state", [pending, modified], ids=lambda state: state.__name__)
def test_manage_py_process_exits_with_the_code(target, state):
    state(target)
    status_code, validate_code = CASES[state]
    assert target.manage("sqlmigrate_status", "--check").returncode == status_code
    assert target.manage("sqlmigrate_validate").returncode == validate_code
