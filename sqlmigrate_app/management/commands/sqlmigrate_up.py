from __future__ import annotations

from argparse import ArgumentParser
from time import perf_counter
from typing import Any

from django.core.management.base import CommandError

from ... import conf
from ...drift import drift
from ...drift_tenants import FleetDrift, drift_fleet
from ...errors import ConfigurationError
from ...fleet import Up, plan_fleet
from ...runner import MigrationRunner
from ...tenants import Target
from ..base import (
    EXIT_DRIFT,
    EXIT_SCHEMA_FILE_NOT_WRITTEN,
    ProgressReporter,
    SqlMigrateCommand,
    exit_codes_line,
    print_plan,
    print_summary,
    rewrite_schema_file,
)
from ..fleet import (
    SOME_FAILED,
    add_run_arguments,
    add_selection_arguments,
    fleet_targets,
    one_script_target,
    print_fleet_plan,
    rewrite_schema_files,
    run_fleet_command,
)
from .sqlmigrate_drift import DriftLines, FleetLines

NOTHING_PENDING = "No pending migrations."
APPLIED = "applied and recorded in the history"


class Command(SqlMigrateCommand):
    """``sqlmigrate_up``: apply the pending migrations, of one database or of a fleet."""

    help = (
        "Apply pending SQL migrations, each in its own transaction: the shared set, then every tenant schema "
        "where a tenant set is configured."
    )
    several_databases = True
    exit_codes_help = exit_codes_line(
        "applied, or nothing pending",
        [
            (EXIT_SCHEMA_FILE_NOT_WRITTEN, "migrations applied, schema file not written"),
            SOME_FAILED,
            (EXIT_DRIFT, "--check-drift: the schema drifted, nothing applied"),
        ],
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument(
            "--to", metavar="ID", help="Stop after this migration (its id, file name or 14-digit timestamp)."
        )
        parser.add_argument("--plan", action="store_true", help="Show what would run; change nothing.")
        parser.add_argument(
            "--sql",
            action="store_true",
            help="Print the SQL script that would run (BEGIN/COMMIT, timeouts, history rows); change nothing.",
        )
        parser.add_argument(
            "--fake", action="store_true", help="Record pending migrations as applied without running them."
        )
        parser.add_argument(
            "--allow-out-of-order",
            action="store_true",
            help="Apply pending migrations older than the newest applied one.",
        )
        parser.add_argument(
            "--retries",
            type=int,
            metavar="N",
            help="Try a migration that failed on its lock timeout N more times, pausing longer each time "
            "(default: SQLMIGRATE_RETRIES, else 0).",
        )
        parser.add_argument(
            "--check-drift",
            action="store_true",
            help="First compare the schema with the one the applied migrations produce (as sqlmigrate_drift does); "
            "if it differs, apply nothing and exit 14.",
        )
        self.add_wait_argument(parser)
        add_selection_arguments(parser)
        add_run_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print one JSON object per database and tenant.")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        if options["retries"] is not None and options["retries"] < 0:
            raise ConfigurationError(f"--retries {options['retries']}: give a number of at least 0")
        operation = Up(options["to"], options["fake"], options["allow_out_of_order"])
        targets = fleet_targets(options, force=options["json"])
        if targets is None:
            self.run_one(options)
            return
        if options["check_drift"]:
            self.check_fleet_drift(targets, options, say=not (options["sql"] or options["json"]))
        if options["sql"]:
            self.stdout.write(
                self.script_runner(one_script_target(targets), options).up_script(
                    to=operation.to, allow_out_of_order=operation.allow_out_of_order
                ),
                ending="",
            )
        elif options["plan"]:
            print_fleet_plan(
                self, plan_fleet(targets, operation, options["directory"]), "Planned migrations:", "nothing pending"
            )
        else:
            results = run_fleet_command(self, targets, operation, options)
            rewrite_schema_files(self, results, options["directory"], APPLIED)

    def script_runner(self, target: Target, options: dict[str, Any]) -> MigrationRunner:
        """The runner of the one history ``--sql`` prints the script of."""
        directory = options["directory"] if target.schema is None else None
        return MigrationRunner(target.database, directory, schema=target.schema)

    def run_one(self, options: dict[str, Any]) -> None:
        """One database's shared set, as before tenants: every migration's line as it runs."""
        runner = self.runner(
            options, lock_wait_timeout=options["wait"], reporter=ProgressReporter(self), retries=options["retries"]
        )
        if options["check_drift"]:
            self.check_drift(options, say=not options["sql"])
        to, out_of_order = options["to"], options["allow_out_of_order"]
        if options["sql"]:
            self.stdout.write(runner.up_script(to=to, allow_out_of_order=out_of_order), ending="")
            return
        if options["plan"]:
            print_plan(
                self,
                "Planned migrations:",
                runner.plan(to=to, allow_out_of_order=out_of_order),
                NOTHING_PENDING,
                down=False,
            )
            return
        started = perf_counter()
        results = runner.migrate(to=to, fake=options["fake"], allow_out_of_order=out_of_order)
        print_summary(self, results, "Faked" if options["fake"] else "Applied", NOTHING_PENDING, started)
        done = "recorded as applied (--fake)" if options["fake"] else APPLIED
        rewrite_schema_file(self, runner, results, done)

    def check_fleet_drift(self, targets: list[Target], options: dict[str, Any], say: bool) -> None:
        """Refuse to apply anything anywhere when a shared set or a tenant that this run chose
        drifted, in one line naming the first differences and the command that shows them all;
        else ``say`` so. A history with an applied file changed or gone is not compared: the
        run refuses it next."""
        result = drift_fleet(targets, options["directory"], reporter=FleetLines(self))
        if result.drifted:
            raise CommandError(
                f"not applying anything: {result.first_differences()}; see them all with '{drift_command(result)}'",
                returncode=EXIT_DRIFT,
            )
        for shared in result.shared:
            if say and shared.comparison is not None:
                self.say(f"No drift: {shared.summary()}.")
        if say and result.tenants:
            self.say(f"No drift: {result.tenant_summary()}")

    def check_drift(self, options: dict[str, Any], say: bool) -> None:
        """Refuse to go on when the schema drifted, in one line naming the first differences;
        else ``say`` so (not into a ``--sql`` script). An applied migration modified or missing
        is not compared: ``up`` refuses it next. With a tenant set configured, the tenants'
        schemas are left out of the comparison (:meth:`check_fleet_drift`)."""
        if conf.tenant_dir(options["database"]) is not None:
            self.check_fleet_drift([Target(options["database"])], options, say)
            return
        result = drift(options["database"], options["directory"], reporter=DriftLines(self))
        if result.drifted:
            raise CommandError(
                f"not applying anything: {result.summary()}; see them all with "
                f"'manage.py sqlmigrate_drift --database {result.database}'",
                returncode=EXIT_DRIFT,
            )
        if result.comparison is not None and say:
            self.say(f"No drift: {result.summary()}.")


def drift_command(result: FleetDrift) -> str:
    """The command that shows every difference of the first drifted history."""
    for shared in result.shared:
        if shared.drifted:
            return f"manage.py sqlmigrate_drift --database {shared.database} --shared"
    database = next(tenant.target.database for tenant in result.tenants if tenant.drifted)
    return f"manage.py sqlmigrate_drift --database {database} --tenants"
