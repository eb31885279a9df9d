"""Run migrations: each side of a migration with the history change that records it, whole or
not at all, and a one-line report of what became of it when it fails or is interrupted.

A transactional migration runs in one ``transaction.atomic`` with its history row; a
``no-transaction`` one statement by statement, its history row written after the last, its own
``BEGIN ... COMMIT`` groups rolled back if they are cut short. Either way the session settings
a migration may change are put back afterwards. Where the backend can, consecutive transactional
migrations that change no session setting travel in one message, a batch, each in a transaction
of its own: what a round trip costs across a network is paid once for them all.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from time import perf_counter, sleep
from typing import Any

from django.db import IntegrityError, transaction

from .backends import Backend, BatchEnd, Block, StatementError, TransactionEnded
from .errors import (
    DatabaseError,
    MigrationFailed,
    MigrationInterrupted,
    SqlMigrateError,
    Terminated,
    database_error_types,
    database_message,
    sqlstate,
)
from .files import Migration, Section, Timeouts
from .history import AppliedMigration, Expected, HistoryTable, repeatable_rows
from .statements import Statement, may_change_session, transaction_control

RETRY_PAUSE, LONGEST_RETRY_PAUSE = 0.5, 30.0  # seconds before the 2nd try; doubling, up to this
NOTHING_APPLIED = "rolled back, nothing of it was applied or recorded"
LOST_BEFORE_COMMIT = (
    "the connection was lost before its COMMIT was confirmed: run sqlmigrate_status to see whether it was recorded"
)


class Action(str, Enum):
    """What a run did with a migration."""

    APPLIED = "applied"
    FAKED = "faked"  # recorded as applied without running it (``--fake``)
    ROLLED_BACK = "rolled back"
    SKIPPED = "skipped"  # another runner did it first

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one migration, and how long it took."""

    migration: Migration
    action: Action
    elapsed_ms: float


