"""The schema file is written atomically, and one that cannot be written or read is one line with
exit 12: after ``up``, ``down`` or ``redo`` the migrations stay committed and recorded, and the
line says so. The cases are those root cannot bypass (the tests run as root): a directory at the
path, a path under a regular file, ``/proc``, a FIFO, a file too large for the process."""

from __future__ import annotations

import os
import re
import resource
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path

import psycopg
import pytest

from sqlmigrate_app.errors import SchemaFileError
from sqlmigrate_app.management.base import EXIT_SCHEMA_FILE, EXIT_SCHEMA_FILE_NOT_WRITTEN
from sqlmigrate_app.schema_file import write

ORDERS = "20240101000001_orders"
NOT_UTF8 = b"-- The database schema\n\xff\xfe caf\xe9\n"


def a_directory(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "schema.txt"
    path.mkdir()
    return path, "Is a directory"


def under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "plain").write_text("not a directory\n")
    return tmp_path / "plain" / "schema.txt", f"cannot create a file in {tmp_path / 'plain'}: Not a directory"


def in_proc(tmp_path: Path) -> tuple[Path, str]:
    return Path("/proc/sqlmigrate-schema.txt"), "cannot create a file in /proc: No such file or directory"


def a_fifo(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "schema.txt"
    os.mkfifo(path)
    return path, "not a regular file"


UNWRITABLE = [a_directory, under_a_file, in_proc, a_fifo]


def orders(target) -> None:
    target.migration(ORDERS, "CREATE TABLE orders (id integer);", "DROP TABLE orders;")


@pytest.mark.parametrize("unwritable", UNWRITABLE, ids=lambda case: case.__name__)
def test_up_redo_and_down_keep_their_migrations_when_the_schema_file_cannot_be_written(
    target, tmp_path, settings, unwritable
):
    path, reason = unwritable(tmp_path)
    settings.SQLMIGRATE_SCHEMA_FILE = {target.alias: path}
    orders(target)

    up = target.call("sqlmigrate_up")
    after_up = (target.history(), "orders" in target.tables())
    redo = target.call("sqlmigrate_redo")
    after_redo = (target.history(), "orders" in target.tables())
    down = target.call("sqlmigrate_down")

    not_written = f"the schema file {path} was not written: {reason}"
    assert up.code == redo.code == down.code == EXIT_SCHEMA_FILE_NOT_WRITTEN == 12
    assert "Applied 1 migration in" in up.out
    assert up.err == f"1 migration applied and recorded in the history, but {not_written}"
    assert after_up == after_redo == ([ORDERS], True)
    assert "Redid 1 migration in" in redo.out
    assert redo.err == f"1 migration rolled back and applied again, recorded in the history, but {not_written}"
    assert "Rolled back 1 migration in" in down.out
    assert down.err == f"1 migration rolled back and removed from the history, but {not_written}"
    assert target.history() == [] and "orders" not in target.tables()


def test_redo_rewrites_the_schema_file_after_an_edited_migration(target, tmp_path, settings):
    schema = tmp_path / "schema.txt"
    settings.SQLMIGRATE_SCHEMA_FILE = {target.alias: schema}
    orders(target)
    assert target.call("sqlmigrate_up").code == 0
    target.migration(ORDERS, "CREATE TABLE orders (id integer, placed_on date);", "DROP TABLE orders;")

    redo = target.call("sqlmigrate_redo")

    assert redo.code == 0 and f"Wrote the schema to {schema}." in redo.out
    assert "placed_on" in schema.read_text()
    assert target.call("sqlmigrate_dump", "--check").code == 0


def test_a_real_up_prints_its_migrations_then_one_line_and_exits_12(target, tmp_path):
    path, reason = a_directory(tmp_path)
    target.env.update(DJANGO_SETTINGS_MODULE="tests.settings_demo", SQLMIGRATE_TEST_SCHEMA_FILE=str(path))
    orders(target)

    done = target.manage("sqlmigrate_up")

    assert done.returncode == 12, done.stdout + done.stderr
    assert f"Applying {ORDERS}... OK" in done.stdout and "Applied 1 migration in" in done.stdout
    assert done.stderr == (
        "CommandError: 1 migration applied and recorded in the history, "
        f"but the schema file {path} was not written: {reason}\n"
    )
    assert target.history() == [ORDERS] and "orders" in target.tables()


@pytest.mark.parametrize("unwritable", UNWRITABLE, ids=lambda case: case.__name__)
def test_dump_that_cannot_write_its_file_is_one_line_with_exit_12(target, tmp_path, unwritable):
    path, reason = unwritable(tmp_path)

    dumped = target.call("sqlmigrate_dump", output=str(path))

    assert dumped.code == 12
    assert dumped.out == "" and dumped.err == f"the schema file {path} was not written: {reason}"


def test_a_real_dump_to_a_directory_exits_12_with_one_line(target, tmp_path):
    path, reason = a_directory(tmp_path)

    done = target.manage("sqlmigrate_dump", "--output", str(path))

    assert done.returncode == 12
    assert done.stderr == f"CommandError: the schema file {path} was not written: {reason}\n"


def test_a_schema_file_that_is_not_utf8_is_overwritten_keeping_its_mode(target, tmp_path, settings):
    path = tmp_path / "schema.txt"
    path.write_bytes(NOT_UTF8)
    path.chmod(0o640)
    settings.SQLMIGRATE_SCHEMA_FILE = {target.alias: path}
    orders(target)

    up = target.call("sqlmigrate_up")

    assert up.code == 0, up.text
    assert f"Wrote the schema to {path}." in up.out
    assert path.read_text(encoding="utf-8").endswith(f"-- Applied migrations\n{ORDERS}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(tmp_path.iterdir()) == sorted([path, tmp_path / "migrations", *tmp_path.glob("db.sqlite3*")])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda path: path.mkdir(), "Is a directory"),
        (lambda path: path.write_bytes(NOT_UTF8), "line 2 is not UTF-8 (byte 0xff); sqlmigrate_dump writes it again"),
        (os.mkfifo, "not a regular file"),
    ],
    ids=["directory", "not_utf8", "fifo"],
)
def test_check_on_a_file_it_cannot_read_is_one_line_with_exit_12(target, tmp_path, make, reason):
    path = tmp_path / "schema.txt"
    make(path)

    checked = target.call("sqlmigrate_dump", "--check", output=str(path))

    assert checked.code == 12
    assert checked.out == "" and checked.err == f"the schema file {path} cannot be read: {reason}"


