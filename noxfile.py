"""Development sessions: the test suite over the Python x Django versions the classifiers claim,
and the gates CI runs (lint, types, docs).

    nox -l                                          # list the sessions
    nox -s lint types docs                          # the quick gates
    nox -s tests                                    # every cell of the matrix this machine has a Python for
    nox -s "tests(python='3.11', django='5.2')"     # one cell; arguments after -- go to pytest

A cell whose interpreter is not installed is skipped, not failed (unless CI is set in the
environment, where nox makes a missing interpreter an error). docs/development.md says which cells
have been run.
"""

from __future__ import annotations

import nox
from packaging.requirements import Requirement

nox.options.sessions = ["lint", "types", "docs", "tests"]

# The classifiers in pyproject.toml: Django 5.2 on Python 3.10 to 3.13; Django 6.0 needs 3.12+.
DJANGO_PYTHONS = {
    "5.2": ["3.10", "3.11", "3.12", "3.13"],
    "6.0": ["3.12", "3.13"],
}
MATRIX = sorted((python, django) for django, pythons in DJANGO_PYTHONS.items() for python in pythons)

EXTRAS = nox.project.load_toml("pyproject.toml")["project"]["optional-dependencies"]


def extra_requirement(extra: str, name: str) -> str:
    """The requirement for ``name`` in an extra of pyproject.toml, so a session installs the same version range."""
    return next(requirement for requirement in EXTRAS[extra] if Requirement(requirement).name == name)


@nox.session
@nox.parametrize("python,django", MATRIX)
def tests(session: nox.Session, django: str) -> None:
    """Run the test suite with one Django release (its latest patch release)."""
    session.install("-e", ".[test]", f"django~={django}.0")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check the code with ruff's linter and formatter, as CI does."""
    session.install(extra_requirement("test", "ruff"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """Type-check the package with mypy and django-stubs, as CI does."""
    session.install("-e", ".[test]")
    session.run("mypy", "sqlmigrate_app")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; a warning (a broken link or anchor) fails it."""
    session.install(*EXTRAS["docs"])
    session.run("mkdocs", "build", "--strict")
