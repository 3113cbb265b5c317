"""The figures behind the admin dashboard, for one store and period (docs/analytics.md,
"Dashboard"): the analytics endpoints' numbers (``tracking.analytics``, whatever computes
them) shaped for charts, plus delivery health, which no endpoint serves yet.

Everything returned is plain JSON data: the page embeds it with ``json_script`` and the
charts read it from there, so no value is ever written into a script by a template.
"""

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Case, CharField, Count, F, Q, Value, When
from django.db.models.functions import Left, StrIndex

from campaigns.models import Campaign
from interventions.models import DeliveryAttempt
from notifications.models import Suppression
from stores.models import Store
from tracking import analytics
from tracking.models import TrackingEvent

TOP_CAMPAIGNS = 5
# Reported by a provider after the send: the failures a send-time error never shows.
PROVIDER_FAILURES = ("bounced", "complained", "failed")
FAILED_OUTCOMES: dict[str, str] = {
    DeliveryAttempt.Outcome.PERMANENT_ERROR: "permanent",
    DeliveryAttempt.Outcome.TRANSIENT_ERROR: "transient",
    DeliveryAttempt.Outcome.WORKER_LOST: "worker lost",
}


def store_figures(store: Store, filters: analytics.Filters) -> dict[str, Any]:
    """Every chart's data for the store's dashboard."""
    performance = analytics.performance(store, filters, "day")
    return {
        "store": {"id": str(store.pk), "name": store.name, "timezone": store.timezone},
        "period": {
            "since": filters.since.date().isoformat(),
            "until": (filters.until - timedelta(days=1)).date().isoformat(),
        },
        "totals": performance["totals"],
        "revenue": revenue_series(performance["series"]),
        "funnel": analytics.conversion_funnel(store, filters)["funnel"],
        "channels": analytics.channels(store, filters)["channels"],
        "campaigns": top_campaigns(store, filters),
        "health": delivery_health(store, filters),
    }


def revenue_series(series: list[dict[str, Any]]) -> dict[str, Any]:
    """Recovered revenue per day and currency (never summed across currencies), and the
    orders behind it."""
    currencies = sorted({currency for row in series for currency in row["revenue"]})
    return {
        "days": [row["period"] for row in series],
        "currencies": {
            currency: [row["revenue"].get(currency, "0") for row in series]
            for currency in currencies
        },
        "converted": [row["converted"] for row in series],
        "sent": [row["sent"] for row in series],
    }


def top_campaigns(store: Store, filters: analytics.Filters) -> list[dict[str, Any]]:
    """The campaigns with the most credit for orders (then sends) in the period: under a
    linear model, half an order ranks below a whole one."""
    rows = [row for row in analytics.campaigns(store, filters)["campaigns"] if row["campaign"]]
    rows.sort(key=lambda row: (-Decimal(row["credited"]), -row["sent"], row["campaign"]))
    top = rows[:TOP_CAMPAIGNS]
    names = dict(
        Campaign.objects.filter(store=store, pk__in=[row["campaign"] for row in top]).values_list(
            "pk", "name"
        )
    )
    return [{**row, "name": names.get(row["campaign"], f"#{row['campaign']}")} for row in top]


def delivery_health(store: Store, filters: analytics.Filters) -> dict[str, Any]:
    """What went wrong in the period: failed send attempts by the transport's reason code,
    provider reports of failure after the send, and addresses newly suppressed."""
    return {
        "failures": _attempt_failures(store, filters) + _provider_failures(store, filters),
        "suppressions": [
            {"channel": row["channel"], "reason": row["reason"], "count": row["count"]}
            for row in Suppression.objects.filter(
                store=store, created_at__gte=filters.since, created_at__lt=filters.until
            )
            .values("channel", "reason")
            .annotate(count=Count("pk"))
            .order_by("-count", "channel", "reason")
        ],
    }


def _attempt_failures(store: Store, filters: analytics.Filters) -> list[dict[str, Any]]:
    # Attempts record "<reason code>: <provider message>"; the code is what groups (the
    # message names addresses and ids). Cut in SQL so the grouping stays in the database.
    code = Case(
        When(error__contains=":", then=Left("error", StrIndex("error", Value(":")) - 1)),
        default=F("error"),
        output_field=CharField(),
    )
    rows = (
        DeliveryAttempt.objects.filter(
            intervention__store=store,
            started_at__gte=filters.since,
            started_at__lt=filters.until,
            outcome__in=list(FAILED_OUTCOMES),
        )
        .annotate(code=code)
        .values("code", "outcome")
        .annotate(count=Count("pk"))
        .order_by()
    )
    failures: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        kind = FAILED_OUTCOMES[row["outcome"]]
        reason = row["code"] or "unknown"
        failures[reason][kind] = failures[reason].get(kind, 0) + row["count"]
    return [
        {"reason": reason, "kinds": kinds}
        for reason, kinds in sorted(failures.items(), key=lambda item: -sum(item[1].values()))
    ]


def _provider_failures(store: Store, filters: analytics.Filters) -> list[dict[str, Any]]:
    rows = (
        TrackingEvent.objects.filter(
            store=store,
            kind__in=PROVIDER_FAILURES,
            occurred_at__gte=filters.since,
            occurred_at__lt=filters.until,
        )
        .values("kind")
        .annotate(count=Count("pk", filter=Q(duplicate=False)))
        .order_by("-count", "kind")
    )
    return [{"reason": row["kind"], "kinds": {"after send": row["count"]}} for row in rows]
