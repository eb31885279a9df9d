"""sqlmigrate_lint: squawk on each section, told what sqlmigrate knows (transaction, timeouts),
its findings placed at the migration file's line; validate --lint; SQLite and a missing squawk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES

from .support.processes import wait_until
from .support.target import ROOT, Target

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("target", ["sqlite"], indirect=True)

EXIT_LINT = EXIT_CODES[ProblemKind.LINT]
ORDERS = "20240101000001_create_orders"
INDEX = "20240101000002_index_orders"
TIMEOUTS = "-- sqlmigrate: lock-timeout=2s\n-- sqlmigrate: statement-timeout=1min\n"


def with_orders(target: Target) -> None:
    """A table that exists before the migration under test, as in production."""
    target.migration(ORDERS, "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, customer_id bigint);")
    assert target.call("sqlmigrate_up").code == 0


def index_migration(target: Target, header: str = TIMEOUTS, concurrently: str = "", comment: str = "") -> Path:
    return target.write(
        f"{INDEX}.sql",
        f"-- Orders by customer, for the dashboard.\n{header}\n"
        "-- UP\n"
        f"{comment}"
        f"CREATE INDEX {concurrently}IF NOT EXISTS orders_customer ON orders (customer_id);\n"
        "\n-- DOWN\n"
        f"DROP INDEX {concurrently}IF EXISTS orders_customer;\n",
    )


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def rules(result) -> set[str]:
    return {finding["rule"] for finding in json.loads(result.out)}


@pg_only
def test_create_index_without_concurrently_is_reported_at_its_file_line(target):
    with_orders(target)
    path = index_migration(target)

    result = target.call("sqlmigrate_lint")

    assert result.code == EXIT_LINT == 10, result.text
    line = line_of(path, "CREATE INDEX")
    assert f"{path}:{line}:1: require-concurrent-index-creation: " in result.out
    assert "    help: Use `concurrently` to avoid blocking writes." in result.out
    assert "lint: 1 finding in 1 migration" in result.err


@pg_only
def test_the_same_index_built_concurrently_outside_a_transaction_is_clean(target):
    with_orders(target)
    index_migration(target, TIMEOUTS + "-- sqlmigrate: no-transaction\n", concurrently="CONCURRENTLY ")

    result = target.call("sqlmigrate_lint")

    assert result.code == 0, result.text
    assert "Lint: nothing found (1 migration)." in result.out


@pg_only
def test_a_lock_timeout_directive_or_setting_silences_require_lock_timeout(target, settings):
    with_orders(target)
    index_migration(target, header="-- sqlmigrate: statement-timeout=1min\n")
    without = rules(target.call("sqlmigrate_lint", "--json"))
    index_migration(target, header="-- sqlmigrate: statement-timeout=1min\n-- sqlmigrate: lock-timeout=2s\n")
    with_directive = rules(target.call("sqlmigrate_lint", "--json"))
    index_migration(target, header="-- sqlmigrate: statement-timeout=1min\n")
    settings.SQLMIGRATE_LOCK_TIMEOUT = "2s"
    with_setting = rules(target.call("sqlmigrate_lint", "--json"))

    assert "require-lock-timeout" in without
    assert "require-lock-timeout" not in with_directive
    assert "require-lock-timeout" not in with_setting
    assert "require-statement-timeout" not in without | with_directive | with_setting


@pg_only
def test_squawk_ignore_comments_are_honoured(target):
    with_orders(target)
    index_migration(target, comment="-- squawk-ignore require-concurrent-index-creation\n")

    result = target.call("sqlmigrate_lint")

    assert result.code == 0, result.text


@pg_only
def test_json_findings_parse_with_file_lines(target):
    with_orders(target)
    path = index_migration(target, header="")

    result = target.call("sqlmigrate_lint", "--json")

    assert result.code == EXIT_LINT
    findings = json.loads(result.out)
    assert {f["rule"] for f in findings} == {
        "require-concurrent-index-creation",
        "require-lock-timeout",
        "require-statement-timeout",
    }
    assert {(f["id"], f["file"], f["section"], f["line"], f["column"]) for f in findings} == {
        (INDEX, str(path), "up", line_of(path, "CREATE INDEX"), 1)
    }
    assert all(f["message"] and f["level"] == "warning" for f in findings)


@pg_only
def test_down_sections_are_linted_only_with_down(target):
    path = target.migration(
        ORDERS, "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY);", "DROP TABLE IF EXISTS orders;"
    )

    up_only = target.call("sqlmigrate_lint", "--json")
    with_down = target.call("sqlmigrate_lint", "--down", "--json")

    assert up_only.code == 0, up_only.text
    findings = {(f["rule"], f["section"], f["line"]) for f in json.loads(with_down.out)}
    assert ("ban-drop-table", "down", line_of(path, "DROP")) in findings
    assert {section for _, section, _ in findings} == {"down"}


@pg_only
def test_excluded_rules_from_the_command_line_and_the_setting(target, settings):
    with_orders(target)
    index_migration(target, header="")

    excluded = target.call("sqlmigrate_lint", "--json", exclude=["require-lock-timeout,require-statement-timeout"])
    settings.SQLMIGRATE_LINT = {"exclude": ["require-concurrent-index-creation"], "pg_version": "15"}
    both = target.call("sqlmigrate_lint", "--json", exclude=["require-lock-timeout", "require-statement-timeout"])

    assert rules(excluded) == {"require-concurrent-index-creation"}
    assert both.code == 0, both.text


@pg_only
def test_all_and_named_migrations(target):
    with_orders(target)
    index_migration(target)

    every = target.call("sqlmigrate_lint", "--all", "--json")
    named = target.call("sqlmigrate_lint", ORDERS, "--json")

    assert rules(every) == {"require-concurrent-index-creation"}
    assert named.code == 0, named.text  # CREATE TABLE IF NOT EXISTS, with timeouts unset, is fine


@pg_only
def test_squawk_refusing_its_arguments_and_bad_settings_are_errors(target, settings):
    with_orders(target)
    index_migration(target)

    unknown_rule = target.call("sqlmigrate_lint", exclude=["no-such-rule"])
    settings.SQLMIGRATE_LINT = {"exclude": ["no-such-rule"]}
    unknown_rule_in_setting = target.call("sqlmigrate_lint")
    settings.SQLMIGRATE_LINT = {"pg_version": "fifteen"}
    bad_version = target.call("sqlmigrate_lint")
    settings.SQLMIGRATE_LINT = {"excluded": ["require-concurrent-index-creation"]}
    unknown_key = target.call("sqlmigrate_lint")
    settings.SQLMIGRATE_LINT = {"exclude": "require-concurrent-index-creation"}
    not_a_list = target.call("sqlmigrate_lint")
    settings.SQLMIGRATE_LINT = {"timeout": "1min"}
    bad_timeout = target.call("sqlmigrate_lint")

    # The option or the setting is named, not the migration file being linted.
    assert unknown_rule.code == 1, unknown_rule.text
    assert unknown_rule.err.startswith("--exclude no-such-rule: not a rule squawk knows: ")
    assert "invalid rule name no-such-rule" in unknown_rule.err and INDEX not in unknown_rule.err
    assert unknown_rule_in_setting.code == 1 and INDEX not in unknown_rule_in_setting.err
    assert unknown_rule_in_setting.err.startswith("SQLMIGRATE_LINT: squawk refuses its exclude or pg_version: ")
    assert "invalid rule name no-such-rule" in unknown_rule_in_setting.err
    assert bad_version.code == 1 and "invalid value 'fifteen' for '--pg-version" in bad_version.err
    assert unknown_key.code == 1 and "unknown keys excluded (known: exclude, pg_version, timeout)" in unknown_key.err
    assert not_a_list.code == 1 and "must be a list of squawk rule names" in not_a_list.err
    assert bad_timeout.code == 1 and "SQLMIGRATE_LINT['timeout'] '1min' must be a number of seconds" in bad_timeout.err


@sqlite_only
def test_on_sqlite_lint_says_it_is_for_postgresql(target):
    with_orders(target)
    index_migration(target)

    result = target.call("sqlmigrate_lint")
    validated = target.call("sqlmigrate_validate", "--lint")

    assert result.code == 0
    assert "lint is for PostgreSQL" in result.out
    assert validated.code == 0, validated.text
    assert "lint is for PostgreSQL" in validated.err


@pg_only
def test_validate_lint_reports_findings_as_problems(target):
    with_orders(target)
    path = index_migration(target)

    plain = target.call("sqlmigrate_validate")
    linted = target.call("sqlmigrate_validate", "--lint", "--json")

    assert plain.code == 0
    assert linted.code == EXIT_LINT
    [problem] = json.loads(linted.out)
    assert problem["kind"] == "lint"
    assert problem["message"].startswith(f"{path}:{line_of(path, 'CREATE INDEX')}:1: require-concurrent-index-creation")


@pg_only
def test_without_squawk_the_error_names_the_extra_to_install(target, tmp_path):
    with_orders(target)
    index_migration(target)
    # An interpreter whose environment has everything but squawk: a venv that sees this one's
    # packages, with neither this venv's bin/ nor squawk on PATH.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site_packages] = (venv / "lib").glob("python*/site-packages")
    (site_packages / "parent.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    env = {
        **os.environ,
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": target.url,
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }

    done = subprocess.run(
        [str(venv / "bin" / "python"), str(ROOT / "manage.py"), "sqlmigrate_lint", "--dir", str(target.directory)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "squawk is not installed: pip install 'django-sqlmigrate[lint]'" in done.stderr


# A squawk that misbehaves: small scripts named squawk, first on PATH ----------------------------


def fake_squawk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """An executable ``squawk`` running ``script`` (sh), found before the real one."""
    directory = tmp_path / "fake-bin"
    directory.mkdir(exist_ok=True)
    path = directory / "squawk"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return path


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


NO_REPORT = {
    "not JSON": ("echo 'thread main panicked at src/main.rs'; exit 0", "(exit status 0); it printed: thread main"),
    "JSON, not a list": ('echo \'{"error": "boom"}\'; exit 1', '(exit status 1); it printed: {"error": "boom"}'),
    "a finding without its rule": ('echo \'[{"line": 0, "column": 0}]\'', 'printed: [{"line": 0, "column": 0}]'),
    "a crash": ("echo 'Segmentation fault' >&2; exit 139", "(exit status 139); it printed: Segmentation fault"),
    "nothing": ("exit 0", "(exit status 0); it printed: (nothing)"),
    "bytes that are not UTF-8, many lines": ("printf '\\377\\033[2J\\n%.0s' $(seq 500)", "printed: \ufffd\\x1b[2J ..."),
}


@pg_only
@pytest.mark.parametrize("output", NO_REPORT)
def test_a_squawk_that_gives_no_report_is_one_line_quoting_what_it_printed(target, tmp_path, monkeypatch, output):
    with_orders(target)
    path = index_migration(target)
    script, quoted = NO_REPORT[output]
    fake = fake_squawk(tmp_path, monkeypatch, script)

    result = target.call("sqlmigrate_lint")

    assert result.code == 1, result.text
    assert result.err.startswith(f"squawk ({fake}) gave no report on the UP section of {path} (exit status ")
    assert quoted in result.err
    assert len(result.err.splitlines()) == 1


@pg_only
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_squawk_that_hangs_is_stopped_with_what_it_started_after_the_timeout(target, tmp_path, monkeypatch, settings):
    with_orders(target)
    path = index_migration(target)
    pids = tmp_path / "pids"
    fake_squawk(tmp_path, monkeypatch, f"sleep 600 &\necho $$ $! > {pids}\nwait")
    settings.SQLMIGRATE_LINT = {"timeout": 0.5}

    result = target.call("sqlmigrate_lint")

    assert result.code == 1, result.text
    assert result.err == (
        f"squawk ({tmp_path / 'fake-bin' / 'squawk'}) did not finish linting the UP section of {path} within 0.5 s "
        "and was stopped (SQLMIGRATE_LINT['timeout'] sets how long it may take)"
    )
    shell, sleep = (int(pid) for pid in pids.read_text().split())
    wait_until(lambda: not running(shell) and not running(sleep), what="the fake squawk and its child to be killed")


@pg_only
def test_validate_lint_reports_a_broken_squawk_in_one_line_through_a_real_process(target, tmp_path, monkeypatch):
    with_orders(target)
    index_migration(target)
    fake_squawk(tmp_path, monkeypatch, "echo '<html>503 Service Unavailable</html>'")

    result = target.manage("sqlmigrate_validate", "--lint")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: squawk (")
    assert line.endswith("it printed: <html>503 Service Unavailable</html>")
