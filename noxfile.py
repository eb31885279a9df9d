"""Development sessions: the test suite over the Python x Django versions the package supports,
and the gates CI runs (lint, types, docs). CI runs ``nox -t ci`` (.ci/run): the gates and the
test cells the classifiers claim.

    nox -l                                          # list the sessions
    nox -t ci                                       # what CI runs
    nox -s lint types docs                          # the quick gates
    nox -s tests                                    # every cell of the matrix this machine has a Python for
    nox -s "tests(python='3.11', django='5.2')"     # one cell; arguments after -- go to pytest

A cell whose interpreter is not installed is skipped, not failed (unless CI is set in the
environment, where nox makes a missing interpreter an error); nox never downloads one.
docs/development.md says which cells have been run.
"""

from __future__ import annotations

import nox
from packaging.requirements import Requirement

nox.options.sessions = ["lint", "types", "docs", "tests"]
nox.options.reuse_venv = "yes"  # a second run keeps each session's environment; CI starts from a clean clone
nox.options.download_python = "never"  # the machine's interpreters only: CI reaches no Python builds

PROJECT = nox.project.load_toml("pyproject.toml")["project"]
EXTRAS = PROJECT["optional-dependencies"]

# What the package supports (requires-python, the django dependency): Django 5.2 on Python 3.10
# to 3.13; Django 6.0 needs Python 3.12+.
DJANGO_PYTHONS = {
    "5.2": ["3.10", "3.11", "3.12", "3.13"],
    "6.0": ["3.12", "3.13"],
}
MATRIX = sorted((python, django) for django, pythons in DJANGO_PYTHONS.items() for python in pythons)

# The pre-commit hooks are local ones that run these tools from the session (.pre-commit-config.yaml).
LINTERS = ["pre-commit", "pre-commit-hooks", "pyproject-fmt", "django-upgrade", "ruff"]


def extra_requirement(extra: str, name: str) -> str:
    """The requirement for ``name`` in an extra of pyproject.toml, so a session installs the same version range."""
    return next(requirement for requirement in EXTRAS[extra] if Requirement(requirement).name == name)


def claimed(prefix: str) -> set[str]:
    """The versions the classifiers name after ``prefix``."""
    return {classifier.removeprefix(prefix) for classifier in PROJECT["classifiers"] if classifier.startswith(prefix)}


def claimed_cells() -> list[tuple[str, str]]:
    """The cells of the matrix the classifiers claim; an error if a claimed version is in none."""
    pythons = {version for version in claimed("Programming Language :: Python :: ") if version.count(".") == 1}
    djangos = claimed("Framework :: Django :: ")
    cells = [(python, django) for python, django in MATRIX if python in pythons and django in djangos]
    if pythons - {python for python, _ in cells} or djangos - {django for _, django in cells}:
        raise ValueError(f"the classifiers claim Python {sorted(pythons)}, Django {sorted(djangos)}: not all in MATRIX")
    return cells


# The classifiers claim only what CI runs: the cells they name are tagged "ci" (.ci/run: nox -t ci).
CLAIMED = claimed_cells()
CELLS = [nox.param(python, django, tags=["ci"] if (python, django) in CLAIMED else []) for python, django in MATRIX]


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    """Check the code with ruff's linter and formatter, then run every pre-commit hook on every file."""
    session.install(*(extra_requirement("dev", name) for name in LINTERS))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    hooks_home = {"PRE_COMMIT_HOME": session.create_tmp()}  # not the user's cache
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure", env=hooks_home)


@nox.session(tags=["ci"])
def types(session: nox.Session) -> None:
    """Type-check the package (mypy strict, django-stubs) and the tests (untyped test functions allowed)."""
    session.install("-e", ".[test]")
    session.run("mypy", "sqlmigrate_app", "tests")


@nox.session(tags=["ci"])
def docs(session: nox.Session) -> None:
    """Build the documentation site; a warning (a broken link or anchor) fails it."""
    session.install(*EXTRAS["docs"])
    session.run("mkdocs", "build", "--strict")


@nox.session
@nox.parametrize("python,django", CELLS)
def tests(session: nox.Session, django: str) -> None:
    """Run the test suite with one Django release (its latest patch release).

    Every test, the ``network`` ones too (plain ``pytest`` deselects them: they need the package
    index, which CI has); a ``-m`` among the arguments wins, being later. Without arguments, as CI
    does: branch coverage, failing below the floor (fail_under in pyproject.toml). Coverage is asked
    for on the command line, not in PYTEST_ADDOPTS, which the pytest runs that tests/test_testing.py
    starts would inherit. Arguments replace it.
    """
    session.install("-e", ".[test]", f"django~={django}.0")
    coverage = ["--cov", "--cov-report=term-missing:skip-covered"]
    session.run("pytest", "-m", "network or not network", *(session.posargs or coverage))
