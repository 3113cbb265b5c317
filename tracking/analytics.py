"""How interventions performed, for one store (docs/analytics.md).

The figures are sums over the daily rollups (``tracking.rollups``: per store-local day,
campaign, variant and channel, recounted from the raw rows by beat), so a dashboard over
months reads a few hundred rows whatever the volume. Abandoned carts, which have no
campaign or channel, and delivery failures have rollups of their own. Opens and clicks
count once per intervention and never when flagged duplicate. An order counts in the period of the send
that earned it: in ``totals`` once, on its primary intervention; in a breakdown (series,
channels, campaigns) as the attribution model shares it (docs/analytics.md, "Shares").
"""

from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import QuerySet, Sum

from stores.models import Store
from tracking.models import (
    CartRollup,
    Cohort,
    DailyRollup,
    FailureRollup,
    RevenueRollup,
    SuppressionRollup,
)
from tracking.rollups import NUMBER, Span, recount

__all__ = [
    "COUNTS",
    "NUMBER",
    "Filters",
    "channels",
    "conversion_funnel",
    "failures",
    "filters_for",
    "performance",
]

COUNTS = ("sent", "delivered", "opened", "clicked", "converted")
DEFAULT_DAYS = 30
# Linear shares are rounded to 4 places (tracking.attribution).
SHARE = Decimal("0.0001")


@dataclass(frozen=True)
class Filters:
    """Which interventions: sent (or, for the funnel, decided) in [since, until), whole
    store days (the rollups' grain)."""

    since: datetime
    until: datetime
    campaign_id: int | None = None
    channel: str = ""
    variant: str = ""

    def span(self, zone: ZoneInfo) -> Span:
        return Span(
            self.since.astimezone(zone).date(),
            (self.until.astimezone(zone) - timedelta(microseconds=1)).date(),
            zone,
        )


def filters_for(
    store: Store,
    since: date | None = None,
    until: date | None = None,
    campaign_id: int | None = None,
    channel: str = "",
    today: date | None = None,
    variant: str = "",
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
        variant=variant,
    )


RollupModel = type[DailyRollup] | type[RevenueRollup] | type[SuppressionRollup]


def _rollups(model: RollupModel, store: Store, filters: Filters, cohort: str) -> QuerySet[Any]:
    span = filters.span(ZoneInfo(store.timezone))
    rows = model.objects.filter(store=store, day__gte=span.first, day__lte=span.last)
    if model is not SuppressionRollup:
        # Suppressions only exist on the decided day: they have no cohort.
        rows = rows.filter(cohort=cohort)  # type: ignore[misc]
    if filters.campaign_id is not None:
        rows = rows.filter(campaign_id=filters.campaign_id)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    if filters.variant:
        rows = rows.filter(variant=filters.variant)
    return rows.order_by()


def _refresh_on_read(store: Store, filters: Filters) -> None:
    if settings.ROLLUP_REFRESH_ON_READ:
        # Embedded mode has no beat; its volumes make a recount per read cheap.
        recount([store.pk], filters.span(ZoneInfo(store.timezone)))


COUNTED = ("sent", "delivered", "opened", "clicked", "converted")


def _empty() -> dict[str, Any]:
    return dict.fromkeys(COUNTED, 0) | {"credited": Decimal(0), "revenue": {}}


def _figures(
    store: Store,
    filters: Filters,
    cohort: str,
    group: str | None,
    key: Callable[[Any], Hashable],
    shared: bool = True,
) -> dict[Any, dict[str, Any]]:
    """Counts and revenue per currency from the rollups, grouped by ``group`` (a rollup
    field) and mapped through ``key`` (e.g. day → week); None: one group for all.

    ``shared``: orders as the attribution model shares them (a breakdown's rows); else
    each order once, on its primary intervention (the totals)."""
    fields = [group] if group else []
    result: dict[Any, dict[str, Any]] = {}

    def bucket(row: dict[str, Any]) -> dict[str, Any]:
        name = key(row[group]) if group else None
        if name not in result:
            result[name] = _empty()
        return result[name]

    daily = _rollups(DailyRollup, store, filters, cohort).values(*fields)
    for row in daily.annotate(**{name: Sum(name) for name in COUNTED if name != "converted"}):
        target = bucket(row)
        for name in COUNTED[:-1]:
            target[name] += row[name]
    orders = _rollups(RevenueRollup, store, filters, cohort).values(*fields, "currency")
    for row in orders.annotate(
        orders=Sum("credited_orders" if shared else "converted"),
        shares=Sum("credited" if shared else "converted"),
        amount=Sum("credited_revenue" if shared else "revenue"),
    ):
        target = bucket(row)
        target["converted"] += row["orders"]
        target["credited"] += row["shares"]
        if row["amount"] is not None and row["currency"]:
            revenue = target["revenue"]
            revenue[row["currency"]] = revenue.get(row["currency"], Decimal(0)) + row["amount"]
    return result


def _with_rates(counts: dict[str, Any]) -> dict[str, Any]:
    """Every rate is over sends: delivery reports do not exist for every channel."""
    sent = counts["sent"]

    def rate(part: float) -> float | None:
        return round(part / sent, 4) if sent else None

    revenue = counts["revenue"]
    return {
        **counts,
        "credited": str(Decimal(counts["credited"]).quantize(SHARE)),
        "revenue": {currency: str(amount) for currency, amount in sorted(revenue.items())},
        "delivery_rate": rate(counts["delivered"]),
        "open_rate": rate(counts["opened"]),
        "click_rate": rate(counts["clicked"]),
        # Over the shares: under linear, two touches that split an order convert half each.
        "conversion_rate": rate(float(counts["credited"])),
        "revenue_per_send": {
            currency: str((amount / sent).quantize(Decimal("0.01")))
            for currency, amount in sorted(revenue.items())
        }
        if sent
        else {},
    }


