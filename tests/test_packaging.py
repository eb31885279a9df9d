"""Packaging: ``python -m build`` makes an sdist and a wheel with every package file (templates,
``py.typed``) and no tests (they need the checkout: conftest, demo project, a PostgreSQL), and a
fresh ``django-admin startproject`` project in a clean venv (no system site-packages, nothing of
this checkout importable) can install the wheel and run every command.

Marked ``network``: it builds in an isolated environment and installs into fresh venvs from the
package index (about 20 s), so plain ``pytest`` deselects it and works offline; ``nox -s tests``
(CI) selects it, and so does ``pytest -m network``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import sqlmigrate_app

from .support.target import ROOT

pytestmark = pytest.mark.network  # deselected by default (pyproject.toml); nox -s tests runs it
PACKAGE = ROOT / "sqlmigrate_app"


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
    return out


def package_files() -> set[str]:
    """Every file of the package in the source tree (templates, static, py.typed, modules)."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_wheel_and_sdist_hold_every_package_file(dist):
    expected = package_files()
    assert "sqlmigrate_app/py.typed" in expected
    [wheel] = dist.glob("django_sqlmigrate-*.whl")
    [sdist] = dist.glob("django_sqlmigrate-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(next(name for name in in_wheel if name.endswith(".dist-info/METADATA"))).decode()
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert expected <= in_wheel, sorted(expected - in_wheel)
    assert expected <= in_sdist, sorted(expected - in_sdist)
    # No tests in either: they need the whole checkout (conftest, demo project, benchmarks).
    assert not [name for name in in_wheel | in_sdist if name.startswith("tests/") or "/tests/" in name]
    sdist_top = {name.split("/", 1)[0] for name in in_sdist}
    metadata_files = {"LICENSE", "MANIFEST.in", "PKG-INFO", "README.md", "pyproject.toml", "setup.cfg"}
    assert sdist_top <= {"sqlmigrate_app", "django_sqlmigrate.egg-info"} | metadata_files, sorted(sdist_top)
    for line in [
        "Name: django-sqlmigrate",  # the PyPI name; the import package stays sqlmigrate_app
        f"Version: {sqlmigrate_app.__version__}",  # one place for it: the package's
        "Requires-Python: >=3.10",
        "Requires-Dist: django>=5.2",
        "Classifier: Framework :: Django :: 5.2",
        "Classifier: Programming Language :: Python :: 3.11",  # the classifiers claim what CI runs
        "Provides-Extra: postgres",
        "Provides-Extra: lint",
        "Provides-Extra: test",
    ]:
        assert line in metadata.splitlines()


def test_fresh_project_installs_the_wheel_and_runs_every_command(dist, tmp_path):
    [wheel] = dist.glob("django_sqlmigrate-*.whl")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_URL", "PYTHON"))}
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", venv, cwd=tmp_path)  # clean: no --system-site-packages
    python = venv / "bin" / "python"
    sh(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=tmp_path, env=env)
    site = tmp_path / "site"
    site.mkdir()
    sh(venv / "bin" / "django-admin", "startproject", "mysite", site, cwd=tmp_path, env=env)
    settings = site / "mysite" / "settings.py"
    text = settings.read_text()
    assert "INSTALLED_APPS = [\n" in text
    settings.write_text(text.replace("INSTALLED_APPS = [\n", 'INSTALLED_APPS = [\n    "sqlmigrate_app",\n'))

    def manage(*args: str) -> str:
        return sh(python, "manage.py", *args, cwd=site, env=env)

    where = sh(python, "-c", "import sqlmigrate_app; print(sqlmigrate_app.__file__)", cwd=site, env=env)
    assert str(venv) in where  # the installed wheel, not this checkout

    manage("check")
    created = manage("sqlmigrate_create", "create_notes")
    [path] = (site / "migrations_sql").glob("*_create_notes.sql")
    assert str(path) in created
    path.write_text("-- UP\nCREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n-- DOWN\nDROP TABLE notes;\n")
    assert "Applied 1 migration" in manage("sqlmigrate_up")
    assert "Executed" in manage("sqlmigrate_status", "--check")
    assert "All migrations are valid." in manage("sqlmigrate_validate")
    assert "Rolled back 1 migration" in manage("sqlmigrate_down")
    assert "Pending" in manage("sqlmigrate_status")
    tables = sh(
        python,
        "-c",
        "import sqlite3; print(sqlite3.connect('db.sqlite3').execute(\"SELECT name FROM sqlite_master\").fetchall())",
        cwd=site,
    )
    assert "schema_migrations" in tables and "'notes'" not in tables


def readme_blocks(heading: str) -> list[str]:
    """The fenced code blocks of the README's section ``## heading``, in order."""
    section = (ROOT / "README.md").read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```\w*\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_commands_work_as_written(tmp_path):
    """Quick start in a copy of the checkout; then "Install in your project" in a fresh
    ``startproject`` with the README's settings lines as they are (the default directory set
    explicitly and not made yet must not stop ``check`` or ``migrate``)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_URL", "PYTHON"))}
    checkout = tmp_path / "django-sqlmigrate"
    ignored = shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "db.sqlite3*", "site")
    shutil.copytree(ROOT, checkout, ignore=ignored)
    [quick_start, _tests] = readme_blocks("Quick start")
    assert "Applied 5 migrations" in sh("bash", "-c", quick_start, cwd=checkout, env=env)

    [install, settings_lines, commands] = readme_blocks("Install in your project")
    venv = checkout / ".venv" / "bin"
    env["PATH"] = f"{venv}{os.pathsep}{env['PATH']}"
    sh("bash", "-c", install.replace("/path/to/django-sqlmigrate", str(checkout)), cwd=tmp_path, env=env)
    site = tmp_path / "site"
    site.mkdir()
    sh("django-admin", "startproject", "mysite", site, cwd=tmp_path, env=env)
    settings = site / "mysite" / "settings.py"
    [installed_apps, setting] = settings_lines.strip().splitlines()[1:]
    assert installed_apps == 'INSTALLED_APPS = [..., "sqlmigrate_app"]'
    settings.write_text(settings.read_text() + f'\nINSTALLED_APPS += ["sqlmigrate_app"]\n{setting}\n')

    check = subprocess.run(["python", "manage.py", "check"], cwd=site, env=env, capture_output=True, text=True)
    assert check.returncode == 0 and "sqlmigrate.W001" in check.stderr, check.stderr
    sh("python", "manage.py", "migrate", cwd=site, env=env)
    create, up = [line.split("#")[0] for line in commands.strip().splitlines()]
    sh("bash", "-c", create, cwd=site, env=env)
    [path] = (site / "migrations_sql").glob("*_add_users_table.sql")
    path.write_text("-- UP\nCREATE TABLE users (id INTEGER PRIMARY KEY);\n-- DOWN\nDROP TABLE users;\n")
    assert "Applied 1 migration" in sh("bash", "-c", up, cwd=site, env=env)
