"""What every ``sqlmigrate_*`` command shares: the common options and turning errors into
one-line ``CommandError``s."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ..errors import SqlMigrateError
from ..files import Migration
from ..runner import MigrationRunner, Reporter, Result


class SqlMigrateCommand(BaseCommand):
    requires_migrations_checks = False
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--database", default="default", help="Database alias to use (default: 'default').")
        parser.add_argument(
            "--dir", dest="directory", help="Migrations directory (default: SQLMIGRATE_DIRS / SQLMIGRATE_DIR)."
        )

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except SqlMigrateError as exc:
            raise CommandError(str(exc)) from exc

    def runner(self, options: dict[str, Any], **kwargs: Any) -> MigrationRunner:
        return MigrationRunner(using=options["database"], directory=options["directory"], **kwargs)

    def say(self, message: str, level: int = 1, ending: str = "\n") -> None:
        if self.verbosity >= level:
            self.stdout.write(message, ending=ending)
            self.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> Any:
        self.verbosity = options["verbosity"]
        return self.run(**options)

    def run(self, **options: Any) -> Any:
        raise NotImplementedError


class ProgressReporter(Reporter):
    """Prints ``Applying 2024..._name... OK (12 ms)`` as migrations run."""

    VERBS = {"applied": "Applying", "faked": "Faking", "rolled back": "Rolling back"}

    def __init__(self, command: SqlMigrateCommand) -> None:
        self.command = command

    def waiting(self, message: str) -> None:
        self.command.say(self.command.style.WARNING(message))

    def starting(self, migration: Migration, action: str) -> None:
        self.command.say(f"{self.VERBS[action]} {migration.id}...", ending="")

    def finished(self, result: Result) -> None:
        style = self.command.style
        outcome = {"skipped": style.WARNING(" SKIPPED (done by another runner)"), "faked": style.SUCCESS(" FAKED")}
        text = outcome.get(result.action, style.SUCCESS(" OK"))
        self.command.say(f"{text} ({result.elapsed_ms:.0f} ms)")

    def failed(self, migration: Migration, elapsed_ms: float) -> None:
        self.command.say(f"{self.command.style.ERROR(' FAILED')} ({elapsed_ms:.0f} ms)")


def print_plan(command: SqlMigrateCommand, title: str, migrations: list[Migration], down: bool = False) -> None:
    if not migrations:
        command.say("Nothing to roll back." if down else "No pending migrations.")
        return
    command.say(command.style.MIGRATE_HEADING(title))
    for migration in migrations:
        flags = "" if migration.transactional else " (no-transaction)"
        command.say(f"  {migration.id}{flags}")
        section = migration.down if down else migration.up
        command.say(section.sql.strip() + "\n", level=2)
