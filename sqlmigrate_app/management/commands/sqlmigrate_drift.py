from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ... import conf
from ...drift import WHERE, Drift, DriftReporter, drift
from ...drift_sql import fix_script
from ...drift_tenants import FleetDrift, FleetDriftReporter, TenantDrift, drift_fleet, named
from ...errors import ConfigurationError, ProblemKind, plural, printable
from ...files import Migration
from ...tenants import Target, select_targets
from ..base import (
    EXIT_CODES,
    EXIT_DRIFT,
    EXIT_SOME_FAILED,
    SqlMigrateCommand,
    exit_code,
    exit_codes_line,
    print_changes,
)
from ..fleet import add_selection_arguments, chosen_databases, chosen_selection
from .sqlmigrate_verify import ThrowawayLines


class Command(SqlMigrateCommand):
    """``sqlmigrate_drift``: the live schema against the one its applied migrations produce."""

    help = (
        "Rebuild the migrations applied on the database in a throwaway database and compare the two schemas: "
        "what was added, dropped or changed by hand. The database is only read."
    )
    exit_codes_help = exit_codes_line(
        "the schema is the one its applied migrations produce",
        [
            (EXIT_CODES[ProblemKind.MODIFIED], "an applied migration's file changed: not compared"),
            (EXIT_CODES[ProblemKind.MISSING], "an applied migration's file is missing: not compared"),
            (EXIT_SOME_FAILED, "a tenant's history cannot be read (its schema is missing): not compared"),
            (EXIT_DRIFT, "drifted: the schema differs (of the database, or of a tenant)"),
        ],
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="Print one JSON object.")
        output.add_argument(
            "--sql",
            action="store_true",
            help="Print SQL that would bring the schema back to the migrations' (never run by sqlmigrate).",
        )
        parser.add_argument("--keep", action="store_true", help="Keep the throwaway database and print its name.")
        parser.add_argument(
            "--rebuild-on",
            metavar="ALIAS",
            help="Make the throwaway database where this alias's are made (e.g. a CI service), not on the "
            "database's own server, which is then only read (default: --database).",
        )
        add_selection_arguments(parser)

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome: one database as before tenants, or a fleet."""
        targets = drift_targets(options)
        if targets is None:
            self.run_one(options)
        else:
            self.run_fleet(targets, options)

    def run_one(self, options: dict[str, Any]) -> None:
        """One database, no tenant set: its whole schema against its rebuild."""
        quiet = options["json"] or options["sql"]
        reporter = DriftLines(self) if quiet else TextReporter(self)
        result = drift(
            options["database"], options["directory"], options["keep"], reporter, rebuild_on=options["rebuild_on"]
        )
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif options["sql"] and result.comparison is not None:
            self.stdout.write(fix_script(result), ending="")
        elif not quiet:
            self.report(result)
        if result.problems:
            kinds = {problem.kind for problem in result.problems}
            raise CommandError(f"{result.summary()}: restore the files, then run it again", returncode=exit_code(kinds))
        if result.drifted:
            hint = "" if options["sql"] else "; sqlmigrate_drift --sql prints SQL that would undo it"
            raise CommandError(result.summary() + hint, returncode=EXIT_DRIFT)

    def run_fleet(self, targets: list[Target], options: dict[str, Any]) -> None:
        """Shared sets and tenants, each against the rebuild of its applied state."""
        if options["sql"] and not (len(targets) == 1 and targets[0].schema is None):
            raise ConfigurationError("--sql prints the script of one database's shared set: add --shared")
        quiet = options["json"] or options["sql"]
        reporter = FleetLines(self) if quiet else FleetText(self)
        result = drift_fleet(targets, options["directory"], options["keep"], reporter, options["rebuild_on"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_list(), indent=2))
        elif options["sql"] and result.shared[0].comparison is not None:
            self.stdout.write(fix_script(result.shared[0]), ending="")
        elif not quiet:
            self.report_fleet(result)
        fleet_exit(result, options["sql"])

    def report_fleet(self, result: FleetDrift) -> None:
        """Each shared set as one database's; each drifted tenant's differences and each one not
        compared; a summary of the tenants."""
        for shared in result.shared:
            self.report(shared)
        for tenant in result.tenants:
            if tenant.drifted and tenant.comparison is not None:
                self.say(f"  {printable(str(tenant.target.schema))}:", level=0)
                print_changes(self, tenant.comparison.changes, WHERE, "    ")
            elif tenant.comparison is None:
                self.say(f"  {printable(str(tenant.target.schema))}: not compared: {why_not(tenant)}", level=0)
        if result.tenants:
            self.say(result.tenant_summary(), level=0 if any(tenant.drifted for tenant in result.tenants) else 1)

    def report(self, result: Drift) -> None:
        """The differences, or what kept drift from comparing; the objects left out."""
        for problem in result.problems:
            self.say(f"  {printable(problem.message)}", level=0)
        if result.comparison is None:
            return
        print_changes(self, result.comparison.changes, WHERE, "  ")
        ignored = result.comparison.ignored
        if ignored:
            self.say(f"Left out by SQLMIGRATE_DRIFT_IGNORE: {plural(len(ignored), 'differing object')}.")
        if not result.drifted:
            self.say(self.style.SUCCESS(f"No drift: {result.summary()}."))


class DriftLines(ThrowawayLines, DriftReporter):
    """Throwaway databases dropped, kept or left behind, on stderr (stdout may be ``--json`` or
    ``--sql``), as verify says them."""


class TextReporter(DriftLines):
    """Also says where the rebuild runs."""

    def rebuilding(self, database: str, migrations: list[Migration]) -> None:
        """Say what is rebuilt, and where."""
        count = plural(len(migrations), "applied migration")
        self.command.say(f"Rebuilding {count} in the throwaway database {database}...")


def drift_targets(options: dict[str, Any]) -> list[Target] | None:
    """The histories to compare: None for one database without a tenant set (the command then
    does what it did before tenants); else each chosen database's shared set (its tenants'
    schemas left out of it) and tenants, as ``up`` chooses them (the default: the shared set,
    then every tenant)."""
    targets = select_targets(chosen_databases(options), chosen_selection(options))
    if len(targets) == 1 and targets[0].schema is None and conf.tenant_dir(targets[0].database) is None:
        options["database"] = targets[0].database
        return None
    return targets


def why_not(tenant: TenantDrift) -> str:
    """Why a tenant was not compared: its history's error, or the files changed since they ran."""
    if tenant.error is not None:
        return printable(str(tenant.error))
    return "; ".join(printable(problem.message) for problem in tenant.problems)