def _ordered(groups: dict[Any, dict[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    return sorted(groups.items(), key=lambda item: (item[0] is None, str(item[0])))


def _totals(store: Store, filters: Filters, cohort: str) -> dict[str, Any]:
    """The headline figures: each order once, on its primary intervention, and its
    revenue once, whatever the model (the breakdown rows may add up to more)."""
    figures = _figures(store, filters, cohort, None, lambda _: None, shared=False)
    return _with_rates(figures.get(None) or _empty())


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def performance(store: Store, filters: Filters, interval: str = "day") -> dict[str, Any]:
    """Sends of the period by the day (or week, from Monday) they went out, in the
    store's time zone; an order counts in the period of the send that earned it (its
    primary send; with a campaign, channel or variant filter, each credited send's share)."""
    _refresh_on_read(store, filters)
    key: Callable[[date], date] = _week if interval == "week" else (lambda day: day)
    # Unsliced, the periods add up to the totals (each order once: the revenue-over-time
    # chart must not show an any-exposure order twice); a slice (campaign, channel,
    # variant: an experiment's arm) shows its shares, like a breakdown row.
    sliced = filters.campaign_id is not None or bool(filters.channel or filters.variant)
    groups = _ordered(_figures(store, filters, Cohort.SENT, "day", key, shared=sliced))
    series = [{"period": period.isoformat(), **_with_rates(row)} for period, row in groups]
    totals = _totals(store, filters, Cohort.SENT)
    return {"interval": interval, "series": series, "totals": totals}


def channel_cost(channel: str, sent: int) -> Decimal:
    """What ``sent`` messages on ``channel`` cost, from the CHANNEL_COST_* settings."""
    return Decimal(str(settings.CHANNEL_COSTS.get(channel) or 0)) * sent


def _with_cost(cost: Decimal, row: dict[str, Any]) -> dict[str, Any]:
    currency = settings.CHANNEL_COST_CURRENCY
    if not cost:
        return {**row, "cost": {}, "cost_per_conversion": {}}
    # Over the shares, so an order linear splits between two channels is not paid for twice.
    credited = Decimal(row["credited"])
    per_conversion = (cost / credited).quantize(Decimal("0.0001")) if credited else None
    return {
        **row,
        "cost": {currency: str(cost.quantize(Decimal("0.0001")))},
        "cost_per_conversion": {currency: str(per_conversion)}
        if per_conversion is not None
        else {},
    }


def channels(store: Store, filters: Filters) -> dict[str, Any]:
    """The same figures per channel, side by side, with what each channel cost
    (CHANNEL_COST_*) and its cost per attributed order."""
    _refresh_on_read(store, filters)
    groups = _ordered(_figures(store, filters, Cohort.SENT, "channel", lambda name: name))
    costs = {channel: channel_cost(channel, row["sent"]) for channel, row in groups}
    # The total is what every send cost, the rows' costs added up, over the orders
    # counted once each (the totals' credited).
    totals = _with_cost(sum(costs.values(), Decimal(0)), _totals(store, filters, Cohort.SENT))
    return {
        "channels": [
            {"channel": channel, **_with_cost(costs[channel], _with_rates(row))}
            for channel, row in groups
        ],
        "totals": totals,
    }


def campaigns(store: Store, filters: Filters) -> dict[str, Any]:
    """The same figures per campaign (``None``: sends no campaign chose), side by side."""
    _refresh_on_read(store, filters)
    groups = _ordered(_figures(store, filters, Cohort.SENT, "campaign_id", lambda pk: pk))
    totals = _totals(store, filters, Cohort.SENT)
    return {
        "campaigns": [{"campaign": campaign, **_with_rates(row)} for campaign, row in groups],
        "totals": totals,
    }


def conversion_funnel(store: Store, filters: Filters) -> dict[str, Any]:
    """Carts abandoned in the period, then the interventions decided in it, step by step."""
    _refresh_on_read(store, filters)
    totals = _totals(store, filters, Cohort.DECIDED)
    decided = (
        _rollups(DailyRollup, store, filters, Cohort.DECIDED).aggregate(n=Sum("interventions"))["n"]
        or 0
    )
    reasons: dict[str, int] = defaultdict(int)
    for row in (
        _rollups(SuppressionRollup, store, filters, Cohort.DECIDED)
        .values("reason")
        .annotate(n=Sum("count"))
    ):
        reasons[row["reason"]] += row["n"]
    # Carts have no campaign or channel: every filter leaves their count as it is.
    span = filters.span(ZoneInfo(store.timezone))
    carts = CartRollup.objects.filter(
        store=store, day__gte=span.first, day__lte=span.last
    ).aggregate(n=Sum("abandoned"))["n"]
    steps = [
        {"step": "carts_abandoned", "count": carts or 0},
        {"step": "decided", "count": decided},
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


def failures(store: Store, filters: Filters) -> list[dict[str, Any]]:
    """Delivery failures in the period per outcome and reason (the admin dashboard's
    delivery health), summed over the failure rollups; a channel filter applies, a
    campaign or variant one does not (failures are not kept per campaign)."""
    _refresh_on_read(store, filters)
    span = filters.span(ZoneInfo(store.timezone))
    rows = FailureRollup.objects.filter(store=store, day__gte=span.first, day__lte=span.last)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    return [
        dict(row)
        for row in rows.values("outcome", "reason").annotate(count=Sum("count")).order_by()
    ]
