"""What every ``sqlmigrate_*`` command shares: the common options (``--database``, ``--dir``,
``--wait``), errors as one-line ``CommandError``s with the exit-code policy (:data:`EXIT_CODES`),
SIGTERM taken as Ctrl-C, a closed output as a quiet stop, and the lines that show progress,
plans and summaries (:class:`ProgressReporter`)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from argparse import ArgumentParser
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

import django
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from .. import __version__, schema_file
from ..errors import ProblemKind, SchemaFileError, SqlMigrateError, Terminated, UnsupportedPooler, plural, printable
from ..executor import Action, Reporter, Result
from ..files import Migration
from ..runner import MigrationRunner
from ..snapshot import Change, ChangeKind

# Exit codes of ``sqlmigrate_status --check`` and ``sqlmigrate_validate``, one per kind of
# problem, so a pipeline can tell "deploy needs migrations" (3) from "history was tampered
# with" (5, 6). With several kinds the highest code wins. 1 stays "error" (bad arguments,
# database unreachable), 2 is argparse's usage error.
EXIT_CODES = {
    ProblemKind.PENDING: 3,
    ProblemKind.OUT_OF_ORDER: 4,
    ProblemKind.MODIFIED: 5,
    ProblemKind.MISSING: 6,
    ProblemKind.BAD_FILE: 7,
    ProblemKind.HISTORY_TABLE: 8,
    ProblemKind.LINT: 10,  # squawk found something: sqlmigrate_lint, sqlmigrate_validate --lint
}
# The checks a pull request runs: a rehearsal that does not match (sqlmigrate_verify), and a
# schema file that differs from the database (sqlmigrate_dump --check).
EXIT_REHEARSAL, EXIT_SCHEMA_FILE = 9, 11
# The schema file cannot be written (up, down and redo: after their migrations committed, so a
# deploy script can tell it from a failed migration; dump) or read (dump --check).
EXIT_SCHEMA_FILE_NOT_WRITTEN = 12
# A fleet run (several databases, or tenants) in which some histories failed: each other one was
# done or had nothing to do, and each history says which (run the command again to finish).
EXIT_SOME_FAILED = 13
# The live schema differs from the one its applied migrations produce (sqlmigrate_drift, and
# sqlmigrate_up --check-drift, which then applies nothing).
EXIT_DRIFT = 14
# The database is behind a connection pooler no migration can run through (PgBouncer's
# statement mode, or transaction pooling the alias does not declare).
EXIT_POOLER = 15
POOLER = (EXIT_POOLER, "refused: a connection pooler in statement mode, or undeclared transaction mode")
# Lines of each object's difference verify and drift show below -v 2.
SHOWN_LINES = 30
# Exit codes of a run stopped by a signal, as a shell reports them: 128 + the signal's number.
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
# A command whose reader went away (``sqlmigrate_status | head -1``) stops quietly with the code
# of a process killed by SIGPIPE, as ``cat`` or ``grep`` would.
EXIT_BROKEN_PIPE = 141


def exit_codes_line(success: str, own: Iterable[tuple[int, str]], after: str = "") -> str:
    """The line of exit codes ``--help`` ends with: 0 (``success``), 1 and 2, the command's
    ``own``, the signals'."""
    codes = [f"0 {success}", "1 error (bad arguments, database unreachable)", "2 usage"]
    codes += [f"{code} {meaning}" for code, meaning in own]
    signals = f"{EXIT_INTERRUPTED} Ctrl-C, {EXIT_TERMINATED} SIGTERM, {EXIT_BROKEN_PIPE} output closed (broken pipe)"
    return f"Exit codes: {'; '.join(codes)}; {signals}.{after}"


def problem_codes_line(success: str, kinds: Iterable[ProblemKind] = EXIT_CODES) -> str:
    """status's and validate's line: a code per kind of problem they can find."""
    own = [(EXIT_CODES[kind], kind.value.replace("_", " ")) for kind in kinds]
    return exit_codes_line(success, own, " With several problems the highest code wins.")


def exit_code(kinds: Iterable[ProblemKind]) -> int:
    """The exit code for a set of problem kinds: 0 when there are none."""
    return max((EXIT_CODES[kind] for kind in kinds), default=0)


