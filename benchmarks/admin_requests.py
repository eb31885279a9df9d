#!/usr/bin/env python3
"""Time the admin pages server-side, in one process, as a running site serves them.

    DATABASE_URL=... SQLMIGRATE_TEST_DIR=DIR python benchmarks/admin_requests.py [--rounds N]
    DATABASE_URL=... DJANGO_SETTINGS_MODULE=tests.settings_fleet SQLMIGRATE_TEST_TENANT_DIR=DIR \
        python benchmarks/admin_requests.py --fleet [--rounds N]

Runs with the demo project's settings (``tests.settings_demo``, which takes the migrations
directory from ``SQLMIGRATE_TEST_DIR``). Each request goes through the admin's own view, its
login and permission checks and the template, from a ``RequestFactory`` request by an active
superuser, and is timed from the call to the rendered response: what a server spends, without
the network or the middleware. The first list request reads every file (the cache is cold);
the rest are the figures a user sees. Prints (or writes to ``--out``) one JSON object: seconds
per request, by page, and the size of each page's HTML. With ``--fleet``: the fleet page (every
tenant's history read), filtered, searched, and a tenant's own list and detail pages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings_demo")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.urls import resolve, reverse  # noqa: E402

from sqlmigrate_app import conf  # noqa: E402
from sqlmigrate_app.directory import sql_file_names  # noqa: E402


def requester() -> Callable[[str], HttpResponse]:
    """GET a URL through its view as an active superuser; the response rendered."""
    factory = RequestFactory()
    user = get_user_model()(username="bench", is_active=True, is_staff=True, is_superuser=True)

    def get(url: str) -> HttpResponse:
        request = factory.get(url)
        request.user = user
        match = resolve(request.path_info)
        response = match.func(request, *match.args, **match.kwargs)
        if hasattr(response, "render"):
            response.render()
        return response

    return get


def fleet_pages() -> tuple[str, dict[str, str], int]:
    """The fleet pages of the default database: the first request's URL, then each page's."""
    fleet = reverse("admin:sqlmigrate_app_sqlmigration_fleet")
    changelist = reverse("admin:sqlmigrate_app_sqlmigration_changelist")
    tenants = conf.tenants()
    directory = conf.tenant_dir()
    assert directory is not None
    ids = [name[:-4] for name in sql_file_names(directory)]
    tenant = tenants[len(tenants) // 2]
    pages = {
        "fleet": fleet,
        **({"fleet_page_2": fleet + "?p=2"} if len(tenants) > 100 else {}),
        "fleet_behind": fleet + "?state=behind",
        "fleet_search_one": fleet + f"?q={tenant}",
        "tenant_list": changelist + f"?tenant={tenant}",
        "tenant_detail": reverse("admin:sqlmigrate_app_sqlmigration_change", args=[ids[len(ids) // 2]])
        + f"?tenant={tenant}",
    }
    return fleet, pages, len(tenants)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="timed requests per page (after the first list)")
    parser.add_argument("--fleet", action="store_true", help="the fleet pages rather than the list of one database")
    parser.add_argument("--out", type=Path, help="write the JSON here rather than to stdout")
    args = parser.parse_args()
    get = requester()
    if args.fleet:
        changelist, pages, count = fleet_pages()
    else:
        changelist, pages, count = list_pages()
    times: dict[str, list[float]] = {"list_cold": []}
    sizes: dict[str, int] = {}
    started = time.perf_counter()
    response = get(changelist)
    times["list_cold"].append(time.perf_counter() - started)
    assert response.status_code == 200, response
    for _ in range(args.rounds):
        for key, url in pages.items():
            started = time.perf_counter()
            try:
                response = get(url)
                status = response.status_code
            except Exception as exc:  # Http404 raised through the view, as the handler would turn it
                status = 404 if type(exc).__name__ == "Http404" else 500
                if status == 500:
                    raise
            times.setdefault(key, []).append(time.perf_counter() - started)
            assert status == (404 if key == "detail_404" else 200), (key, status)
            sizes[key] = len(response.content) if status == 200 else 0
    result = json.dumps({"tenants" if args.fleet else "files": count, "seconds": times, "html_bytes": sizes})
    if args.out:
        args.out.write_text(result)
    else:
        print(result)


def list_pages() -> tuple[str, dict[str, str], int]:
    """The list and detail pages of the default database: the first request's URL, then each page's."""
    changelist = reverse("admin:sqlmigrate_app_sqlmigration_changelist")
    ids = [name[:-4] for name in sql_file_names(conf.migrations_dir())]
    middle = ids[len(ids) // 2]
    pages = {
        "list": changelist,
        "list_page_2": changelist + "?p=2",
        "list_pending": changelist + "?state=pending",
        "search_one": changelist + f"?q={middle}",
        "detail": reverse("admin:sqlmigrate_app_sqlmigration_change", args=[middle]),
        "detail_404": reverse("admin:sqlmigrate_app_sqlmigration_change", args=["20990101000000_nothing"]),
    }
    return changelist, pages, len(ids)


if __name__ == "__main__":
    main()