class Reporter:
    """Progress callbacks; the default ignores them. Only the commands print."""

    def waiting(self, message: str) -> None:
        """Another runner holds the lock; this one waits."""

    def starting(self, migration: Migration, action: Action) -> None:
        """A migration is about to be applied, faked or rolled back."""

    def finished(self, result: Result) -> None:
        """A migration is done (or was skipped)."""

    def failed(self, migration: Migration, elapsed_ms: float) -> None:
        """A migration failed; the exception that follows says how."""

    def interrupted(self, migration: Migration, elapsed_ms: float) -> None:
        """Ctrl-C or SIGTERM stopped a migration; the exception that follows says how."""

    def retrying(self, migration: Migration, attempt: int, attempts: int, pause: float) -> None:
        """A migration hit its lock timeout and was rolled back; try ``attempt`` of ``attempts``
        starts after ``pause`` seconds."""


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a migration: the section to run and the history statement that records it,
    sent after it in its transaction."""

    migration: Migration
    action: Action  # applied or rolled back
    section: Section
    history_sql: str  # empty: the side records nothing (a repeatable's dependent dropped before it is re-created)
    before_history: tuple[str, ...] = ()  # a repeatable's old row deleted, ahead of its new one

    @property
    def applying(self) -> bool:
        """Whether this side applies the migration (its history row appears). Only the way up
        may send the COMMIT along with the section: the way down must see the DELETE's row
        count before committing."""
        return self.action == Action.APPLIED


class _AlreadyDone(Exception):
    """Another runner applied (or rolled back) this migration while we waited for it."""


def open_group(ran: list[Statement]) -> int | None:
    """The index in ``ran`` of a ``BEGIN`` whose group had not ended, if any."""
    opened = None
    for index, statement in enumerate(ran):
        control = transaction_control(statement.sql)
        if control == "begin":
            opened = index
        elif control is not None:
            opened = None
    return opened


def prelude(backend: Backend, migration: Migration, defaults: Timeouts, tenant: str | None, local: bool) -> list[str]:
    """What runs ahead of a migration's section: a ``tenant``'s schema put first on the search
    path (see :meth:`~.backends.Backend.schema_statements`), then the migration's timeouts; for
    its transaction only with ``local`` (a ``no-transaction`` migration sets them for the session)."""
    return [*backend.schema_statements(tenant, local), *backend.timeout_statements(migration.timeouts(defaults), local)]


def changes_session(
    backend: Backend, migration: Migration, section: Section, defaults: Timeouts, tenant: str | None = None
) -> bool:
    """Whether running ``section`` may leave session settings changed for the next migration:
    SQL that sets them (see :func:`~.statements.may_change_session`), or the :func:`prelude` of a
    ``no-transaction`` migration, which is the session's. The runner and the ``--sql`` script
    put the session back after such a migration."""
    if may_change_session(section.sql):
        return True
    return not migration.transactional and bool(prelude(backend, migration, defaults, tenant, local=False))


class Executor:
    """Runs migrations on one connection, in order, reporting to a :class:`Reporter`: each
    alone, or several in one message where the backend can (each still its own transaction);
    a ``tenant``'s in its schema (see :func:`prelude`)."""

    def __init__(
        self,
        backend: Backend,
        history: HistoryTable,
        reporter: Reporter,
        timeouts: Timeouts,
        retries: int = 0,
        tenant: str | None = None,
        batch_bytes: int = 0,
    ) -> None:
        self.backend = backend
        self.connection = backend.connection
        self.history = history
        self.reporter = reporter
        self.timeouts = timeouts  # the settings': a migration's directives win (Migration.timeouts)
        self.retries = retries
        self.tenant = tenant
        self.batch_bytes = batch_bytes  # SQLMIGRATE_BATCH_BYTES: 0 sends each migration alone
        self._open_line: Migration | None = None  # a retried migration whose progress line is open
        self._session: Any = None  # the session's settings as the run found them, read when needed
        self._applied: list[str] | None = None  # the versioned ids the history holds, as far as the run knows
        self._repeatables: dict[str, str] = {}  # and the repeatables' rows, by their checksums

    def start_run(self) -> None:
        """Forget the previous run's session settings and history: they are read afresh."""
        self._session = None
        self._applied = None
        self._repeatables = {}

    def expect(self, applied: Mapping[str, AppliedMigration]) -> None:
        """The history as the run just read it (the versioned ids, the repeatables' rows apart):
        each migration's transaction checks, under the run lock, that the history is still so
        (see :meth:`_claim`)."""
        self._applied = sorted(applied)
        self._repeatables = {row.id: row.checksum for row in repeatable_rows(applied).values()}

    def apply(self, migration: Migration) -> Result:
        """Run the UP section and record the migration as applied (a repeatable one's row
        written afresh); a transactional migration that fails on its lock timeout is tried
        again ``retries`` times."""
        return self._one(self.applying(migration))

    def _down(self, migration: Migration) -> Side:
        return Side(migration, Action.ROLLED_BACK, migration.down, self.history.delete_sql(migration.id))

    def _one(self, side: Side) -> Result:
        """One side alone: the way up with its retries."""
        if side.applying:
            return self._timed_work(side.migration, side.action, lambda: self._with_retries(side))
        return self._timed(side)

    def apply_together(self, sides: Sequence[Side]) -> list[Result]:
        """Migrations that change together in one transaction (a repeatable and the applied ones
        that depend on it; a versioned migration with ``recreate-repeatables`` and the
        repeatables it re-creates): each side in order, the drops (sides that record nothing)
        first. Reported as the first applied migration's run; the others' lines follow it once

        the transaction committed. When its claim finds the history other than the run expects,
        the whole transaction is skipped: one ``SKIPPED`` result."""
        applied = [side.migration for side in sides if side.history_sql]
        first = self._timed_work(applied[0], Action.APPLIED, lambda: self._run(*sides))
        results = [first]
        if first.action == Action.SKIPPED:
            return results
        for migration in applied[1:]:
            results.append(Result(migration, Action.APPLIED, 0.0))
            self._track(results[-1])
            self.reporter.starting(migration, Action.APPLIED)
            self.reporter.finished(results[-1])
        return results

    def applying(self, migration: Migration) -> Side:
        """The UP side of ``migration``: its section, then its history row (a repeatable's
        previous row deleted first)."""
        row = self.history.insert_sql(migration.id, migration.name, migration.checksum)
        before = (self.history.delete_sql(migration.id),) if migration.repeatable else ()
        return Side(migration, Action.APPLIED, migration.up, row, before)

    def _with_retries(self, side: Side) -> None:
        """Run the side; while it fails only because it waited longer than its lock timeout (it
        was rolled back whole, so trying again is safe), pause, longer each time, and retry."""
        for attempt in itertools.count(1):
            try:
                self._run(side)
                return
            except MigrationFailed as exc:
                if attempt > self.retries or not self._may_retry(side.migration, exc):
                    raise
            pause = min(RETRY_PAUSE * 2 ** (attempt - 1), LONGEST_RETRY_PAUSE)
            self.reporter.retrying(side.migration, attempt + 1, self.retries + 1, pause)
            sleep(pause)

    def _may_retry(self, migration: Migration, failure: MigrationFailed) -> bool:
        """A transactional migration with a lock timeout (its directive, or the setting) that
        failed on it."""
        lock_timeout = migration.timeouts(self.timeouts).lock
        return migration.transactional and bool(lock_timeout) and failure.lock_timed_out

    def revert(self, migration: Migration) -> Result:
        """Run the DOWN section and remove the migration's history row."""
        return self._one(self._down(migration))

    # Several, in batches ------------------------------------------------------------------------

    def apply_all(self, plan: Sequence[Migration]) -> list[Result]:
        """:meth:`apply` each of ``plan`` in order; runs of migrations that may travel together
        go in batches (:meth:`_batch`), each still its own transaction."""
        return self._run_all([self.applying(migration) for migration in plan])

    def revert_all(self, plan: Sequence[Migration]) -> list[Result]:
        """:meth:`revert` each of ``plan`` in order, in batches as :meth:`apply_all`."""
        return self._run_all([self._down(migration) for migration in plan])

    def _run_all(self, sides: list[Side]) -> list[Result]:
        """The sides in batches, up to the first one skipped (its claim found the history other
        than expected, see :meth:`_claim`): the runner then reads the history again and makes a
        new plan of what is left, as after a migration alone."""
        results: list[Result] = []
        tries: dict[str, int] = {}
        while len(results) < len(sides):
            batch = self._batch(sides, len(results))
            results += self._send(batch, tries) if len(batch) > 1 else [self._one(batch[0])]
            if results[-1].action == Action.SKIPPED:
                break
        return results

    def _batch(self, sides: list[Side], at: int) -> list[Side]:
        """The sides from ``at`` that travel in one message: consecutive transactional ones
        whose SQL cannot change the session (nor hold a COPY, for the backend), their sections
        within ``batch_bytes`` together; at least the first, alone when it cannot travel with others."""
        if not (self.backend.sends_batches and self.batch_bytes) or self.connection.in_atomic_block:
            return sides[at : at + 1]
        batch: list[Side] = []
        size = 0
        for side in sides[at:]:
            sql = side.section.sql
            size += len(sql) if sql.isascii() else len(sql.encode())
            if size > self.batch_bytes or not self._batchable(side):
                break
            batch.append(side)
        return batch or sides[at : at + 1]

    def _batchable(self, side: Side) -> bool:
        migration = side.migration
        return (
            migration.transactional
            and not changes_session(self.backend, migration, side.section, self.timeouts, self.tenant)
            and self.backend.batchable(side.section)
        )

    def _block(self, side: Side, expected: _Expectation, claimed: Sequence[Side] | None = None) -> Block:
        """A side's transaction, alone or in a batch: first its claim of the run lock and of the
        history as ``expected`` before it (:meth:`_claim`; in a transaction of several sides the
        first one claims the rows of all of them, ``claimed``, the others nothing), then its
        prelude (tenant schema, timeouts); its section; then its history change (a repeatable's
        previous row deleted first; none for a drop), after what puts back session settings the
        section may change (such a section travels alone). The claim also covers the way down in
        a batch, whose DELETE's row count would come too late: the row is there."""
        claim = self._claim((side,) if claimed is None else claimed, expected)
        ahead = [*claim, *prelude(self.backend, side.migration, self.timeouts, self.tenant, True)]
        record = [*side.before_history, side.history_sql] if side.history_sql else []  # a drop records nothing
        if self.backend.transaction_pooled and may_change_session(side.section.sql):
            record[:0] = self.backend.script_session_reset()  # nothing stays on a pooled server session
        elif record and self._session is not None and may_change_session(side.section.sql):
            record[:0] = self.backend.identity_statements(self._session)  # a SET ROLE in the section
        return Block(ahead, side.section, record)

    def _blocks(self, batch: list[Side]) -> list[Block]:
        """The batch's blocks: block k's claim expects the history as blocks 0..k-1 leave it
        (their ids added on the way up, removed on the way down)."""
        expected = self._expectation().copy()
        blocks = []
        for side in batch:
            blocks.append(self._block(side, expected))
            expected.move(side.migration, side.applying)
        return blocks

    def _send(self, batch: list[Side], tries: dict[str, int]) -> list[Result]:
        """Run ``batch`` in one message; the results of the migrations it did (a failing one
        another runner did first among them), none past one to try again. A failure or an
        interrupt is raised as for one migration, after those that committed were reported."""
        progress = _BatchProgress(self, batch)
        progress.started(0)  # as a migration alone: its line opens before the message goes
        try:
            end = self.backend.run_batch(self._blocks(batch), progress.started, progress.committed)
        except KeyboardInterrupt as exc:
            raise self._batch_interrupted(progress, exc) from exc
        except database_error_types(self.connection) as exc:  # the connection was lost
            end = BatchEnd(exc)
        if end.unparsed:  # a syntax error somewhere stopped all of it: one by one, as without batches
            self._open_line = batch[0].migration
            results: list[Result] = []
            for side in batch:
                results.append(self._one(side))
                if results[-1].action == Action.SKIPPED:
                    break
            return results
        if end.error is not None:
            failure = self._batch_failed(progress, end.error, tries)
            if failure is not None:
                raise failure from end.error
        return progress.results

    def _batch_failed(self, progress: _BatchProgress, error: Exception, tries: dict[str, int]) -> BaseException | None:
        """What to raise for the failing migration of a batch; None when it was done by another
        runner (reported skipped) or is to be tried again (after the pause)."""
        side, elapsed = progress.failing()
        migration = side.migration
        failure = self._transaction_failure(migration, error)
        if isinstance(failure, _AlreadyDone):
            progress.add(Result(migration, Action.SKIPPED, elapsed))
            return None
        attempt = tries.get(migration.id, 1)
        if isinstance(failure, MigrationFailed) and attempt <= self.retries and self._may_retry(migration, failure):
            tries[migration.id] = attempt + 1
            pause = min(RETRY_PAUSE * 2 ** (attempt - 1), LONGEST_RETRY_PAUSE)
            self.reporter.retrying(migration, attempt + 1, self.retries + 1, pause)
            self._open_line = migration
            sleep(pause)
            return None
        self.reporter.failed(migration, elapsed)
        return failure

    def _batch_interrupted(self, progress: _BatchProgress, signal: KeyboardInterrupt) -> BaseException:
        """Ctrl-C or SIGTERM during a batch: those that committed were reported; the one in
        flight is named with what its history row says, as :meth:`_in_transaction` does."""
        if progress.finished():
            return signal
        side, elapsed = progress.failing()
        self.reporter.interrupted(side.migration, elapsed)
        return self._interrupted(side.migration, signal, self._outcome_of_interrupted(side))

    def fake(self, migration: Migration) -> Result:
        """Record the migration as applied without running it (``--fake``)."""
        return self._timed_work(migration, Action.FAKED, lambda: self._record_fake(migration))

    # Timing and outcome -----------------------------------------------------------------------

    def _timed(self, side: Side) -> Result:
        return self._timed_work(side.migration, side.action, lambda: self._run(side))

    def _timed_work(self, migration: Migration, action: Action, work: Callable[[], None]) -> Result:
        self._start_line(migration, action)
        started = perf_counter()
        try:
            work()
        except _AlreadyDone:
            action = Action.SKIPPED
        except KeyboardInterrupt:
            self.reporter.interrupted(migration, (perf_counter() - started) * 1000)
            raise
        except Exception:
            self.reporter.failed(migration, (perf_counter() - started) * 1000)
            raise
        result = Result(migration, action, (perf_counter() - started) * 1000)
        self._track(result)
        self.reporter.finished(result)
        return result

    def _track(self, result: Result) -> None:
        """Keep the history the run expects up to date with what this run did: the versioned
        ids, and each repeatable's row by its checksum."""
        if self._applied is not None and result.action != Action.SKIPPED:
            self._expectation().move(result.migration, result.action != Action.ROLLED_BACK)

    def _start_line(self, migration: Migration, action: Action) -> None:
        """Tell the reporter a migration starts, unless its line is open already (a retry)."""
        if self._open_line is not migration:
            self.reporter.starting(migration, action)
        self._open_line = None

    def _run(self, side: Side, *more: Side) -> None:
        """Run one side of a migration (with ``more``: all of them in one transaction), then put
        back the session settings they may have changed (``SET``, ``set_config``, ``PRAGMA``, a
        ``no-transaction`` run's timeouts), so the next migration starts from the run's own."""
        sides = (side, *more)
        run = self._in_transaction if side.migration.transactional or more else self._without_transaction
        pooled = self.backend.transaction_pooled  # a transactional migration resets the session itself
        if pooled or not any(
            changes_session(self.backend, s.migration, s.section, self.timeouts, self.tenant) for s in sides
        ):
            run(*sides)
            return
        if self._session is None:
            self._session = self.backend.session_state()
        try:
            run(*sides)
        except BaseException:
            with contextlib.suppress(*database_error_types(self.connection)):
                self._restore_session()
            raise
        try:
            self._restore_session()
        except database_error_types(self.connection) as exc:
            where = (
                f"{side.migration.path}: {side.migration.id} was {side.action}, but the session settings it changed "
                "could not be put back"
            )
            raise DatabaseError(self.connection.alias, exc, where) from exc

    def _restore_session(self) -> None:
        if not self.backend.connection_lost():
            self.backend.restore_session(self._session)

    # In a transaction -------------------------------------------------------------------------

    def _record_fake(self, migration: Migration) -> None:
        """Write the history row alone; on SQLite this takes the write lock, so a concurrent
        runner waits here and then finds the migration already applied."""
        with transaction.atomic(using=self.connection.alias):
            try:
                if migration.repeatable:
                    self.history.delete(migration.id)
                self.history.insert(migration.id, migration.name, migration.checksum)
            except IntegrityError:
                raise _AlreadyDone from None

    def _in_transaction(self, *sides: Side) -> None:
        """The sides in one transaction, each with its history change, rolled back whatever fails.

        The error names the migration of the side that failed: a statement's error with its
        line, a lost connection or a failing COMMIT as such. When the server has gone, Django's
        own rollback fails too: the statement's error is the one kept.
        """
        failed: list[StatementError | TransactionEnded] = []
        current = sides[0]
        try:
            with transaction.atomic(using=self.connection.alias):
                for index, current in enumerate(sides):
                    try:
                        self._section_with_history(current, index == len(sides) - 1, sides if index == 0 else ())
                    except (StatementError, TransactionEnded) as exc:
                        failed.append(exc)
                        raise
        except KeyboardInterrupt as exc:
            raise self._interrupted(current.migration, exc, self._outcome_of_interrupted(sides[-1])) from exc
        except (StatementError, TransactionEnded) + database_error_types(self.connection) as exc:
            raise self._transaction_failure(current.migration, failed[0] if failed else exc) from exc

    def _section_with_history(self, side: Side, last: bool = True, claimed: Sequence[Side] | None = None) -> None:
        """The section, then the history statement: on PostgreSQL the BEGIN, timeouts, section
        and history row make one round trip, with the COMMIT too when the side applies the
        migration, is the ``last`` of its transaction and ours is the outermost atomic block. The
        history statement comes last, so that it commits only with the whole section (the
        backend checks the section did not end the transaction itself); when it touches no row,
        another runner was first: the transaction is rolled back. The first side of a transaction
        opens it with the claim of all of them (``claimed``, see :meth:`_block`)."""
        block = self._block(side, self._expectation(), claimed)
        outermost = len(self.connection.atomic_blocks) == 1
        rows = self.backend.run_section(
            self.backend.raw_cursor(), block.section, block.prelude, block.record, side.applying and outermost and last
        )
        if rows == 0 and side.history_sql:
            raise _AlreadyDone

    def _claim(self, sides: Sequence[Side], expected: _Expectation) -> list[str]:
        """What opens a transaction: the run lock taken for the transaction and the history
        checked to be as ``expected`` before every side that records something (the backend's
        :meth:`~.backends.Backend.claim_statements`), so that runners without a run-wide lock
        (a transaction-pooled alias) never run a migration twice nor on a history that moved.
        Once, ahead of the first side, in the same round trip as its section; none for the
        later sides of a transaction (no ``sides``)."""
        if not sides:
            return []
        rows = [self._expected(side, expected) for side in sides if side.history_sql]
        return self.backend.claim_statements(self.history.premise(rows, expected.applied))

    def _expected(self, side: Side, expected: _Expectation | None = None) -> Expected:
        """What ``side`` expects of its migration's history row, the history being as
        ``expected`` (by default as the run knows it): a versioned one's absent (up) or there
        (down); a repeatable one's as the run last read or wrote it, or, when the run knows
        nothing of the history, not yet written with this file's checksum (up) or there."""
        known = self._expectation() if expected is None else expected
        migration = side.migration
        if not migration.repeatable:
            return Expected(migration.id, present=not side.applying)
        if known.applied is None:
            return Expected(migration.id, not side.applying, migration.checksum if side.applying else None)
        seen = known.repeatables.get(migration.id)
        return Expected(migration.id, seen is not None, seen)

    def _expectation(self) -> _Expectation:
        """The history as the run knows it (the executor's own, not a copy)."""
        return _Expectation(self._applied, self._repeatables)

    def _transaction_failure(self, migration: Migration, error: Exception) -> BaseException:
        """What to raise for a transactional migration that failed (it was rolled back, but for
        what its own SQL may have committed)."""
        refusal = self.backend.pooler_refusal(error.error if isinstance(error, StatementError) else error)
        if refusal is not None:
            return refusal
        if isinstance(error, TransactionEnded):
            where = f"{migration.path}:{error.ending.line}" if error.ending.line else str(migration.path)
            return MigrationFailed(
                migration, f"{where}: {migration.id} failed: {error.ending.outcome()}", line=error.ending.line
            )
        if not isinstance(error, StatementError):
            outcome = LOST_BEFORE_COMMIT if self.backend.connection_lost(error) else NOTHING_APPLIED
            return self._failure(migration, error, None, outcome)
        integrity = self.connection.Database.IntegrityError  # type: ignore[attr-defined]
        if error.part == "record" and error.ended is None and isinstance(error.error, integrity):
            return _AlreadyDone()  # another runner's history row, committed first
        if error.part == "prelude" and self.backend.history_changed(error.error):
            return _AlreadyDone()  # the runner reads the history again
        if error.part == "prelude":
            return self.backend.claim_error(error.error) or error.error
        outcome = error.ended.outcome() if error.ended else NOTHING_APPLIED
        return self._failure(migration, error.error, error.line, outcome, retryable=error.ended is None)

    # Without a transaction --------------------------------------------------------------------

    def _without_transaction(self, side: Side) -> None:
        """The side statement by statement in autocommit; the history change after the last."""
        migration = side.migration
        if self.connection.in_atomic_block:
            raise SqlMigrateError(f"{migration.path}: a no-transaction migration cannot run inside transaction.atomic")
        cursor = self.backend.raw_cursor()
        statements = self.backend.split(side.section)
        ran: list[Statement] = []
        try:
            self.backend.run_prelude(cursor, prelude(self.backend, migration, self.timeouts, self.tenant, local=False))
            self.backend.run_statements(cursor, statements, ran)
        except StatementError as exc:
            raise self._failure(migration, exc.error, exc.line, self._stopped(ran, statements)) from exc
        except KeyboardInterrupt as exc:
            raise self._interrupted(migration, exc, self._stopped(ran, statements)) from exc
        if side.applying:
            if migration.repeatable:
                self.history.delete(migration.id)
            self.history.insert(migration.id, migration.name, migration.checksum)
        else:
            self.history.delete(migration.id)

    def _stopped(self, ran: list[Statement], statements: list[Statement]) -> str:
        """What a ``no-transaction`` run stopped by an error or a signal leaves behind. A
        ``BEGIN ... COMMIT`` group it was in the middle of is rolled back (the session would stay
        in a failed transaction otherwise): its statements took no effect."""
        group = open_group(ran)
        if group is not None and not self.backend.connection_lost() and self.backend.in_transaction():
            with contextlib.suppress(*database_error_types(self.connection)):
                self.backend.raw_cursor().execute("ROLLBACK")
        kept = ran if group is None else ran[:group]
        if kept:
            lines = f"line{'s' if len(kept) > 1 else ''} " + ", ".join(str(statement.line) for statement in kept)
            outcome = f"no-transaction: {len(kept)} of {len(statements)} statements had already run ({lines})"
        else:
            outcome = f"no-transaction: none of its {len(statements)} statements had run"
        if group is not None:
            outcome += f"; the group begun on line {ran[group].line} was rolled back"
        return outcome + "; it was not recorded"

    # Reports ------------------------------------------------------------------------------------

    def _failure(
        self, migration: Migration, error: Exception, line: int | None, outcome: str, retryable: bool = True
    ) -> MigrationFailed:
        where = f"{migration.path}:{line}" if line else str(migration.path)
        message = database_message(error)
        if self.backend.connection_lost(error):
            message = f"lost the connection to database {self.connection.alias!r} ({message})"
        return MigrationFailed(
            migration,
            f"{where}: {migration.id} failed: {message} [{outcome}]",
            sqlstate(error),
            lock_timed_out=retryable and self.backend.is_lock_timeout(error),
            line=line,
        )

    @staticmethod
    def _interrupted(migration: Migration, signal: KeyboardInterrupt, outcome: str) -> MigrationInterrupted:
        terminated = isinstance(signal, Terminated)
        how = "SIGTERM" if terminated else "Ctrl-C"
        return MigrationInterrupted(
            migration, f"{migration.path}: {migration.id} interrupted ({how}) [{outcome}]", terminated
        )

    def _outcome_of_interrupted(self, side: Side) -> str:
        """Whether an interrupted transactional side had committed: the history row says."""
        try:
            if side.migration.repeatable:  # its row is there either way: is it this run's?
                row = self.history.read_one(side.migration.id)
                recorded = row is not None and row.checksum == side.migration.checksum
            else:
                recorded = self.history.contains(side.migration.id)
        except database_error_types(self.connection):
            return "the connection was lost: run sqlmigrate_status to see whether it was recorded"
        if side.applying:
            return "it had already committed: applied and recorded" if recorded else NOTHING_APPLIED
        return "its DOWN was rolled back: it is still applied" if recorded else "its DOWN had already committed"


