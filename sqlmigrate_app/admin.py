"""A read-only admin page: every SQL migration of a database, with its state, and its SQL.

The data comes from :meth:`MigrationRunner.status_table` and :meth:`~MigrationRunner.status_of`
(which never write; a missing history table reads as "everything pending"), not from the ORM:
:class:`SqlMigration` is an unmanaged model that only gives the page a URL and its
``view_sqlmigration`` permission. There is no add, change or delete: those URLs answer 403, and
the two pages answer only GET.

Built for thousands of migrations: the list is paginated as a changelist is (the filter, the
search and the counts still cover every migration), its files come through the process's
:mod:`.cache` (only new or changed files are read), and the detail page reads its own file and
its one history row.

With a tenant set (``SQLMIGRATE_TENANT_DIR``) a third page, the fleet, says where each tenant of
a database stands, from :func:`~.tenants.tenant_statuses`: one read of every tenant's history
(a few queries per database, never one per tenant). A tenant's own migrations are the list and
detail pages with ``?tenant=NAME``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, re_path
from django.views.decorators.http import require_safe

from . import conf
from .cache import load_cached
from .directory import MigrationSet
from .errors import SqlMigrateError
from .models import SqlMigration
from .runner import MigrationRunner
from .state import State, StatusTable
from .tenants import STATE_ORDER, TargetStatus, tenant_statuses

STATES = tuple(State)
REPEATABLE_ONLY = (State.NEW, State.CHANGED)  # a repeatable migration's states, listed when some are in them
SHORT_CHECKSUM = 12
# A migration's id in its page's URL, as ``<path:object_id>`` but any text at all: a history row
# written by another tool may hold a newline, which ``path``'s ``.+`` stops at, or be empty (the
# list page answered 500: its link could not be made). Django quotes it in the URL (``%0A``).
OBJECT_ID = r"(?P<object_id>(?s:.*))"
# The fleet page's states, as its filter lists them: what is wrong first, worst first.
FLEET_STATES = (*STATE_ORDER, "up to date")
PENDING_SHOWN = 3  # pending ids named in a tenant's row of the fleet page


@dataclass(frozen=True)
class Choice:
    """One link of a filter on the list page."""

    label: str
    query: str
    selected: bool


@dataclass(frozen=True)
class FleetRow:
    """One tenant's line on the fleet page: where it stands, and the link to its migrations."""

    status: TargetStatus
    query: str

    @property
    def label(self) -> str:
        """Its state as the page shows it: ``out of order``, not ``out_of_order``."""
        return self.status.state.replace("_", " ")

    @property
    def pending_shown(self) -> tuple[str, ...]:
        """The first pending migrations, by which it is behind."""
        return self.status.pending[:PENDING_SHOWN]

    @property
    def pending_more(self) -> int:
        """How many more are pending than :attr:`pending_shown` names."""
        return max(0, len(self.status.pending) - PENDING_SHOWN)

    @property
    def problems(self) -> list[tuple[str, str]]:
        """What else is wrong with its history, migration by migration: ``("modified", id)``."""
        status = self.status
        found = [("modified", i) for i in status.modified] + [("missing", i) for i in status.missing]
        return found + [("out of order", i) for i in status.out_of_order]


@dataclass(frozen=True)
class PageLink:
    """One entry of the paginator: a page number (None for the "…" between), and its link."""

    number: int | None
    query: str
    current: bool
    last: bool


if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[SqlMigration]
else:  # ModelAdmin takes no type argument at run time
    ModelAdmin = admin.ModelAdmin


