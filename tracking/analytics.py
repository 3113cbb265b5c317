"""How interventions performed, for one store (docs/analytics.md).

Plain functions over the raw rows: SQL aggregates (one grouped query over the sends, one
over their orders), no per-row Python. Opens and clicks count once per intervention and
never when flagged duplicate; an order counts once, on the intervention it was
attributed to. Rollup tables are the later step when stores outgrow this.
"""

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Trunc

from interventions.models import Cart, Intervention, Status
from stores.models import Store
from tracking.models import Conversion, TrackingEvent

COUNTS = ("sent", "delivered", "opened", "clicked", "converted")
DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Filters:
    """Which interventions: sent (or, for the funnel, decided) in [since, until)."""

    since: datetime
    until: datetime
    campaign_id: int | None = None
    channel: str = ""


def filters_for(
    store: Store,
    since: date | None = None,
    until: date | None = None,
    campaign_id: int | None = None,
    channel: str = "",
    today: date | None = None,
) -> Filters:
    """Days are the store's days, both ends included; the default is the last 30 days."""
    zone = ZoneInfo(store.timezone)
    last = until or today or datetime.now(zone).date()
    first = since or last - timedelta(days=DEFAULT_DAYS - 1)
    return Filters(
        since=datetime.combine(first, time.min, zone),
        until=datetime.combine(last + timedelta(days=1), time.min, zone),
        campaign_id=campaign_id,
        channel=channel,
    )


def _interventions(store: Store, filters: Filters, by: str) -> QuerySet[Intervention]:
    rows = Intervention.objects.filter(
        store=store, **{f"{by}__gte": filters.since, f"{by}__lt": filters.until}
    )
    if filters.campaign_id is not None:
        rows = rows.filter(campaign_id=filters.campaign_id)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    return rows


def _reported(kind: str) -> Exists:
    # Served by the (intervention, kind) index.
    return Exists(
        TrackingEvent.objects.filter(
            intervention=OuterRef("pk"), kind=kind, duplicate=False, machine=False
        )
    )


def _counts(rows: QuerySet[Intervention], group: str | None) -> dict[Any, dict[str, Any]]:
    """sent / delivered / opened / clicked per group (None: one group for all)."""
    grouped = rows.alias(was_opened=_reported("opened"), was_clicked=_reported("clicked"))
    aggregates = {
        "sent": Count("pk", filter=Q(sent_at__isnull=False)),
        "delivered": Count("pk", filter=Q(delivered_at__isnull=False)),
        "opened": Count("pk", filter=Q(was_opened=True)),
        "clicked": Count("pk", filter=Q(was_clicked=True)),
    }
    if not group:
        return {None: grouped.aggregate(**aggregates)}
    return {
        row.pop(group): row for row in grouped.values(group).annotate(**aggregates).order_by(group)
    }


def _orders(rows: QuerySet[Intervention], group: str | None) -> dict[Any, dict[str, Any]]:
    """Attributed orders and recovered revenue per currency, per group."""
    orders = Conversion.objects.filter(intervention__in=rows.values("pk"))
    keys = [f"intervention__{group}", "currency"] if group else ["currency"]
    result: dict[Any, dict[str, Any]] = defaultdict(lambda: {"converted": 0, "revenue": {}})
    for row in orders.values(*keys).annotate(orders=Count("pk"), revenue=Sum("recovered_revenue")):
        bucket = result[row[keys[0]] if group else None]
        bucket["converted"] += row["orders"]
        if row["revenue"] is not None and row["currency"]:
            bucket["revenue"][row["currency"]] = row["revenue"]
    return result


def _with_rates(counts: dict[str, Any]) -> dict[str, Any]:
    """Every rate is over sends: delivery reports do not exist for every channel."""
    sent = counts["sent"]

    def rate(part: int) -> float | None:
        return round(part / sent, 4) if sent else None

    revenue = counts["revenue"]
    return {
        **counts,
        "revenue": {currency: str(amount) for currency, amount in sorted(revenue.items())},
        "delivery_rate": rate(counts["delivered"]),
        "open_rate": rate(counts["opened"]),
        "click_rate": rate(counts["clicked"]),
        "conversion_rate": rate(counts["converted"]),
        "revenue_per_send": {
            currency: str((amount / sent).quantize(Decimal("0.01")))
            for currency, amount in sorted(revenue.items())
        }
        if sent
        else {},
    }


