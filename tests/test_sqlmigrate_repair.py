"""sqlmigrate_repair: the history made to match edited and deleted files, never the schema; it asks
first at a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .support.migrations import FIRST, SECOND, THIRD, three
from .support.target import ROOT


def edit(target, migration_id: str, extra: str = "-- a reviewed comment fix\n") -> None:
    path = target.directory / f"{migration_id}.sql"
    path.write_text(path.read_text() + extra)


def checksums(target) -> dict[str, str]:
    return dict(target.query("SELECT id, checksum FROM schema_migrations"))


def test_repair_records_edited_files_and_forgets_missing_ones_without_touching_the_schema(target):
    three(target)
    assert target.call("sqlmigrate_up").code == 0
    edit(target, SECOND)
    (target.directory / f"{THIRD}.sql").unlink()
    before = checksums(target)
    tables = target.tables()

    result = target.call("sqlmigrate_repair", interactive=False)

    assert result.code == 0, result.text
    new = target.call("sqlmigrate_status", json=True)
    rows = {row["id"]: row for row in json.loads(new.out)}
    assert result.out.splitlines() == [
        "Repairs to the history of database 'target':",
        f"  {SECOND}: checksum {before[SECOND][:12]} -> {rows[SECOND]['checksum'][:12]}",
        f"  {THIRD}: history row deleted (its file is missing)",
        "Repaired 2 history rows.",
    ]
    assert {row["state"] for row in rows.values()} == {"applied"} and THIRD not in rows
    assert target.tables() == tables  # the schema is as it was: c stays
    assert target.call("sqlmigrate_validate").code == 0
    assert target.call("sqlmigrate_repair", interactive=False).out == "Nothing to repair.\n"


def test_repair_of_named_migrations_only(target):
    three(target)
    target.call("sqlmigrate_up")
    edit(target, FIRST)
    edit(target, SECOND)

    result = target.call("sqlmigrate_repair", f"{SECOND}.sql", interactive=False)

    assert result.code == 0, result.text
    states = {row["id"]: row["state"] for row in json.loads(target.call("sqlmigrate_status", json=True).out)}
    assert states == {FIRST: "modified", SECOND: "applied", THIRD: "applied"}
    refused = target.call("sqlmigrate_repair", THIRD, interactive=False)
    assert refused.code == 1
    assert f"{THIRD} is applied: only modified and missing migrations are repaired" in refused.err
    unknown = target.call("sqlmigrate_repair", "20240103000000_create_cc", interactive=False)
    assert f"no such migration in {target.directory} or in the history; did you mean {THIRD}?" in unknown.err


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("answer", "repaired"), [("no\n", False), ("yes\n", True)])
def test_repair_asks_first_at_a_terminal(target, answer, repaired):
    three(target)
    target.call("sqlmigrate_up")
    edit(target, SECOND)
    recorded = checksums(target)[SECOND]

    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "sqlmigrate_repair", "--dir", str(target.directory)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        input=answer,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "Type 'yes' to continue" in result.stdout
    assert (checksums(target)[SECOND] != recorded) is repaired
    assert ("Repair cancelled." in result.stdout) is not repaired


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_repair_at_the_end_of_its_input_is_a_no_in_one_line(target):
    three(target)
    target.call("sqlmigrate_up")
    edit(target, SECOND)
    recorded = checksums(target)[SECOND]

    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "sqlmigrate_repair", "--dir", str(target.directory)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[-2:] == [
        "Only the history table changes, never the schema. Type 'yes' to continue, or 'no' to cancel: ",
        "Repair cancelled: no answer (end of input); --noinput repairs without asking.",
    ]
    assert checksums(target)[SECOND] == recorded
