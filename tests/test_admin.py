"""The read-only admin page, through Django's test client, on a SQLite and a PostgreSQL target."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from .support.admin_demo import (
    APPLIED_IDS,
    DEMO_IDS,
    PENDING_IDS,
    apply_demo_migrations,
    copy_demo_migrations,
    detail_url,
    list_url,
    listed_rows,
)
from .support.odd_history import ODD_IDS, TEXT_HISTORY, add_odd_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(target: Any, settings: Any) -> Any:
    copy_demo_migrations(target, settings)
    apply_demo_migrations(target)
    return target


def make_user(django_user_model: Any, name: str, *, view: bool, **flags: Any) -> Any:
    user = django_user_model.objects.create_user(name, password="pw", **flags)
    if view:
        user.user_permissions.add(Permission.objects.get(codename="view_sqlmigration"))
    return user


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# Who may see it -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page(demo: Any, client: Client) -> None:
    for url in (list_url(), detail_url(APPLIED_IDS[0])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_view_permission_is_refused(demo: Any, django_user_model: Any) -> None:
    client = client_for(make_user(django_user_model, "staff", view=False, is_staff=True))
    assert client.get(list_url()).status_code == 403
    assert client.get(detail_url(APPLIED_IDS[0])).status_code == 403
    assert b"SQL migrations" not in client.get(reverse("admin:index")).content


def test_users_who_are_not_active_staff_are_sent_to_the_login_page(demo: Any, django_user_model: Any) -> None:
    not_staff = make_user(django_user_model, "viewer", view=True)
    inactive = make_user(django_user_model, "gone", view=True, is_staff=True, is_active=False)
    for user in (not_staff, inactive):
        response = client_for(user).get(list_url())
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_staff_with_the_view_permission_sees_every_migration_newest_first(demo: Any, django_user_model: Any) -> None:
    client = client_for(make_user(django_user_model, "staff", view=True, is_staff=True))
    response = client.get(list_url())
    assert response.status_code == 200
    expected = [("pending", i) for i in reversed(PENDING_IDS)] + [("applied", i) for i in reversed(APPLIED_IDS)]
    assert listed_rows(response.content.decode()) == expected
    assert b"SQL migrations" in client.get(reverse("admin:index")).content


def test_superuser_sees_it_without_add_change_or_delete_buttons(demo: Any, admin_client: Client) -> None:
    response = admin_client.get(list_url())
    assert response.status_code == 200
    html = response.content.decode()
    assert len(listed_rows(html)) == len(DEMO_IDS)
    assert "sqlmigration/add/" not in html and "/delete/" not in html
    page = html.partition('<div id="content-main">')[2]
    assert page and 'method="post"' not in page.lower()
    detail = admin_client.get(detail_url(APPLIED_IDS[0])).content.decode().partition('<div id="content-main">')[2]
    assert detail and "<form" not in detail and "/delete/" not in detail
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:sqlmigrate_app_sqlmigration_changelist") in index
    assert reverse("admin:sqlmigrate_app_sqlmigration_add") not in index


# Read-only ----------------------------------------------------------------------------------


def test_every_writing_request_is_refused_and_nothing_changes(demo: Any, admin_client: Client) -> None:
    migration_id = APPLIED_IDS[-1]
    refused = {
        list_url(): 405,
        detail_url(migration_id): 405,
        reverse("admin:sqlmigrate_app_sqlmigration_add"): 403,
        reverse("admin:sqlmigrate_app_sqlmigration_delete", args=[migration_id]): 403,
        reverse("admin:sqlmigrate_app_sqlmigration_history", args=[migration_id]): 403,
    }
    for url, status in refused.items():
        assert admin_client.post(url, {"post": "yes", "state": "pending"}).status_code == status, url
    assert admin_client.get(reverse("admin:sqlmigrate_app_sqlmigration_add")).status_code == 403
    assert admin_client.get(reverse("admin:sqlmigrate_app_sqlmigration_delete", args=[migration_id])).status_code == 403
    assert demo.history() == APPLIED_IDS


def test_viewing_does_not_create_the_history_table(target: Any, settings: Any, admin_client: Client) -> None:
    copy_demo_migrations(target, settings)
    for url in (list_url(), detail_url(DEMO_IDS[0])):
        assert admin_client.get(url).status_code == 200
    rows = listed_rows(admin_client.get(list_url()).content.decode())
    assert rows == [("pending", i) for i in reversed(DEMO_IDS)]
    assert "schema_migrations" not in target.tables()


# Filter, search, database -------------------------------------------------------------------


def test_filter_by_state(demo: Any, admin_client: Client) -> None:
    pending = listed_rows(admin_client.get(list_url(state="pending")).content.decode())
    assert pending == [("pending", i) for i in reversed(PENDING_IDS)]
    applied = listed_rows(admin_client.get(list_url(state="applied")).content.decode())
    assert applied == [("applied", i) for i in reversed(APPLIED_IDS)]
    assert listed_rows(admin_client.get(list_url(state="modified")).content.decode()) == []


def test_unknown_state_goes_back_to_the_unfiltered_list_as_django_filters_do(demo: Any, admin_client: Client) -> None:
    changelist = reverse("admin:sqlmigrate_app_sqlmigration_changelist")
    users = reverse("admin:auth_user_changelist")
    django_own = admin_client.get(users + "?is_staff__exact=1&no_such_field=1")
    assert (django_own.status_code, django_own["Location"]) == (302, users + "?e=1")

    response = admin_client.get(list_url(state="bogus", q="Tool"))

    assert (response.status_code, response["Location"]) == (302, changelist + "?database=target&e=1")
    followed = admin_client.get(response["Location"])
    assert followed.status_code == 200
    assert len(listed_rows(followed.content.decode())) == len(DEMO_IDS)
    again = admin_client.get(list_url(state="bogus", e="1"))  # no redirect loop
    assert again.status_code == 400 and b"unknown state 'bogus'" in again.content


def test_search_by_id_and_by_name(demo: Any, admin_client: Client) -> None:
    by_name = listed_rows(admin_client.get(list_url(q="Tool")).content.decode())
    assert by_name == [("pending", "20241201000004_create_tool_definitions")]
    by_id = listed_rows(admin_client.get(list_url(q="20241201000002")).content.decode())
    assert by_id == [("applied", "20241201000002_create_agent_definitions")]
    both = listed_rows(admin_client.get(list_url(q="definitions", state="applied")).content.decode())
    assert both == [("applied", i) for i in reversed(APPLIED_IDS[1:])]


def test_the_alias_picker_lists_the_databases_and_refuses_others(demo: Any, admin_client: Client) -> None:
    html = admin_client.get(list_url()).content.decode()
    assert 'href="?database=default"' in html and 'href="?database=target"' in html
    response = admin_client.get(reverse("admin:sqlmigrate_app_sqlmigration_changelist") + "?database=elsewhere")
    assert response.status_code == 400
    assert b"unknown database alias 'elsewhere'" in response.content
    assert response["Content-Type"].startswith("text/plain")


def test_modified_and_missing_migrations_show_as_such(demo: Any, admin_client: Client) -> None:
    path = demo.directory / f"{APPLIED_IDS[1]}.sql"
    path.write_text(path.read_text() + "\n-- edited after it ran\n")
    (demo.directory / f"{APPLIED_IDS[0]}.sql").unlink()
    rows = dict((i, state) for state, i in listed_rows(admin_client.get(list_url()).content.decode()))
    assert rows[APPLIED_IDS[0]] == "missing"
    assert rows[APPLIED_IDS[1]] == "modified"
    assert rows[APPLIED_IDS[2]] == "applied"
    missing = admin_client.get(detail_url(APPLIED_IDS[0])).content.decode()
    assert "The file of this migration is missing" in missing


def test_a_bad_migration_file_is_reported_not_a_server_error(demo: Any, admin_client: Client) -> None:
    demo.write("20250101000000_broken.sql", "CREATE TABLE nope (id INTEGER);\n")
    response = admin_client.get(list_url())
    assert response.status_code == 200
    assert "20250101000000_broken.sql:1: SQL before the -- UP marker" in response.content.decode()
    assert listed_rows(response.content.decode()) == []


# Detail -------------------------------------------------------------------------------------


def test_detail_shows_the_sql_and_matching_checksums(demo: Any, admin_client: Client) -> None:
    migration_id = APPLIED_IDS[0]
    stored = demo.query("SELECT checksum FROM schema_migrations WHERE id = %s", [migration_id])[0][0]
    response = admin_client.get(detail_url(migration_id))
    assert response.status_code == 200
    html = response.content.decode()
    assert "CREATE TABLE IF NOT EXISTS client_registrations (" in html
    assert "DROP TABLE IF EXISTS client_registrations;" in html
    assert f'<code id="sqlmigrate-stored-checksum">{stored}</code>' in html
    assert f'<code id="sqlmigrate-current-checksum">{stored}</code>' in html
    assert '<span class="sqlmigrate-match-yes">yes</span>' in html


def test_detail_of_a_modified_migration_says_the_checksums_differ(demo: Any, admin_client: Client) -> None:
    migration_id = APPLIED_IDS[1]
    stored = demo.query("SELECT checksum FROM schema_migrations WHERE id = %s", [migration_id])[0][0]
    path = demo.directory / f"{migration_id}.sql"
    path.write_text(path.read_text().replace("-- DOWN", "-- DOWN\n-- a comment added later"))
    html = admin_client.get(detail_url(migration_id)).content.decode()
    assert f'<code id="sqlmigrate-stored-checksum">{stored}</code>' in html
    assert '<code id="sqlmigrate-current-checksum">' in html and f'current-checksum">{stored}' not in html
    assert "the file changed since it was applied" in html
    assert "-- a comment added later" in html


def test_detail_of_an_unknown_migration_is_404(demo: Any, admin_client: Client) -> None:
    assert admin_client.get(detail_url("20990101000000_nothing")).status_code == 404


# History rows another tool wrote -------------------------------------------------------------


def test_odd_history_rows_show_as_missing_on_the_list_and_their_pages(
    target: Any, settings: Any, admin_client: Client
) -> None:
    copy_demo_migrations(target, settings)
    target.query(TEXT_HISTORY)
    apply_demo_migrations(target)
    add_odd_rows(target)

    response = admin_client.get(list_url())

    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert ">(empty id)</a>" in html
    assert "Missing (7)" in html
    for odd in ODD_IDS:
        page = admin_client.get(detail_url(odd))
        assert page.status_code == 200, repr(odd)
        assert "The file of this migration is missing" in page.content.decode()
        assert page.context["row"].id == odd and page.context["row"].state == "missing"
