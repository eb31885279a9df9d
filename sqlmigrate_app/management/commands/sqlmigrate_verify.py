from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...errors import plural
from ...files import Migration
from ...snapshot import ChangeKind
from ...verify import Outcome, Rehearsal, VerifyReporter, verify, verify_tenant_set
from ..base import EXIT_REHEARSAL, SqlMigrateCommand, exit_codes_line, print_changes
from ..fleet import add_set_arguments, chosen_sets

# How a step's schema differs from the one it must give back, as verify has always printed it.
CHANGES = {kind: kind.value for kind in ChangeKind}
# What verify prints still calls a rehearsal a "round trip", as its output always has (tests and
# the docs quote it); elsewhere a round trip is the network's.
OUTCOMES = {
    Outcome.OK: "OK",
    Outcome.MISMATCH: "MISMATCH",
    Outcome.FAILED: "FAILED",
    Outcome.IRREVERSIBLE: "IRREVERSIBLE (no -- DOWN section: applied, not round-tripped)",
    Outcome.NOT_VERIFIED: "NOT VERIFIED",
}


class Command(SqlMigrateCommand):
    """``sqlmigrate_verify [ID ...]``: UP, DOWN, UP again in a throwaway database, schemas compared."""

    help = (
        "Apply, roll back and re-apply migrations in a throwaway database, checking that DOWN restores the schema "
        "and UP is repeatable. Default: the migrations pending on the database."
    )
    exit_codes_help = exit_codes_line(
        "every round trip matches", [(EXIT_REHEARSAL, "a round trip did not match or one of its steps failed")]
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("ids", nargs="*", metavar="ID", help="Migrations to verify (ids, file names or paths).")
        parser.add_argument("--all", action="store_true", help="Verify every migration, from an empty database.")
        parser.add_argument("--keep", action="store_true", help="Keep the throwaway database and print its name.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object per migration.")
        add_set_arguments(parser, "Verify")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome: the shared set, and the tenant set once (``--shared``,
        ``--tenants``)."""
        shared, tenant_set = chosen_sets(options, named=bool(options["ids"]))
        reporter = ThrowawayLines(self) if options["json"] else TextReporter(self)
        found: list[tuple[str, Rehearsal]] = []
        if shared:
            verification = verify(
                options["database"], options["directory"], options["ids"], options["all"], options["keep"], reporter
            )
            found += [("shared", result) for result in verification.results]
        if tenant_set:
            if shared and not options["json"]:
                self.say("The tenant set, once, in a schema of its own:")
            verification = verify_tenant_set(
                options["database"], options["directory"], options["ids"], options["all"], options["keep"], reporter
            )
            found += [("tenant", result) for result in verification.results]
        if options["json"]:
            objects = [{**result.as_dict(), "set": name} if tenant_set else result.as_dict() for name, result in found]
            self.stdout.write(json.dumps(objects, indent=2))
        results = [result for _, result in found]
        if not results:
            if not options["json"]:
                self.say("No migrations to verify.")
            return
        failed = [result.migration.id for result in results if not result.passed]
        if failed:
            raise CommandError(
                f"round trip failed for {len(failed)} of {plural(len(results), 'migration')}: {', '.join(failed)}",
                returncode=EXIT_REHEARSAL,
            )
        if not options["json"]:
            self.say(self.style.SUCCESS(f"All round trips match ({plural(len(results), 'migration')})."))


class ThrowawayLines(VerifyReporter):
    """One line on stderr (stdout may be ``--json``) for each throwaway database dropped,
    kept or left behind, naming it; only the last in a warning's colour."""

    def __init__(self, command: SqlMigrateCommand) -> None:
        self.command = command

    def dropped_leftovers(self, names: list[str]) -> None:
        """Say which leftovers of earlier runs were dropped."""
        count = plural(len(names), "throwaway database")
        self.command.stderr.write(f"Dropped {count} left behind by earlier verify runs: {', '.join(names)}.", str)

    def kept(self, name: str) -> None:
        """Say where to look (``--keep``)."""
        self.command.stderr.write(f"Kept the throwaway database {name}.", str)

    def left_behind(self, name: str, why: str, marked: bool) -> None:
        """Say which database stays, why, and who will drop it."""
        later = "the next sqlmigrate_verify will try to drop it, or drop it by hand" if marked else "drop it by hand"
        message = f"Left the throwaway database {name} behind ({why}): {later}."
        self.command.stderr.write(message, self.command.style.WARNING)
        self.command.stderr.flush()


class TextReporter(ThrowawayLines):
    """Prints each migration's rehearsal as it ends, and what differs."""

    def started(self, database: str, tested: list[Migration]) -> None:
        """Say where the rehearsals run."""
        self.command.say(f"Verifying {plural(len(tested), 'migration')} in the throwaway database {database}...")

    def preparing(self, migrations: list[Migration]) -> None:
        """Say that earlier migrations are applied first."""
        self.command.say(f"  applying {plural(len(migrations), 'earlier migration')} first")

    def verified(self, result: Rehearsal) -> None:
        """One line per migration; below it, every step that did not match and the objects."""
        style = self.command.style
        paint = style.SUCCESS if result.passed else style.ERROR
        if result.outcome == Outcome.IRREVERSIBLE:
            paint = style.WARNING
        level = 1 if result.passed else 0
        self.command.say(f"  {result.migration.id}: {paint(OUTCOMES[result.outcome])}", level=level)
        for mismatch in result.mismatches:
            self.command.say(f"    {mismatch.message}:", level=0)
            print_changes(self.command, mismatch.changes, CHANGES, "      ")
        if result.error:
            self.command.say(f"    {result.error}", level=0)
