"""What the README and ``docs/`` claim that a test can check: every command and exit code in the
commands reference, links that lead somewhere, the docs home page holding the README's sections,
no test counts that go stale. (``mkdocs build --strict`` checks the links inside ``docs/``.)"""

from __future__ import annotations

import re

import pytest
from django.core.management import get_commands, load_command_class

from .support.target import ROOT

COMMANDS_MD = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = sorted(name for name, app in get_commands().items() if app == "sqlmigrate_app")


def help_exit_codes(name: str) -> set[int]:
    """The exit codes the end of ``manage.py NAME --help`` lists (none for a command without)."""
    text = " ".join(load_command_class("sqlmigrate_app", name).create_parser("manage.py", name).format_help().split())
    listed = text.partition("Exit codes: ")[2].partition(".")[0]
    return {int(code) for code in re.findall(r"(?:^|[;,] )(\d+) ", listed)}


def documented_exit_codes() -> set[int]:
    """The codes of the table under ``## Exit codes`` of docs/commands.md (``130 / 143`` is two)."""
    table = COMMANDS_MD.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    return {int(code) for cell in re.findall(r"^\| ([\d /]+) \|", table, re.MULTILINE) for code in cell.split("/")}


def headings(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, re.MULTILINE)


def test_every_command_has_a_section_in_the_commands_reference():
    assert len(COMMANDS) == 11
    assert [name for name in COMMANDS if f"\n## `{name}" not in COMMANDS_MD] == []


@pytest.mark.parametrize("name", COMMANDS)
def test_every_exit_code_a_command_lists_is_in_the_commands_reference(name):
    assert help_exit_codes(name) <= documented_exit_codes()


def test_the_exit_codes_help_lists_are_read():
    assert help_exit_codes("sqlmigrate_validate") == {0, 1, 2, 4, 5, 6, 7, 8, 10, 130, 141, 143}
    # 12: the schema file; 13: a fleet; 14: drift; 15: a pooler
    assert help_exit_codes("sqlmigrate_up") == {0, 1, 2, 12, 13, 14, 15, 130, 141, 143}


def test_the_readme_links_lead_to_files_of_the_repository():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    relative = [target for target in targets if "://" not in target]
    assert "docs/index.md" in relative
    assert [target for target in relative if not (ROOT / target).is_file()] == []


def test_the_docs_home_page_has_every_section_of_the_readme():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    missing = set(headings(README)) - set(headings(index)) - {"Documentation"}
    assert missing == set()
    assert "## Before you deploy" in index


def test_the_development_page_gives_no_test_counts_that_go_stale():
    development = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    assert re.findall(r"\b\d[\d,]* (?:tests|passed)\b", development) == []
    assert "pytest --collect-only -q" in development  # how to see the count instead