@contextmanager
def start_up_frozen() -> Iterator[None]:
    """Keep the cycle collector off the objects Django's start-up made while a command runs.

    Loading 10,000 files makes enough objects to set off full collections, each walking every
    object of the process, most of them Django's own (``gc.freeze``; what it spares a status,
    validate or no-op up at 10,000: benchmarks/README.md). They are handed back
    afterwards, for a process that goes on (``call_command``); a process that froze objects
    itself (a pre-forking server) is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated`, so a deploy tool stopping it
    gets the same clean stop as Ctrl-C: the query cancelled, the transaction rolled back, the
    lock released. Only the main thread can take signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interruption(exc: KeyboardInterrupt) -> CommandError:
    """The one-line error of a run stopped by Ctrl-C or SIGTERM, with the shell's exit code; a
    ``MigrationInterrupted`` or ``FleetInterrupted`` says what became of what it stopped."""
    terminated = bool(getattr(exc, "terminated", isinstance(exc, Terminated)))
    message = str(exc) or f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'})"
    return CommandError(printable(message), returncode=EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)


def silence_closed_output() -> None:
    """Point standard output and error at the null device, so that Python's own flush of them
    at exit does not fail a second time on a pipe nobody reads (Python's documentation, "Note
    on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or not a file
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


@contextmanager
def escaping_unencodable(*wrappers: OutputWrapper) -> Iterator[None]:
    """Print what a console's encoding (cp1252, or ASCII with PYTHONIOENCODING=ascii) cannot show as escapes
    instead of failing with UnicodeEncodeError: SQL, paths and names may hold any character."""
    changed: list[Any] = []  # io.TextIOWrapper streams (sys.stdout), not a StringIO
    for wrapper in wrappers:
        stream: Any = wrapper._out
        if hasattr(stream, "reconfigure") and stream.errors == "strict":
            changed.append(stream)
            stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        for stream in changed:
            stream.reconfigure(errors="strict")


def can_print(wrapper: OutputWrapper, text: str) -> bool:
    """Whether ``text`` survives the stream's encoding (a StringIO takes anything)."""
    encoding = getattr(wrapper._out, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class SqlMigrateCommand(BaseCommand):
    """Base of every ``sqlmigrate_*`` command: ``--database``, ``--dir``, one-line errors."""

    requires_migrations_checks = False
    requires_system_checks: list[str] = []
    database_help = "Database alias to use (default: 'default')."
    # Whether ``--database`` may be repeated (with ``--all-databases``): a command that works on a
    # fleet (management/fleet.py) declares it so.
    several_databases = False
    # The command's exit codes, shown at the end of ``--help``; None for a command that has
    # only 0 and 1 (and 130/143 when stopped).
    exit_codes_help: str | None = None

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """The parser, with the command's exit codes at the end of ``--help``."""
        if self.exit_codes_help:
            kwargs.setdefault("epilog", self.exit_codes_help)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: ArgumentParser) -> None:
        """``--database`` and ``--dir``, common to every command."""
        if self.several_databases:
            parser.add_argument(
                "--database", action="append", metavar="ALIAS", help=f"{self.database_help} Repeat it for several."
            )
        else:
            parser.add_argument("--database", default="default", help=self.database_help)
        parser.add_argument(
            "--dir", dest="directory", help="Migrations directory (default: SQLMIGRATE_DIRS / SQLMIGRATE_DIR)."
        )

    def run_from_argv(self, argv: list[str]) -> None:
        """Run from ``manage.py``; when the reader of its output goes away (``| head -1``, ``|
        true``), stop there quietly with :data:`EXIT_BROKEN_PIPE`, as a shell tool does."""
        try:
            super().run_from_argv(argv)
        except BrokenPipeError:
            silence_closed_output()
            sys.exit(EXIT_BROKEN_PIPE)

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the command; a SqlMigrateError or an interrupt becomes a one-line CommandError,
        what it quotes of names and messages made :func:`~..errors.printable`."""
        try:
            with sigterm_as_interrupt(), start_up_frozen():
                return super().execute(*args, **options)
        except SqlMigrateError as exc:
            code = EXIT_POOLER if isinstance(exc, UnsupportedPooler) else 1
            raise CommandError(printable(str(exc)), returncode=code) from exc
        except KeyboardInterrupt as exc:
            raise interruption(exc) from exc

    def get_version(self) -> str:
        """``--version``: sqlmigrate's version, and Django's."""
        return f"django-sqlmigrate {__version__} (Django {django.get_version()})"

    def runner(self, options: dict[str, Any], **kwargs: Any) -> MigrationRunner:
        """The :class:`MigrationRunner` of the chosen database and directory."""
        return MigrationRunner(using=options["database"], directory=options["directory"], **kwargs)

    def add_wait_argument(self, parser: ArgumentParser) -> None:
        """``--wait SECONDS`` for the run-wide lock (not ``--lock-timeout``, which would be taken
        for PostgreSQL's ``lock_timeout``, the directive and ``SQLMIGRATE_LOCK_TIMEOUT``)."""
        parser.add_argument(
            "--wait",
            type=float,
            metavar="SECONDS",
            help="Give up after waiting this long for another sqlmigrate runner (default: wait as long as it takes).",
        )

    def say(self, message: str, level: int = 1, ending: str = "\n") -> None:
        """Print ``message`` at verbosity ``level`` or above, at once."""
        if self.verbosity >= level:
            self.stdout.write(message, ending=ending)
            self.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> Any:
        """Run :meth:`run` with the console made safe for any character."""
        self.verbosity = options["verbosity"]
        with escaping_unencodable(self.stdout, self.stderr):
            return self.run(**options)

    def run(self, **options: Any) -> Any:
        """What the command does; each command defines it."""
        raise NotImplementedError


class ProgressReporter(Reporter):
    """Prints ``Applying 2024..._name... OK (12 ms)`` as migrations run."""

    VERBS = {Action.APPLIED: "Applying", Action.FAKED: "Faking", Action.ROLLED_BACK: "Rolling back"}

    def __init__(self, command: SqlMigrateCommand) -> None:
        self.command = command

    def waiting(self, message: str) -> None:
        """Say that another runner holds the lock."""
        self.command.say(self.command.style.WARNING(message))

    def starting(self, migration: Migration, action: Action) -> None:
        """Print ``Applying <id>...`` and leave the line open."""
        self.command.say(f"{self.VERBS[action]} {migration.id}...", ending="")

    def finished(self, result: Result) -> None:
        """Close the line: ``OK``, ``FAKED`` or ``SKIPPED``, and the time."""
        style = self.command.style
        outcome = {
            Action.SKIPPED: style.WARNING(" SKIPPED (done by another runner)"),
            Action.FAKED: style.SUCCESS(" FAKED"),
        }
        text = outcome.get(result.action, style.SUCCESS(" OK"))
        self.command.say(f"{text} ({result.elapsed_ms:.0f} ms)")

    def retrying(self, migration: Migration, attempt: int, attempts: int, pause: float) -> None:
        """Say the lock timeout hit, and when the next try starts; the line stays open."""
        self.command.say(
            self.command.style.WARNING(f" LOCK TIMEOUT, try {attempt} of {attempts} in {pause:g} s..."), ending=""
        )

    def failed(self, migration: Migration, elapsed_ms: float) -> None:
        """Close the line with ``FAILED``; the error follows."""
        self.command.say(f"{self.command.style.ERROR(' FAILED')} ({elapsed_ms:.0f} ms)")

    def interrupted(self, migration: Migration, elapsed_ms: float) -> None:
        """Close the line with ``INTERRUPTED``; the error follows."""
        self.command.say(f"{self.command.style.ERROR(' INTERRUPTED')} ({elapsed_ms:.0f} ms)")


def counted(results: list[Result]) -> int:
    """How many of ``results`` this run did (not those another runner did first)."""
    return sum(1 for result in results if result.action != Action.SKIPPED)


def print_summary(command: SqlMigrateCommand, results: list[Result], done: str, nothing: str, started: float) -> None:
    """``Applied 3 migrations in 33 ms.``, or ``nothing`` when another runner did it all."""
    count = counted(results)
    if not count:
        command.say(nothing)
        return
    elapsed = (perf_counter() - started) * 1000
    command.say(command.style.SUCCESS(f"{done} {plural(count, 'migration')} in {elapsed:.0f} ms."))


def print_plan(command: SqlMigrateCommand, title: str, migrations: list[Migration], nothing: str, down: bool) -> None:
    """The migrations a command would run, with their SQL at ``-v 2``."""
    if not migrations:
        command.say(nothing)
        return
    command.say(command.style.MIGRATE_HEADING(title))
    for migration in migrations:
        flags = "" if migration.transactional else " (no-transaction)"
        command.say(f"  {migration.id}{flags}")
        section = migration.down if down else migration.up
        command.say(section.sql.strip() + "\n", level=2)


def print_changes(
    command: SqlMigrateCommand, changes: Iterable[Change], words: dict[ChangeKind, str], indent: str
) -> None:
    """Each differing object (``words`` say how it differs) and its lines, at every verbosity;
    below ``-v 2`` at most :data:`SHOWN_LINES` lines of each. What a database holds is
    :func:`~..errors.printable`: drift reads a live one, whose names anybody may have written."""
    for change in changes:
        command.say(f"{indent}{words[change.change]}: {printable(change.object)}", level=0)
        shown = change.diff if command.verbosity >= 2 else change.diff[:SHOWN_LINES]
        for line in shown:
            command.say(f"{indent}  {printable(line)}", level=0)
        if len(shown) < len(change.diff):
            command.say(f"{indent}  ... ({len(change.diff) - len(shown)} more lines; -v 2 shows them)", level=0)


def rewrite_schema_file(command: SqlMigrateCommand, runner: MigrationRunner, results: list[Result], done: str) -> None:
    """After a successful ``up``, ``down`` or ``redo``: rewrite ``SQLMIGRATE_SCHEMA_FILE`` when it
    is set. The migrations have committed by then: a file that cannot be written is one line
    saying so and what was ``done`` (``applied and recorded in the history``), exit 12."""
    try:
        path = schema_file.rewrite(runner)
    except SchemaFileError as exc:
        raise CommandError(
            f"{plural(counted(results), 'migration')} {done}, but {exc}", returncode=EXIT_SCHEMA_FILE_NOT_WRITTEN
        ) from exc
    if path is not None:
        command.say(f"Wrote the schema to {path}.")
