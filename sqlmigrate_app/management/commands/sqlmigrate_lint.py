from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django.db import connections

from ... import conf
from ...errors import ProblemKind, plural
from ...files import Migration
from ...lint import Finding, applies_to, lint_selected, lint_tenant_set
from ..base import EXIT_CODES, SqlMigrateCommand, exit_codes_line
from ..fleet import add_set_arguments, chosen_sets


class Command(SqlMigrateCommand):
    """``sqlmigrate_lint [ID ...]``: squawk's lock and safety lint of PostgreSQL migrations."""

    help = (
        "Lint migrations with squawk (locks, rewrites, unsafe changes), knowing their transactions and timeouts. "
        "Default: the migrations pending on the database. PostgreSQL only."
    )
    exit_codes_help = exit_codes_line(
        "no findings (or not PostgreSQL)", [(EXIT_CODES[ProblemKind.LINT], "squawk found something")]
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("ids", nargs="*", metavar="ID", help="Migrations to lint (ids, file names or paths).")
        parser.add_argument("--all", action="store_true", help="Lint every migration.")
        parser.add_argument("--down", action="store_true", help="Lint the DOWN sections too.")
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="RULE",
            help="A squawk rule not to report (repeat it, or separate rules with commas).",
        )
        parser.add_argument("--json", action="store_true", help="Print the findings as a JSON array.")
        add_set_arguments(parser, "Lint")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        using = conf.check_alias(options["database"])
        if not applies_to(connections[using]):
            note = f"lint is for PostgreSQL: database {using!r} is {connections[using].display_name}, nothing to do."
            if options["json"]:
                self.stdout.write("[]")
                self.stderr.write(note)
            else:
                self.say(note)
            return
        exclude = [rule.strip() for value in options["exclude"] for rule in value.split(",") if rule.strip()]
        shared, tenant_set = chosen_sets(options, named=bool(options["ids"]))
        migrations: list[Migration] = []
        findings: list[Finding] = []
        if shared:
            migrations, findings = lint_selected(
                using, options["directory"], options["ids"], options["all"], exclude, options["down"]
            )
        if tenant_set:  # the tenant set's files, once
            tenant_migrations, tenant_findings = lint_tenant_set(
                using, options["ids"], options["all"], exclude, options["down"]
            )
            migrations, findings = migrations + tenant_migrations, findings + tenant_findings
        if options["json"]:
            self.stdout.write(json.dumps([finding.as_dict() for finding in findings], indent=2))
        else:
            for finding in findings:
                self.stdout.write(f"{finding}")
                if finding.help:
                    self.stdout.write(f"    help: {finding.help}")
        if findings:
            linted = len({finding.migration_id for finding in findings})
            raise CommandError(
                f"lint: {plural(len(findings), 'finding')} in {plural(linted, 'migration')}",
                returncode=EXIT_CODES[ProblemKind.LINT],
            )
        if not options["json"]:
            what = plural(len(migrations), "migration") if migrations else "no pending migrations"
            self.say(self.style.SUCCESS(f"Lint: nothing found ({what})."))
