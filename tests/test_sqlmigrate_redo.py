"""sqlmigrate_redo: the newest migrations rolled back and applied again; what a failure or an
interrupt part way leaves rolled back, named."""

from __future__ import annotations

import pytest

from sqlmigrate_app.errors import MigrationInterrupted
from sqlmigrate_app.executor import Reporter
from sqlmigrate_app.runner import MigrationRunner

from .support.migrations import FIRST, SECOND, THIRD, three


def test_redo_rolls_back_and_applies_again_an_edited_migration(target):
    three(target)
    target.call("sqlmigrate_up")
    path = target.directory / f"{THIRD}.sql"
    path.write_text(
        path.read_text().replace(
            "CREATE TABLE c (id INTEGER PRIMARY KEY);", "CREATE TABLE c (id INTEGER PRIMARY KEY, note TEXT);"
        )
    )

    result = target.call("sqlmigrate_redo")

    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert lines[0].startswith(f"Rolling back {THIRD}... OK (") and lines[1].startswith(f"Applying {THIRD}... OK (")
    assert lines[2].startswith("Redid 1 migration in ")
    assert target.call("sqlmigrate_validate").code == 0  # the new checksum is recorded
    target.query("INSERT INTO c (id, note) VALUES (1, 'the edit is there')")
    assert target.call("sqlmigrate_redo", "2").code == 0
    assert target.history() == [FIRST, SECOND, THIRD] and target.query("SELECT count(*) FROM c") == [(0,)]


@pytest.mark.parametrize(("failing", "left"), [(SECOND, [SECOND, THIRD]), (THIRD, [THIRD])])
def test_redo_that_fails_part_way_names_every_migration_it_left_rolled_back(target, failing, left):
    three(target)
    target.call("sqlmigrate_up")
    table = failing[-1]
    path = target.migration(failing, f"CREATE TABLE {table} (id INTEGER);\nSELECT * FROM nope;", f"DROP TABLE {table};")

    result = target.call("sqlmigrate_redo", "2")

    assert result.code == 1, result.text
    assert result.err.startswith(f"{path}:3: {failing} failed: ")
    assert result.err.endswith(
        f"; redo left {len(left)} migration{'s' * (len(left) > 1)} rolled back and not applied again: "
        f"{', '.join(left)} (run sqlmigrate_up to apply {'them' if len(left) > 1 else 'it'})"
    )
    assert target.history() == [m for m in (FIRST, SECOND, THIRD) if m not in left]


def test_redo_interrupted_between_two_migrations_names_what_it_left_rolled_back(target):
    three(target)
    target.call("sqlmigrate_up")

    class StopAfterRollingBack(Reporter):
        def finished(self, result):
            if result.migration.id == SECOND:
                raise KeyboardInterrupt

    runner = MigrationRunner(target.alias, target.directory, reporter=StopAfterRollingBack())
    with pytest.raises(KeyboardInterrupt) as stopped:
        runner.redo(2)

    assert isinstance(stopped.value, MigrationInterrupted)
    assert str(stopped.value) == (
        f"redo interrupted (Ctrl-C); redo left 2 migrations rolled back and not applied again: {SECOND}, {THIRD} "
        "(run sqlmigrate_up to apply them)"
    )
    assert target.history() == [FIRST]