def test_check_on_a_missing_file_still_says_it_differs(target, tmp_path):
    checked = target.call("sqlmigrate_dump", "--check", output=str(tmp_path / "schema.txt"))

    assert checked.code == EXIT_SCHEMA_FILE == 11
    assert "differs from the database: run sqlmigrate_dump and commit it" in checked.err


@pytest.mark.parametrize("command", ["up", "down", "redo", "dump"])
def test_help_lists_exit_code_12(command):
    module = import_module(f"sqlmigrate_app.management.commands.sqlmigrate_{command}")

    text = " ".join(module.Command().create_parser("manage.py", f"sqlmigrate_{command}").format_help().split())

    assert re.search(r"; 12 [^;]*schema file not written;|; 12 the file cannot be written", text), text


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Files this process writes stop at ``size`` bytes (EFBIG: Python ignores SIGXFSZ), which
    root cannot bypass."""
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)


def test_a_write_that_fails_midway_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    path = tmp_path / "schema.txt"
    path.write_text("the old schema\n")

    with file_size_limit(4096), pytest.raises(SchemaFileError) as raised:
        write(path, "x" * 100_000)

    assert str(raised.value) == f"the schema file {path} was not written: File too large"
    assert path.read_text() == "the old schema\n"
    assert list(tmp_path.iterdir()) == [path]


def test_the_file_is_replaced_by_a_rename_not_rewritten_in_place(tmp_path):
    path = tmp_path / "schema.txt"
    path.write_text("the old schema\n")
    os.link(path, tmp_path / "old")

    changed = write(path, "the new schema\n")

    assert changed and path.read_text() == "the new schema\n"
    assert (tmp_path / "old").read_text() == "the old schema\n"
    assert sorted(tmp_path.iterdir()) == [tmp_path / "old", path]


def test_a_new_file_gets_the_mode_open_would_give_it_and_a_link_is_written_through(tmp_path):
    umask = os.umask(0o027)
    try:
        write(tmp_path / "new" / "schema.txt", "text\n")
    finally:
        os.umask(umask)
    (tmp_path / "link.txt").symlink_to(tmp_path / "new" / "schema.txt")

    write(tmp_path / "link.txt", "through the link\n")

    assert stat.S_IMODE((tmp_path / "new" / "schema.txt").stat().st_mode) == 0o640
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "new" / "schema.txt").read_text() == "through the link\n"


@pytest.fixture
def reader_role(postgres_server) -> Iterator[str]:
    """A role that may create tables but not read ``pg_event_trigger``, a catalog only the
    schema snapshot reads. Dropped after the test's database (requested before ``target``)."""
    role = f"sqlmigrate_no_catalog_{os.getpid()}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role}")
    yield role
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)  # catalog privileges are PostgreSQL's
def test_a_database_error_while_reading_the_schema_is_one_line(reader_role, target, tmp_path, settings):
    with psycopg.connect(target.url, autocommit=True) as admin:
        name = admin.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {reader_role}")
        admin.execute("REVOKE SELECT ON pg_catalog.pg_event_trigger FROM PUBLIC")
        admin.execute(f"ALTER DATABASE {name} SET role = {reader_role}")
    schema = tmp_path / "schema.txt"
    settings.SQLMIGRATE_SCHEMA_FILE = {target.alias: schema}
    orders(target)

    up = target.call("sqlmigrate_up")
    history = target.history()
    dumped = target.call("sqlmigrate_dump", output="-")
    with psycopg.connect(target.url, autocommit=True) as admin:
        admin.execute("SET ROLE NONE")  # the role the database sets applies to this session too
        admin.execute("GRANT SELECT ON pg_catalog.pg_event_trigger TO PUBLIC")
        admin.execute(f"REVOKE SELECT ON schema_migrations FROM {reader_role}")
    no_history = target.call("sqlmigrate_dump", output="-")

    denied = "database 'target': reading its schema: permission denied for table pg_event_trigger"
    assert up.code == 12 and "Applied 1 migration in" in up.out
    assert (
        up.err
        == f"1 migration applied and recorded in the history, but the schema file {schema} was not written: {denied}"
    )
    assert history == [ORDERS] and not schema.exists()
    assert dumped.code == 1 and dumped.out == "" and dumped.err == denied
    assert no_history.code == 1 and no_history.out == ""
    assert no_history.err == "database 'target': permission denied for table schema_migrations"
