"""The admin page with many migrations: pages of 100, the process's file cache, and a detail page
that reads its own file and one history row. Through Django's test client, on SQLite and
PostgreSQL. How fast it is, is benchmarks/' business."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sqlmigrate_app import cache, directory
from sqlmigrate_app.directory import load_directory

from .support.admin_demo import detail_url, list_url, listed_rows

pytestmark = pytest.mark.django_db
COUNT = 150
APPLIED = 40
PAGINATOR_RE = re.compile(r'<p class="paginator">(.*?)</p>', re.DOTALL)


def migration_id(i: int) -> str:
    return f"20240101{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}_create_t{i}"


IDS = [migration_id(i) for i in range(COUNT)]


@pytest.fixture
def many(target: Any, settings: Any) -> Any:
    """150 migrations, the 40 oldest applied, and the admin pointed at them."""
    for i, mid in enumerate(IDS):
        target.migration(mid, f"CREATE TABLE t{i} (id INTEGER);", f"DROP TABLE t{i};")
    result = target.call("sqlmigrate_up", to=IDS[APPLIED - 1])
    assert result.code == 0, result.text
    settings.SQLMIGRATE_DIRS = {target.alias: str(target.directory)}
    return target


@pytest.fixture
def trusting_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust a file's signature at once: the files of a test are younger than RACY_NS."""
    monkeypatch.setattr(directory, "RACY_NS", 0)


def ids_on(client: Client, **params: str) -> list[str]:
    response = client.get(list_url(**params))
    assert response.status_code == 200
    return [mid for _, mid in listed_rows(response.content.decode())]


def paginator(client: Client, **params: str) -> str:
    match = PAGINATOR_RE.search(client.get(list_url(**params)).content.decode())
    assert match
    return " ".join(match[1].split())


# Pages --------------------------------------------------------------------------------------


def test_the_list_shows_100_rows_a_page_newest_first_and_page_2_the_rest(many: Any, admin_client: Client) -> None:
    first = ids_on(admin_client)
    second = ids_on(admin_client, p="2")

    assert first == IDS[::-1][:100]
    assert second == IDS[::-1][100:]
    assert paginator(admin_client) == (
        '<span class="this-page">1</span> <a href="?database=target&amp;p=2" class="end">2</a> 150 SQL migrations'
    )
    assert '<a href="?database=target&amp;p=1">1</a> <span class="this-page">2</span>' in paginator(admin_client, p="2")


def test_filter_search_and_counts_cover_every_page(many: Any, admin_client: Client) -> None:
    html = admin_client.get(list_url()).content.decode()
    applied = ids_on(admin_client, state="applied")
    pending_page_2 = ids_on(admin_client, state="pending", p="2")
    found = ids_on(admin_client, q="create_t7")  # t7, t70-t79: t7 is on page 2 of the whole list

    assert f"All ({COUNT})" in html and f"Applied ({APPLIED})" in html and f"Pending ({COUNT - APPLIED})" in html
    assert f"{COUNT} of {COUNT} migrations" in html
    assert applied == IDS[:APPLIED][::-1]
    assert pending_page_2 == IDS[APPLIED:][::-1][100:]
    assert found == [IDS[i] for i in (79, 78, 77, 76, 75, 74, 73, 72, 71, 70, 7)]
    assert "state=pending&amp;p=2" in paginator(admin_client, state="pending")


def test_a_page_that_is_not_there_goes_back_to_the_list_as_a_changelist_does(many: Any, admin_client: Client) -> None:
    changelist = reverse("admin:sqlmigrate_app_sqlmigration_changelist")

    gone = admin_client.get(list_url(p="3"))
    again = admin_client.get(list_url(p="3", e="1"))

    assert (gone.status_code, gone["Location"]) == (302, changelist + "?database=target&e=1")
    assert again.status_code == 400 and b"no page 3 (pages 1 to 2)" in again.content
    assert ids_on(admin_client, p="nonsense") == IDS[::-1][:100]  # not a number: page 1, as Django does


# The file cache -----------------------------------------------------------------------------


def age(path: Path, seconds: int) -> None:
    """Set a file's modification time ``seconds`` into the past."""
    stamp = path.stat().st_mtime_ns - seconds * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


def checksum_shown(client: Client, mid: str) -> str:
    html = client.get(list_url(q=mid)).content.decode()
    match = re.search(r'<code title="([0-9a-f]{64})">', html)
    assert match, html
    return match[1]


@pytest.mark.usefixtures("trusting_cache")
def test_a_file_changed_at_the_same_size_with_a_new_mtime_is_read_again(many: Any, admin_client: Client) -> None:
    path = many.directory / f"{IDS[-1]}.sql"
    age(path, 100)
    before = checksum_shown(admin_client, IDS[-1])

    path.write_text(path.read_text().replace("t149", "x149"))
    age(path, 50)

    assert checksum_shown(admin_client, IDS[-1]) != before
    assert checksum_shown(admin_client, IDS[-1]) == load_directory(many.directory).by_id()[IDS[-1]].checksum