def fleet_exit(result: FleetDrift, sql: bool) -> None:
    """Exit 14 when anything drifted; else the code of a changed or missing file (5, 6); else 13
    when a tenant's history could not be read; else 0."""
    drifted = [shared.summary() for shared in result.shared if shared.drifted]
    tenants = [tenant for tenant in result.tenants if tenant.drifted]
    if tenants:
        drifted.append(f"{plural(len(tenants), 'tenant')} of {len(result.tenants)} drifted: {named(tenants)}")
    if drifted:
        shared = any(one.drifted for one in result.shared)
        hint = (
            "; sqlmigrate_drift --sql --shared prints SQL that would undo the shared set's"
            if shared and not sql
            else ""
        )
        raise CommandError("; ".join(drifted) + hint, returncode=EXIT_DRIFT)
    unread = [one.problems for one in result.shared if one.comparison is None]
    unread += [one.problems for one in result.tenants if one.comparison is None and one.problems]
    kinds = {problem.kind for problems in unread for problem in problems}
    if kinds:
        raise CommandError(
            f"drift not checked where an applied migration changed or went since it ran "
            f"({plural(len(unread), 'history' if len(unread) == 1 else 'histories')}): restore the files, "
            "then run it again",
            returncode=exit_code(kinds),
        )
    failed = [tenant for tenant in result.tenants if tenant.error is not None]
    if failed:
        raise CommandError(
            f"{plural(len(failed), 'tenant')} not compared: {named(failed)}", returncode=EXIT_SOME_FAILED
        )


class FleetLines(DriftLines, FleetDriftReporter):
    """Throwaway databases dropped, kept or left behind, on stderr."""


class FleetText(FleetLines):
    """Also says what is rebuilt, and where."""

    def rebuilding(self, database: str, migrations: list[Migration]) -> None:
        """Say where the rebuild runs, and what of the shared set goes first."""
        count = plural(len(migrations), "applied migration")
        self.command.say(f"Rebuilding the shared set's {count} in the throwaway database {database}...")

    def rebuilding_tenants(self, database: str, schema: str, migrations: list[Migration], tenants: int) -> None:
        """Say which applied state of the tenant set is rebuilt, for how many tenants."""
        count = plural(len(migrations), "applied migration")
        self.command.say(f"  the tenant set's {count} ({plural(tenants, 'tenant')}) in schema {schema}")
