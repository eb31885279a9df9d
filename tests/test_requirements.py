"""``requires=APP.MIGRATION``: a SQL migration waits for the Django migration whose tables it uses;
an unknown app or migration, or a badly written directive, is named."""

from __future__ import annotations

import json

from django.core.checks import run_checks
from django.core.management import call_command

AUTH = "auth.0012_alter_user_first_name_max_length"
USES_AUTH = "20240101000000_user_notes"


def checks() -> list[tuple[str | None, str]]:
    return [(message.id, message.msg) for message in run_checks(tags=["sqlmigrate"])]


def test_up_waits_for_the_django_migration_a_sql_migration_requires(target):
    target.migration(
        USES_AUTH,
        "CREATE TABLE user_notes (user_id INTEGER REFERENCES auth_user (id), note TEXT);",
        "DROP TABLE user_notes;",
        header=f"-- sqlmigrate: requires={AUTH}\n",
    )

    refused = target.call("sqlmigrate_up")
    call_command("migrate", "auth", database=target.alias, verbosity=0)
    applied = target.call("sqlmigrate_up")

    assert refused.code == 1
    assert refused.err == (
        f"{target.directory / USES_AUTH}.sql:1: {USES_AUTH} requires the Django migration {AUTH}, which is not "
        f"applied on database 'target': run 'manage.py migrate --database target' first"
    )
    assert applied.code == 0, applied.text
    assert "user_notes" in target.tables()
    assert target.call("sqlmigrate_up", fake=True).code == 0  # --fake runs nothing: no requirement


def test_validate_and_check_name_an_unknown_app_or_migration(target, settings):
    target.migration(
        USES_AUTH,
        "SELECT 1;",
        header="-- sqlmigrate: requires=auth.0012_alter_user_first_name_max_lenght, nope.0001_initial\n",
    )
    settings.SQLMIGRATE_DIR = target.directory

    validated = target.call("sqlmigrate_validate", json=True)

    assert validated.code == 7
    where = f"{target.directory / USES_AUTH}.sql:1"
    assert json.loads(validated.out) == [
        {
            "kind": "bad_file",
            "message": f"{where}: requires=auth.0012_alter_user_first_name_max_lenght: app 'auth' has no migration "
            "'0012_alter_user_first_name_max_lenght'; did you mean auth.0012_alter_user_first_name_max_length?",
        },
        {
            "kind": "bad_file",
            "message": f"{where}: requires=nope.0001_initial: no installed app with the label 'nope' has migrations",
        },
    ]
    assert [check_id for check_id, _ in checks()] == ["sqlmigrate.E007", "sqlmigrate.E007"]


def test_an_app_whose_migrations_are_disabled_counts_as_migrated(target, settings):
    # pytest-django's --nomigrations makes tables without recording migrations.
    settings.MIGRATION_MODULES = {"auth": None}
    target.migration(USES_AUTH, "CREATE TABLE user_notes (note TEXT);", header=f"-- sqlmigrate: requires={AUTH}\n")

    assert target.call("sqlmigrate_up").code == 0
    assert target.call("sqlmigrate_validate").code == 0


def test_a_badly_written_requirement_is_a_bad_file(target):
    target.migration(USES_AUTH, "SELECT 1;", header="-- sqlmigrate: requires=auth\n")

    result = target.call("sqlmigrate_validate")

    assert result.code == 7
    assert "sql:1: bad requires value 'auth': use APP_LABEL.MIGRATION, e.g. auth.0001_initial" in result.err