@pytest.mark.usefixtures("trusting_cache")
def test_a_file_changed_at_the_same_mtime_with_a_new_size_is_read_again(many: Any, admin_client: Client) -> None:
    path = many.directory / f"{IDS[-1]}.sql"
    age(path, 100)
    mtime = path.stat().st_mtime_ns
    before = checksum_shown(admin_client, IDS[-1])

    path.write_text(path.read_text() + "-- one more line\n")
    os.utime(path, ns=(mtime, mtime))

    assert checksum_shown(admin_client, IDS[-1]) != before
    assert checksum_shown(admin_client, IDS[-1]) == load_directory(many.directory).by_id()[IDS[-1]].checksum


@pytest.mark.usefixtures("trusting_cache")
def test_a_file_changed_at_the_same_size_and_mtime_is_read_again_by_its_ctime(many: Any, admin_client: Client) -> None:
    path = many.directory / f"{IDS[-1]}.sql"
    age(path, 100)
    mtime = path.stat().st_mtime_ns
    before = checksum_shown(admin_client, IDS[-1])

    path.write_text(path.read_text().replace("t149", "x149"))
    os.utime(path, ns=(mtime, mtime))  # what touch -r or rsync -t leave: only ctime moved

    assert checksum_shown(admin_client, IDS[-1]) != before


@pytest.mark.usefixtures("trusting_cache")
def test_a_deleted_file_disappears_from_the_list(many: Any, admin_client: Client) -> None:
    pending, applied = many.directory / f"{IDS[-1]}.sql", many.directory / f"{IDS[0]}.sql"
    assert ids_on(admin_client)[0] == IDS[-1]

    pending.unlink()
    applied.unlink()
    html = admin_client.get(list_url()).content.decode()

    assert IDS[-1] not in html
    assert ("missing", IDS[0]) in listed_rows(admin_client.get(list_url(state="missing")).content.decode())
    assert f"All ({COUNT - 1})" in html


@pytest.mark.usefixtures("trusting_cache")
def test_the_cache_reads_a_file_again_only_when_its_signature_changed(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{migration_id(i)}.sql").write_text(f"-- UP\nCREATE TABLE t{i} (id INTEGER);\n")
    files = cache.FileCache(tmp_path)

    first = files.load().migrations
    (tmp_path / f"{migration_id(1)}.sql").write_text("-- UP\nCREATE TABLE t1 (id BIGINT);\n")
    second = files.load().migrations

    assert second[0] is first[0] and second[2] is first[2]  # the same objects: not read again
    assert second[1] is not first[1] and "BIGINT" in second[1].up.sql


def test_a_file_changed_within_racy_ns_is_read_every_time(tmp_path: Path) -> None:
    (tmp_path / f"{migration_id(0)}.sql").write_text("-- UP\nCREATE TABLE t0 (id INTEGER);\n")
    files = cache.FileCache(tmp_path)

    assert files.load().migrations[0] is not files.load().migrations[0]


# Detail -------------------------------------------------------------------------------------


def test_detail_reads_one_history_row_and_ignores_other_files(many: Any, admin_client: Client) -> None:
    many.write("20250101000000_broken.sql", "CREATE TABLE nope (id INTEGER);\n")  # the list shows this error

    with CaptureQueriesContext(connections[many.alias]) as captured:
        response = admin_client.get(detail_url(IDS[5]))

    assert response.status_code == 200
    assert 'id="sqlmigrate-state">applied<' in response.content.decode()
    reads = [q["sql"] for q in captured.captured_queries if "schema_migrations" in q["sql"] and "SELECT *" in q["sql"]]
    assert all("WHERE" in sql for sql in reads), reads
    assert "SQL before the -- UP marker" in admin_client.get(list_url()).content.decode()


def test_detail_of_a_malformed_file_is_a_404_saying_why(many: Any, admin_client: Client) -> None:
    many.write("20250101000000_broken.sql", "CREATE TABLE nope (id INTEGER);\n")

    response = admin_client.get(detail_url("20250101000000_broken"))

    assert response.status_code == 404


@pytest.mark.parametrize("unknown", ["20990101000000_nothing", "../../etc/passwd", "not a migration", "x.sql"])
def test_detail_of_an_unknown_id_is_a_404(many: Any, admin_client: Client, unknown: str) -> None:
    assert admin_client.get(detail_url(unknown)).status_code == 404


def test_detail_of_a_history_row_whose_id_names_no_file_shows_it_missing(many: Any, admin_client: Client) -> None:
    many.query("INSERT INTO schema_migrations (id, name, checksum) VALUES ('0001_from_another_tool', 'Old', 'abc')")

    response = admin_client.get(detail_url("0001_from_another_tool"))

    assert response.status_code == 200
    assert 'id="sqlmigrate-state">missing<' in response.content.decode()