class _BatchProgress:
    """A batch's migrations as the backend reports them started and committed: the reporter
    told as each is, their results, and which one a failure or an interrupt stopped in."""

    def __init__(self, executor: Executor, batch: list[Side]) -> None:
        self.executor = executor
        self.batch = batch
        self.results: list[Result] = []
        self.began: dict[int, float] = {}

    def started(self, index: int) -> None:
        if index in self.began:
            return
        side = self.batch[index]
        self.began[index] = perf_counter()
        self.executor._start_line(side.migration, side.action)

    def committed(self, index: int) -> None:
        side = self.batch[index]
        self.add(Result(side.migration, side.action, (perf_counter() - self.began[index]) * 1000))

    def add(self, result: Result) -> None:
        self.results.append(result)
        self.executor._track(result)
        self.executor.reporter.finished(result)

    def finished(self) -> bool:
        """Whether every migration of the batch committed."""
        return len(self.results) == len(self.batch)

    def failing(self) -> tuple[Side, float]:
        """The first side that did not commit (its line started if it had not), and its time so far."""
        index = len(self.results)
        if index not in self.began:
            self.started(index)
        return self.batch[index], (perf_counter() - self.began[index]) * 1000


def _moved(applied: list[str], migration_id: str, applying: bool) -> None:
    """``applied`` (sorted ids) as the history holds it once ``migration_id`` was applied or
    rolled back."""
    at = bisect.bisect_left(applied, migration_id)  # ten thousand ids: no scan of them
    held = at < len(applied) and applied[at] == migration_id
    if held and not applying:
        del applied[at]
    elif applying and not held:
        applied.insert(at, migration_id)


@dataclass(frozen=True, slots=True)
class _Expectation:
    """The history a transaction's claim expects: the versioned ids, sorted (None: not known),
    and the repeatables' rows by their checksums."""

    applied: list[str] | None
    repeatables: dict[str, str]

    def copy(self) -> _Expectation:
        """The same history, to change apart (a batch's blocks, see :meth:`Executor._blocks`)."""
        return _Expectation(None if self.applied is None else list(self.applied), dict(self.repeatables))

    def move(self, migration: Migration, applying: bool) -> None:
        """The history as it is once ``migration`` was applied (``applying``) or rolled back."""
        if self.applied is None:
            return
        if not migration.repeatable:
            _moved(self.applied, migration.id, applying)
        elif applying:
            self.repeatables[migration.id] = migration.checksum
        else:
            self.repeatables.pop(migration.id, None)
