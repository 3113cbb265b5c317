"""The admin's index page is the marketer's dashboard (docs/analytics.md, "Dashboard").

``DashboardAdminSite`` is the project's admin site (``config.apps.EngineAdminConfig``):
Django's own, whose index shows, above the usual list of models, the charts of one store
the user may read (``stores.admin_scoping.readable_stores``: a superuser picks any store, a
member sees only their stores). ``admin/dashboard/live`` answers the live-connections
chart's refreshes. The figures come from ``tracking.dashboard``; the page embeds them with
``json_script`` and ``tracking/static/tracking/dashboard.js`` draws them with the vendored
Chart.js.
"""

import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import redis
import structlog
from django import forms
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone
from prometheus_client import Counter as MetricCounter
from prometheus_client import Histogram

from config.errors import error_body
from realtime import registry
from stores.admin_scoping import readable_stores
from stores.models import Store
from tracking import analytics
from tracking.dashboard import store_figures

logger = structlog.get_logger(__name__)

DASHBOARD_SECONDS = Histogram(
    "engine_admin_dashboard_seconds", "Time to compute the admin dashboard's figures."
)
DASHBOARD_ERRORS = MetricCounter(
    "engine_admin_dashboard_errors_total",
    "Parts of the admin dashboard that could not be shown.",
    ["part"],
)

PERIODS = [(7, "Last 7 days"), (14, "Last 14 days"), (30, "Last 30 days"), (90, "Last 90 days")]
DEFAULT_DAYS = 30
NONE = "n/a"


class DashboardQuery(forms.Form):
    store = forms.UUIDField(required=False)
    days = forms.TypedChoiceField(choices=PERIODS, coerce=int, required=False, empty_value=None)


class DashboardAdminSite(admin.AdminSite):
    """Django's admin site; its index page carries the dashboard."""

    index_template = "tracking/admin_dashboard.html"
    index_title = "Dashboard"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        live = path("dashboard/live", self.admin_view(self.live_connections), name="dashboard-live")
        return [live, *super().get_urls()]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        query = DashboardQuery(request.GET)
        if not query.is_valid():
            return bad_query(query)
        stores = list(readable_stores(request))
        store = chosen_store(stores, query.cleaned_data["store"])
        context: dict[str, Any] = {"dashboard_stores": stores, "periods": PERIODS}
        if store is not None:
            days = query.cleaned_data["days"] or DEFAULT_DAYS
            shown = figures(store, days)
            context |= {"store": store, "days": days, "figures": shown, "tiles": tiles(shown)}
        return super().index(request, {**context, **(extra_context or {})})

    def live_connections(self, request: HttpRequest) -> HttpResponse:
        query = DashboardQuery(request.GET)
        if not query.is_valid():
            return bad_query(query)
        store = chosen_store(list(readable_stores(request)), query.cleaned_data["store"])
        if store is None:
            raise Http404("No store to show.")
        return JsonResponse({"live": live_connections(store)})


def bad_query(query: DashboardQuery) -> JsonResponse:
    fields = {name: [str(message) for message in errors] for name, errors in query.errors.items()}
    first = next(iter(fields))
    return JsonResponse(error_body("invalid", f"{first}: {fields[first][0]}", fields), status=400)


def chosen_store(stores: list[Store], wanted: Any) -> Store | None:
    """The store asked for, which must be one the user may read (another store is a 404,
    like a missing one), else their first."""
    if wanted is None:
        return stores[0] if stores else None
    for store in stores:
        if store.pk == wanted:
            return store
    raise Http404("No store with this id.")


def figures(store: Store, days: int) -> dict[str, Any]:
    """The last ``days`` days of the store's own calendar, today included."""
    started = time.perf_counter()
    today = datetime.now(ZoneInfo(store.timezone)).date()
    filters = analytics.filters_for(store, since=today - timedelta(days=days - 1), today=today)
    result = store_figures(store, filters) | {"live": live_connections(store)}
    elapsed = time.perf_counter() - started
    DASHBOARD_SECONDS.observe(elapsed)
    logger.info("admin_dashboard_shown", store_id=str(store.pk), days=days, seconds=elapsed)
    return result


def tiles(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline numbers, written by the server so they read without JavaScript."""
    totals, live = shown["totals"], shown["live"]

    def percent(rate: float | None) -> str:
        return NONE if rate is None else f"{rate * 100:.1f}%"

    revenue = " · ".join(
        f"{currency} {Decimal(amount):,.2f}" for currency, amount in totals["revenue"].items()
    )
    return [
        {"key": "revenue", "label": "Recovered revenue", "value": revenue or NONE},
        {"key": "converted", "label": "Attributed orders", "value": totals["converted"]},
        {"key": "sent", "label": "Sends", "value": totals["sent"]},
        {
            "key": "conversion_rate",
            "label": "Orders per send",
            "value": percent(totals["conversion_rate"]),
        },
        {"key": "click_rate", "label": "Click rate", "value": percent(totals["click_rate"])},
        {
            "key": "live",
            "label": "Live connections",
            "value": NONE if live is None else live["total"],
        },
    ]


def live_connections(store: Store) -> dict[str, Any] | None:
    """The store's live WebSocket connections by scope and server instance, or None while
    the registry (Redis) cannot be read: the rest of the page still shows."""
    try:
        listing = registry.connections(str(store.pk))
    except redis.RedisError as exc:
        DASHBOARD_ERRORS.labels("live_connections").inc()
        logger.warning(
            "admin_dashboard_registry_unreachable", store_id=str(store.pk), error=str(exc)
        )
        return None
    scopes = Counter(str(entry.get("scope") or "unknown") for entry in listing)
    instances: dict[str, Counter[str]] = {}
    for entry in listing:
        instance = str(entry.get("instance") or "unknown")
        instances.setdefault(instance, Counter())[str(entry.get("scope") or "unknown")] += 1
    return {
        "at": timezone.now().isoformat(),
        "total": len(listing),
        "scopes": dict(sorted(scopes.items())),
        "instances": {name: dict(counts) for name, counts in sorted(instances.items())},
    }
