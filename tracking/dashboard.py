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

from django.db.models import Count

from campaigns.models import Campaign
from notifications.models import Suppression
from stores.models import Store
from tracking import analytics
from tracking.models import FailureOutcome

TOP_CAMPAIGNS = 5
FAILED_OUTCOMES: dict[str, str] = {
    FailureOutcome.PERMANENT: "permanent",
    FailureOutcome.TRANSIENT: "transient",
    FailureOutcome.WORKER_LOST: "worker lost",
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
    provider reports of failure after the send (both from the failure rollups, so they lag
    the events as the charts do), and addresses newly suppressed."""
    attempts: dict[str, dict[str, int]] = defaultdict(dict)
    reports: dict[str, int] = defaultdict(int)
    for row in analytics.failures(store, filters):
        if row["outcome"] == FailureOutcome.AFTER_SEND:
            reports[row["reason"]] += row["count"]
        else:
            kind = FAILED_OUTCOMES[row["outcome"]]
            attempts[row["reason"]][kind] = attempts[row["reason"]].get(kind, 0) + row["count"]
    return {
        "failures": [
            {"reason": reason, "kinds": kinds}
            for reason, kinds in sorted(attempts.items(), key=lambda item: -sum(item[1].values()))
        ]
        + [
            {"reason": reason, "kinds": {"after send": n}}
            for reason, n in sorted(reports.items(), key=lambda item: (-item[1], item[0]))
        ],
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