def _merge(counts: dict[Any, dict[str, Any]], orders: dict[Any, dict[str, Any]]) -> dict[Any, Any]:
    merged = {}
    for key in sorted(set(counts) | set(orders), key=lambda k: (k is None, str(k))):
        row = dict.fromkeys(COUNTS, 0) | counts.get(key, {})
        row |= orders.get(key, {"converted": 0, "revenue": {}})
        merged[key] = row
    return merged


def _totals(groups: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {name: sum(group[name] for group in groups) for name in COUNTS}
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for group in groups:
        for currency, amount in group["revenue"].items():
            revenue[currency] += amount
    totals["revenue"] = dict(revenue)
    return totals


def _grouped(rows: QuerySet[Intervention], group: str) -> tuple[list[Any], dict[str, Any]]:
    merged = _merge(_counts(rows, group), _orders(rows, group))
    totals = _with_rates(_totals(list(merged.values())))
    return [(key, _with_rates(row)) for key, row in merged.items()], totals


def performance(store: Store, filters: Filters, interval: str = "day") -> dict[str, Any]:
    """Sends of the period by the day (or week, from Monday) they went out, in the
    store's time zone; an order counts in the period of the send that earned it."""
    zone = ZoneInfo(store.timezone)
    rows = _interventions(store, filters, "sent_at").annotate(
        period=Trunc("sent_at", interval, tzinfo=zone)
    )
    merged = _merge(_counts(rows, "period"), _orders_by_period(rows, interval, zone))
    series = [
        {"period": period.date().isoformat(), **_with_rates(row)} for period, row in merged.items()
    ]
    totals = _with_rates(_totals(list(merged.values())))
    return {"interval": interval, "series": series, "totals": totals}


def _orders_by_period(
    rows: QuerySet[Intervention], interval: str, zone: ZoneInfo
) -> dict[Any, dict[str, Any]]:
    orders = Conversion.objects.filter(intervention__in=rows.values("pk")).annotate(
        period=Trunc("intervention__sent_at", interval, tzinfo=zone)
    )
    result: dict[Any, dict[str, Any]] = defaultdict(lambda: {"converted": 0, "revenue": {}})
    for row in orders.values("period", "currency").annotate(
        orders=Count("pk"), revenue=Sum("recovered_revenue")
    ):
        bucket = result[row["period"]]
        bucket["converted"] += row["orders"]
        if row["revenue"] is not None and row["currency"]:
            bucket["revenue"][row["currency"]] = row["revenue"]
    return result


def channels(store: Store, filters: Filters) -> dict[str, Any]:
    """The same figures per channel, side by side."""
    groups, totals = _grouped(_interventions(store, filters, "sent_at"), "channel")
    return {
        "channels": [{"channel": channel, **row} for channel, row in groups],
        "totals": totals,
    }


# "suppressed: probability 0.12 below threshold 0.30" and "... 0.08 ..." are one reason.
NUMBER = re.compile(r"\d+(?:[.:]\d+)*")


def conversion_funnel(store: Store, filters: Filters) -> dict[str, Any]:
    """Carts abandoned in the period, then the interventions decided in it, step by step."""
    decided = _interventions(store, filters, "created_at")
    reasons: dict[str, int] = defaultdict(int)
    for row in (
        decided.filter(status=Status.SUPPRESSED)
        .values("status_reason")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        reasons[NUMBER.sub("N", row["status_reason"])] += row["n"]
    [counts] = _counts(decided, None).values()
    orders = _orders(decided, None).get(None, {"converted": 0, "revenue": {}})
    totals = _with_rates({**counts, **orders})
    carts = Cart.objects.filter(
        store=store, abandoned_at__gte=filters.since, abandoned_at__lt=filters.until
    )
    steps = [
        {"step": "carts_abandoned", "count": carts.count()},
        {"step": "decided", "count": decided.count()},
        {
            "step": "suppressed",
            "count": sum(reasons.values()),
            "reasons": [
                {"reason": reason, "count": n}
                for reason, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
            ],
        },
        *({"step": name, "count": totals[name]} for name in COUNTS),
    ]
    return {"funnel": steps, "totals": totals}


def campaigns(store: Store, filters: Filters) -> dict[str, Any]:
    """The same figures per campaign (``None``: sends no campaign chose), side by side."""
    groups, totals = _grouped(_interventions(store, filters, "sent_at"), "campaign")
    return {
        "campaigns": [{"campaign": campaign, **row} for campaign, row in groups],
        "totals": totals,
    }