@admin.register(SqlMigration)
class SqlMigrationAdmin(ModelAdmin):
    """The read-only list and detail pages; every writing URL answers 403."""

    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Nobody adds a migration here: migrations are files."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody changes one here either."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nor deletes one."""
        return False

    def get_urls(self) -> list[URLPattern]:
        """The list and detail pages, and 403 for add, delete and history."""
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.status_list_view), name=f"{name}_changelist"),
            path("fleet/", wrap(self.fleet_view), name=f"{name}_fleet"),
            path("add/", wrap(self.refuse), name=f"{name}_add"),
            re_path(rf"^{OBJECT_ID}/change/\Z", wrap(self.status_detail_view), name=f"{name}_change"),
            re_path(rf"^{OBJECT_ID}/delete/\Z", wrap(self.refuse), name=f"{name}_delete"),
            re_path(rf"^{OBJECT_ID}/history/\Z", wrap(self.refuse), name=f"{name}_history"),
        ]

    def refuse(self, request: HttpRequest, object_id: str | None = None) -> HttpResponse:
        """The answer to every URL that would write."""
        raise PermissionDenied("SQL migrations are read-only here")

    # The two pages ---------------------------------------------------------------------------

    def status_list_view(self, request: HttpRequest) -> HttpResponse:
        """Every migration of the chosen database, filtered and searched (GET only)."""
        return require_safe(self._status_list)(request)

    def status_detail_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One migration's SQL and checksums (GET only)."""
        return require_safe(self._status_detail)(request, object_id)

    def fleet_view(self, request: HttpRequest) -> HttpResponse:
        """Where each tenant of the chosen database stands (GET only)."""
        return require_safe(self._fleet)(request)

    def _status_list(self, request: HttpRequest) -> HttpResponse:
        self._check_view_permission(request)
        alias = self._alias(request)
        if alias is None:
            return self._unknown_alias(request)
        state, query = request.GET.get("state", ""), request.GET.get("q", "").strip()
        tenant = request.GET.get("tenant", "")
        if state and state not in STATES:
            return self._bad_lookup(request, alias, f"unknown state {state!r} (one of: {', '.join(STATES)})")
        table, error, directory = self._status_table(alias, tenant)
        newest_first = table.ids[::-1]
        states = [table.state(migration_id) for migration_id in newest_first]
        counts = Counter(states)
        shown = [
            migration_id
            for migration_id, its_state in zip(newest_first, states, strict=True)
            if (not state or its_state == state) and (not query or _matches(table, migration_id, query.lower()))
        ]
        paginator = Paginator(shown, self.list_per_page)
        number = _page_number(request)
        if not 1 <= number <= paginator.num_pages:
            return self._bad_lookup(request, alias, f"no page {number} (pages 1 to {paginator.num_pages})")
        page = paginator.page(number)
        context = {
            **self._context(request, alias),
            "title": "SQL migrations",
            "rows": [table.row(migration_id) for migration_id in page.object_list],
            "result_count": len(shown),
            "page_links": _page_links(page, _list_query(alias, state, query, tenant)),
            "database_query": _database_query(alias, tenant),
            "total": len(newest_first),
            "error": error,
            "directory": directory,
            "query": query,
            "state": state,
            "state_choices": self._state_choices(alias, query, state, counts, len(newest_first), tenant),
            "alias_choices": self._alias_choices(alias),
            "tenant": tenant,
            "fleet_query": _fleet_query(alias),
        }
        return TemplateResponse(request, "sqlmigrate_app/admin/status_list.html", context)

    def _status_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self._check_view_permission(request)
        alias = self._alias(request)
        if alias is None:
            return self._unknown_alias(request)
        tenant = request.GET.get("tenant", "")
        try:
            runner = MigrationRunner(using=alias, schema=tenant or None)
            row = runner.status_of(object_id)
        except SqlMigrateError as exc:
            raise Http404(str(exc)) from exc
        if row is None:
            where = f"database {alias!r}" + (f", tenant {tenant!r}" if tenant else "")
            raise Http404(f"no migration {object_id!r} in {runner.directory} or in the history of {where}")
        context = {
            **self._context(request, alias),
            "title": row.id,
            "row": row,
            "current_checksum": row.migration.checksum if row.migration else None,
            "checksums_match": None if row.stored_checksum is None or not row.migration else row.state == State.APPLIED,
            "list_query": _database_query(alias, tenant),
            "tenant": tenant,
        }
        return TemplateResponse(request, "sqlmigrate_app/admin/status_detail.html", context)

    def _fleet(self, request: HttpRequest) -> HttpResponse:
        self._check_view_permission(request)
        alias = self._alias(request)
        if alias is None:
            return self._unknown_alias(request)
        state, query = request.GET.get("state", ""), request.GET.get("q", "").strip()
        if state and state not in FLEET_STATES:
            return self._bad_lookup(request, alias, f"unknown state {state!r} (one of: {', '.join(FLEET_STATES)})")
        statuses, error, directory = _fleet_statuses(alias)
        counts = Counter(status.state for status in statuses)
        needle = query.lower()
        shown = sorted(
            (s for s in statuses if (not state or s.state == state) and needle in str(s.target.schema).lower()),
            key=lambda status: (FLEET_STATES.index(status.state), status.target.schema),
        )
        paginator = Paginator(shown, self.list_per_page)
        number = _page_number(request)
        if not 1 <= number <= paginator.num_pages:
            return self._bad_lookup(request, alias, f"no page {number} (pages 1 to {paginator.num_pages})")
        page = paginator.page(number)
        context = {
            **self._context(request, alias),
            "title": "Tenants",
            "rows": [FleetRow(status, _database_query(alias, status.target.schema or "")) for status in page],
            "result_count": len(shown),
            "page_links": _page_links(page, _list_query(alias, state, query)),
            "total": len(statuses),
            "error": error,
            "directory": directory,
            "query": query,
            "state": state,
            "state_choices": _fleet_state_choices(alias, query, state, counts, len(statuses)),
            "alias_choices": [choice for choice in self._alias_choices(alias) if _has_tenants(choice.label)],
            "list_query": _database_query(alias),
        }
        return TemplateResponse(request, "sqlmigrate_app/admin/fleet.html", context)

    # Helpers ---------------------------------------------------------------------------------

    def _check_view_permission(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    @staticmethod
    def _alias(request: HttpRequest) -> str | None:
        """The ``?database=`` alias, if it is one of DATABASES; the default alias when absent."""
        alias = request.GET.get("database") or DEFAULT_DB_ALIAS
        return alias if alias in connections.settings else None

    @staticmethod
    def _unknown_alias(request: HttpRequest) -> HttpResponse:
        known = ", ".join(sorted(connections.settings))
        message = f"unknown database alias {request.GET.get('database')!r} (DATABASES has: {known})"
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")

    @staticmethod
    def _bad_lookup(request: HttpRequest, alias: str, message: str) -> HttpResponse:
        """What Django's changelist does with a filter it does not know or a page that is not
        there: back to the unfiltered list with ``?e=1`` (keeping the chosen database and tenant);
        a bad lookup with ``e`` already there is an error rather than a redirect loop."""
        if ERROR_FLAG in request.GET:
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        where = _database_query(alias, request.GET.get("tenant", ""))
        return HttpResponseRedirect(request.path + (where + "&" if where else "?") + urlencode({ERROR_FLAG: "1"}))

    @staticmethod
    def _status_table(alias: str, tenant: str = "") -> tuple[StatusTable, str | None, str]:
        """The runner's status table (a tenant's, given one), or an empty one and the one-line reason."""
        try:
            runner = MigrationRunner(using=alias, loader=load_cached, schema=tenant or None)
            return runner.status_table(), None, str(runner.directory)
        except SqlMigrateError as exc:
            return StatusTable(MigrationSet(Path()), {}), str(exc), ""

    def _context(self, request: HttpRequest, alias: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "alias": alias,
        }

    @staticmethod
    def _state_choices(
        alias: str, query: str, selected: str, counts: Counter[State], total: int, tenant: str = ""
    ) -> list[Choice]:
        choices = [Choice(f"All ({total})", _list_query(alias, "", query, tenant), not selected)]
        return choices + [
            Choice(
                f"{state.capitalize()} ({counts[state]})", _list_query(alias, state, query, tenant), selected == state
            )
            for state in STATES
            if counts[state] or selected == state or state not in REPEATABLE_ONLY  # no repeatables: as before
        ]

    @staticmethod
    def _alias_choices(selected: str) -> list[Choice]:
        return [
            Choice(alias, "?" + urlencode({"database": alias}), alias == selected)
            for alias in sorted(connections.settings)
        ]


def _database_query(alias: str, tenant: str = "") -> str:
    """``?database=alias&tenant=name`` to carry the chosen alias (and tenant) to another page;
    nothing for the default database's shared set."""
    params = {"database": alias if alias != DEFAULT_DB_ALIAS else "", "tenant": tenant}
    given = {key: value for key, value in params.items() if value}
    return "?" + urlencode(given) if given else ""


def _list_query(alias: str, state: str, query: str, tenant: str = "") -> str:
    """``?database=...&tenant=...&state=...&q=...``, leaving out what is the default; ``?``
    alone for the default list."""
    params = {"database": alias if alias != DEFAULT_DB_ALIAS else "", "tenant": tenant, "state": state, "q": query}
    return "?" + urlencode({key: value for key, value in params.items() if value})


def _has_tenants(alias: str) -> bool:
    """Whether ``alias`` has a tenant set; a setting ``manage.py check`` refuses reads as none."""
    try:
        return conf.tenant_dir(alias) is not None
    except SqlMigrateError:
        return False


def _fleet_query(alias: str) -> str | None:
    """The fleet page's query for ``alias``, when it has tenants (the list page links to it)."""
    return (_database_query(alias) or "?") if _has_tenants(alias) else None


def _fleet_statuses(alias: str) -> tuple[list[TargetStatus], str | None, str]:
    """Where each tenant of ``alias`` stands (one read of every history, never a query per
    tenant), or none and the one-line reason; and the tenant set's directory."""
    try:
        directory = conf.tenant_dir(alias)
        if directory is None:
            return [], f"database {alias!r} has no tenant set: set SQLMIGRATE_TENANT_DIR", ""
        found = load_cached(directory)
        found.raise_first_error()
        return tenant_statuses(alias, conf.tenants(alias), found), None, str(directory)
    except SqlMigrateError as exc:
        return [], str(exc), ""


def _fleet_state_choices(alias: str, query: str, selected: str, counts: Counter[str], total: int) -> list[Choice]:
    """The fleet page's filter by state: every tenant, then each state, what is wrong first."""
    choices = [Choice(f"All ({total})", _list_query(alias, "", query), not selected)]
    return choices + [
        Choice(
            f"{state.replace('_', ' ').capitalize()} ({counts[state]})",
            _list_query(alias, state, query),
            selected == state,
        )
        for state in FLEET_STATES
    ]


def _page_number(request: HttpRequest) -> int:
    """The ``?p=`` page, counted from 1; 1 when absent or not a number, as in a changelist."""
    try:
        return int(request.GET.get(PAGE_VAR, 1))
    except ValueError:
        return 1


def _page_links(page: Page[Any], list_query: str) -> list[PageLink]:
    """The paginator's links, elided as a changelist's are; none for a single page."""
    paginator = page.paginator
    if paginator.num_pages == 1:
        return []
    join = "&" if list_query != "?" else ""
    return [
        PageLink(number, f"{list_query}{join}{PAGE_VAR}={number}", number == page.number, number == paginator.num_pages)
        if isinstance(number, int)
        else PageLink(None, "", False, False)  # the ellipsis
        for number in paginator.get_elided_page_range(page.number)
    ]


def _matches(table: StatusTable, migration_id: str, needle: str) -> bool:
    """Whether the lower-case ``needle`` is in the migration's id or name, in any case."""
    return needle in migration_id.lower() or needle in table.name(migration_id).lower()
