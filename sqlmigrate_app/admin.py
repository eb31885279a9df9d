"""A read-only admin page: every SQL migration of a database, with its state, and its SQL.

The data comes from :meth:`MigrationRunner.status` (which never writes; a missing history table
reads as "everything pending"), not from the ORM: :class:`SqlMigration` is an unmanaged model that
only gives the page a URL and its ``view_sqlmigration`` permission. There is no add, change or
delete: those URLs answer 403, and the two pages answer only GET.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.main import ERROR_FLAG
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.views.decorators.http import require_safe

from .errors import SqlMigrateError
from .models import SqlMigration
from .runner import MigrationRunner
from .state import MigrationStatus, State

STATES = tuple(State)
SHORT_CHECKSUM = 12


@dataclass(frozen=True)
class Choice:
    """One link of a filter on the list page."""

    label: str
    query: str
    selected: bool


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
            path("add/", wrap(self.refuse), name=f"{name}_add"),
            path("<path:object_id>/change/", wrap(self.status_detail_view), name=f"{name}_change"),
            path("<path:object_id>/delete/", wrap(self.refuse), name=f"{name}_delete"),
            path("<path:object_id>/history/", wrap(self.refuse), name=f"{name}_history"),
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

    def _status_list(self, request: HttpRequest) -> HttpResponse:
        self._check_view_permission(request)
        alias = self._alias(request)
        if alias is None:
            return self._unknown_alias(request)
        state, query = request.GET.get("state", ""), request.GET.get("q", "").strip()
        if state and state not in STATES:
            return self._unknown_state(request, alias, state)
        rows, error, directory = self._status_rows(alias)
        counts = {name: sum(1 for row in rows if row.state == name) for name in STATES}
        shown = [row for row in reversed(rows) if (not state or row.state == state) and _matches(row, query)]
        context = {
            **self._context(request, alias),
            "title": "SQL migrations",
            "rows": shown,
            "database_query": _database_query(alias),
            "total": len(rows),
            "error": error,
            "directory": directory,
            "query": query,
            "state": state,
            "state_choices": self._state_choices(alias, query, state, counts, len(rows)),
            "alias_choices": self._alias_choices(alias),
        }
        return TemplateResponse(request, "sqlmigrate_app/admin/status_list.html", context)

    def _status_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self._check_view_permission(request)
        alias = self._alias(request)
        if alias is None:
            return self._unknown_alias(request)
        rows, error, directory = self._status_rows(alias)
        if error:
            raise Http404(error)
        row = next((row for row in rows if row.id == object_id), None)
        if row is None:
            raise Http404(f"no migration {object_id!r} in {directory} or in the history of database {alias!r}")
        context = {
            **self._context(request, alias),
            "title": row.id,
            "row": row,
            "current_checksum": row.migration.checksum if row.migration else None,
            "checksums_match": None if row.stored_checksum is None or not row.migration else row.state == State.APPLIED,
            "list_query": _database_query(alias),
        }
        return TemplateResponse(request, "sqlmigrate_app/admin/status_detail.html", context)

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
    def _unknown_state(request: HttpRequest, alias: str, state: str) -> HttpResponse:
        """What Django's changelist does with a filter it does not know: back to the unfiltered
        list with ``?e=1`` (keeping the chosen database); a bad filter with ``e`` already there
        is an error rather than a redirect loop."""
        if ERROR_FLAG in request.GET:
            message = f"unknown state {state!r} (one of: {', '.join(STATES)})"
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        params = {"database": alias} if alias != DEFAULT_DB_ALIAS else {}
        return HttpResponseRedirect(request.path + "?" + urlencode({**params, ERROR_FLAG: "1"}))

    @staticmethod
    def _status_rows(alias: str) -> tuple[list[MigrationStatus], str | None, str]:
        """The runner's status rows, or the one-line reason they cannot be had."""
        try:
            runner = MigrationRunner(using=alias)
            return runner.status(), None, str(runner.directory)
        except SqlMigrateError as exc:
            return [], str(exc), ""

    def _context(self, request: HttpRequest, alias: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "alias": alias,
            "several_databases": len(connections.settings) > 1,
        }

    @staticmethod
    def _state_choices(alias: str, query: str, selected: str, counts: dict[State, int], total: int) -> list[Choice]:
        def link(state: str) -> str:
            params = {"database": alias if alias != DEFAULT_DB_ALIAS else "", "state": state, "q": query}
            return "?" + urlencode({key: value for key, value in params.items() if value})

        choices = [Choice(f"All ({total})", link(""), not selected)]
        return choices + [
            Choice(f"{state.capitalize()} ({counts[state]})", link(state), selected == state) for state in STATES
        ]

    @staticmethod
    def _alias_choices(selected: str) -> list[Choice]:
        return [
            Choice(alias, "?" + urlencode({"database": alias}), alias == selected)
            for alias in sorted(connections.settings)
        ]


def _database_query(alias: str) -> str:
    """``?database=alias`` to carry the chosen alias to another page; nothing for the default."""
    return "?" + urlencode({"database": alias}) if alias != DEFAULT_DB_ALIAS else ""


def _matches(row: MigrationStatus, query: str) -> bool:
    needle = query.lower()
    return not needle or needle in row.id.lower() or needle in row.name.lower()
