from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from ... import conf
from ...errors import SchemaFileError
from ...schema_file import differences, render, render_tenant_set, tenant_set_file, write
from ..base import EXIT_SCHEMA_FILE, EXIT_SCHEMA_FILE_NOT_WRITTEN, SqlMigrateCommand, exit_codes_line
from ..fleet import add_set_arguments, chosen_sets


class Command(SqlMigrateCommand):
    """``sqlmigrate_dump``: the schema and the applied migrations, written to the schema file."""

    help = (
        "Write the database schema and the applied migrations to SQLMIGRATE_SCHEMA_FILE (or --output), "
        "or with --check fail when that file differs from the database."
    )
    exit_codes_help = exit_codes_line(
        "written (--check: the file matches the database)",
        [
            (EXIT_SCHEMA_FILE, "--check: the file differs"),
            (EXIT_SCHEMA_FILE_NOT_WRITTEN, "the file cannot be written (--check: cannot be read)"),
        ],
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument(
            "--output", metavar="FILE", help="Where to write it (default: SQLMIGRATE_SCHEMA_FILE; - for stdout)."
        )
        parser.add_argument(
            "--check", action="store_true", help="Write nothing; exit 11 if the file differs from the database."
        )
        add_set_arguments(parser, "Dump")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome: the shared set's file, and the tenant set's (``--shared``,
        ``--tenants``; by default both where a tenant set is configured)."""
        shared, tenant_set = chosen_sets(options)
        output = options["output"]
        if output and shared and tenant_set:
            raise CommandError("--output names one file, and a tenant set is configured: add --shared or --tenants")
        if shared:
            runner = self.runner(options)
            self.dump(options, conf.schema_file(runner.using), lambda: render(runner))
        if tenant_set:
            configured = conf.schema_file(options["database"])
            using = options["database"]
            self.dump(
                options,
                tenant_set_file(configured) if configured else None,
                lambda: render_tenant_set(using, options["directory"]),
            )

    def dump(self, options: dict[str, Any], configured: Path | None, text: Callable[[], str]) -> None:
        """Write one set's schema file (``--output``, else ``configured``; neither: stdout), or check it."""
        output = options["output"]
        # No file (- or no setting): standard output.
        path = None if output == "-" else Path(output) if output else configured
        if options["check"] and path is None:
            raise CommandError("--check compares a file: set SQLMIGRATE_SCHEMA_FILE or give --output FILE")
        if path is None:
            self.stdout.write(text(), ending="")
            return
        try:
            self.to_file(path, text(), options["check"])
        except SchemaFileError as exc:
            raise CommandError(str(exc), returncode=EXIT_SCHEMA_FILE_NOT_WRITTEN) from exc

    def to_file(self, path: Path, text: str, check: bool) -> None:
        """Write ``text`` to the file at ``path`` or, with ``check``, compare them."""
        if check:
            diff = differences(path, text)
            if diff:
                self.stderr.write("\n".join(diff))
                raise CommandError(
                    f"{path} differs from the database: run sqlmigrate_dump and commit it", returncode=EXIT_SCHEMA_FILE
                )
            self.say(self.style.SUCCESS(f"{path} matches the database."))
        elif write(path, text):
            self.say(self.style.SUCCESS(f"Wrote {path}."))
        else:
            self.say(f"{path} is up to date.")
