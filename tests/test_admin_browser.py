"""The admin page end to end in a real headless Chromium (Debian's), against a live server.

Without /usr/bin/chromium this skips, unless ``SQLMIGRATE_REQUIRE_BROWSER=1`` (as in CI), where it
fails. ``SQLMIGRATE_UPDATE_SCREENSHOT=1`` also rewrites ``docs/admin.png`` and
``docs/admin-fleet.png``, the pictures in docs/admin.md.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pytest_django.live_server_helper import LiveServer

from sqlmigrate_app.runner import MigrationRunner

from .support.admin_demo import APPLIED_IDS, PENDING_IDS, apply_demo_migrations, use_demo_directory
from .support.fleet import make_fleet
from .support.target import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> None:
    """Skip (or, in CI, fail) at once when there is no browser."""
    reason = None
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"no browser: {CHROMIUM} is missing (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        reason = "no browser driver: playwright is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("SQLMIGRATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"a browser is required (SQLMIGRATE_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)


@contextmanager
def browser_page() -> Iterator[Any]:
    """A page of a headless Chromium. Open it only after the test's database work: Playwright's
    sync API runs in greenlets, and Django connections opened meanwhile land in another context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 760})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


@pytest.fixture
def live_server(target: Any) -> Any:
    """pytest-django's live server, but one per test rather than per session.

    Django keeps a connection per thread and alias; a server thread kept over several tests would
    keep its connection to the previous test's ``target`` database.
    """
    server = LiveServer("localhost")
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_admin_in_a_real_browser(
    chromium: None,
    target: Any,
    settings: Any,
    live_server: Any,
    django_user_model: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_demo_directory(target, settings)
    apply_demo_migrations(target)
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    # Playwright's sync API runs an event loop in this thread; Django would refuse any ORM call
    # made while it runs as "async unsafe".
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_page() as page:
        browse(page, live_server.url, tmp_path)
    assert (tmp_path / "admin-list.png").stat().st_size > 10_000
    assert (tmp_path / "admin-detail.png").stat().st_size > 10_000
    if os.environ.get("SQLMIGRATE_UPDATE_SCREENSHOT") == "1" and target.vendor == "sqlite":
        shutil.copy(tmp_path / "admin-list.png", ROOT / "docs" / "admin.png")


def browse(page: Any, url: str, tmp_path: Path) -> None:
    """Log in, see applied and pending rows, filter by state, open a detail page."""
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")

    page.goto(f"{url}/admin/sqlmigrate_app/sqlmigration/?database=target")
    rows = page.locator("tr.sqlmigrate-row")
    assert rows.count() == len(APPLIED_IDS) + len(PENDING_IDS)
    assert page.locator('tr.sqlmigrate-row[data-state="applied"]').count() == len(APPLIED_IDS)
    assert page.locator('tr.sqlmigrate-row[data-state="pending"]').count() == len(PENDING_IDS)
    assert rows.first.locator("th a").inner_text() == PENDING_IDS[-1]
    page.screenshot(path=tmp_path / "admin-list.png", full_page=True)

    page.click("#changelist-filter >> text=Pending (2)")
    page.wait_for_url("**state=pending**")
    assert page.locator("tr.sqlmigrate-row").count() == len(PENDING_IDS)
    assert page.locator('tr.sqlmigrate-row[data-state="applied"]').count() == 0

    page.goto(f"{url}/admin/sqlmigrate_app/sqlmigration/?database=target&state=applied")
    page.click(f"text={APPLIED_IDS[0]}")
    page.wait_for_url(f"**/{APPLIED_IDS[0]}/change/?database=target")
    assert "CREATE TABLE IF NOT EXISTS client_registrations" in page.locator("#sqlmigrate-up").inner_text()
    assert "DROP TABLE IF EXISTS client_registrations;" in page.locator("#sqlmigrate-down").inner_text()
    stored = page.locator("#sqlmigrate-stored-checksum").inner_text()
    assert stored == page.locator("#sqlmigrate-current-checksum").inner_text()
    assert len(stored) == 64
    assert page.locator("#sqlmigrate-match").inner_text().strip() == "yes"
    page.screenshot(path=tmp_path / "admin-detail.png", full_page=True)


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
@pytest.mark.django_db(transaction=True)
def test_the_fleet_page_in_a_real_browser(
    chromium: None,
    target: Any,
    settings: Any,
    live_server: Any,
    django_user_model: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = make_fleet(target, settings, tmp_path)
    for number, table in enumerate(("accounts", "invoices", "payments")):
        fleet.migration(f"2024120100000{number}_create_{table}", f"CREATE TABLE {table} (id bigint PRIMARY KEY);")
    fleet.create("tenant_acme", "tenant_globex", "tenant_initech")
    for schema in ("tenant_acme", "tenant_initech"):
        MigrationRunner(target.alias, schema=schema).migrate()
    MigrationRunner(target.alias, schema="tenant_globex").migrate(to="20241201000000_create_accounts")
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_page() as page:
        browse_fleet(page, live_server.url, tmp_path)
    assert (tmp_path / "admin-fleet.png").stat().st_size > 10_000
    if os.environ.get("SQLMIGRATE_UPDATE_SCREENSHOT") == "1":
        shutil.copy(tmp_path / "admin-fleet.png", ROOT / "docs" / "admin-fleet.png")


def browse_fleet(page: Any, url: str, tmp_path: Path) -> None:
    """Log in, open the fleet from the list page, see the tenant behind first, open its migrations."""
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")

    page.goto(f"{url}/admin/sqlmigrate_app/sqlmigration/?database=target")
    page.click("#sqlmigrate-fleet-link a")
    page.wait_for_url("**/sqlmigration/fleet/?database=target")
    rows = page.locator("tr.sqlmigrate-tenant")
    assert rows.count() == 3
    assert rows.first.get_attribute("data-state") == "behind"
    assert rows.first.locator("th a").inner_text() == "tenant_globex"
    assert "2: 20241201000001_create_invoices, 20241201000002_create_payments" in rows.first.inner_text()
    assert page.locator('tr.sqlmigrate-tenant[data-state="up to date"]').count() == 2
    page.screenshot(path=tmp_path / "admin-fleet.png", full_page=True)

    rows.first.locator("th a").click()
    page.wait_for_url("**tenant=tenant_globex")
    assert page.locator('tr.sqlmigrate-row[data-state="applied"]').count() == 1
    assert page.locator('tr.sqlmigrate-row[data-state="pending"]').count() == 2
