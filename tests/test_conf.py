"""The app works with no ``SQLMIGRATE_*`` setting at all: every default, end to end."""

from __future__ import annotations

import io

from django.core.management import call_command

from sqlmigrate_app import conf


def test_defaults(no_sqlmigrate_settings, tmp_path):
    assert conf.migrations_dir() == tmp_path / "migrations_sql"
    assert conf.migrations_dir("any_alias") == tmp_path / "migrations_sql"
    assert conf.table_name() == "schema_migrations"
    assert conf.lock_timeout() is None and conf.statement_timeout() is None
    assert conf.migrated_aliases() == ["default"]


def test_commands_work_with_no_settings(no_sqlmigrate_settings, tmp_path, target):
    def run(command, *args):
        out = io.StringIO()
        call_command(command, *args, database=target.alias, stdout=out, no_color=True)
        return out.getvalue()

    run("sqlmigrate_create", "create_notes")  # makes BASE_DIR / "migrations_sql"
    [path] = (tmp_path / "migrations_sql").glob("*_create_notes.sql")
    path.write_text("-- UP\nCREATE TABLE notes (id INTEGER);\n-- DOWN\nDROP TABLE notes;\n")
    run("sqlmigrate_up")
    assert "notes" in target.tables() and target.history() == [path.stem]
    assert "Create Notes" in run("sqlmigrate_status", "--check")
    run("sqlmigrate_validate")
    run("sqlmigrate_down")
    assert "notes" not in target.tables() and target.history() == []
