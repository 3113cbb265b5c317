"""Daily rollups of what interventions did, recounted from the raw rows (docs/analytics.md,
"Rollups").

A recount of a store's days is idempotent: it deletes those days' rollup rows and inserts
the counts the raw rows give now, in one transaction under the store's row lock, so a
reader sees the old or the new figures, never half, and two recounts of one store (beat
and a backfill) take turns. Beat recounts the recent days every minute, which also picks
up late and repeated reports (an open a day later, an order within the attribution
window); ``backfill_rollups`` rebuilds any range, a few days per transaction.

Days are the store's days (its time zone), like the analytics filters: a store that
changes its time zone needs a backfill for the days before the change.
"""

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Left, StrIndex, TruncDate
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

from interventions.models import Cart, DeliveryAttempt, Intervention, Status
from stores.models import Store
from tracking.models import (
    CartRollup,
    Cohort,
    Conversion,
    DailyRollup,
    FailureOutcome,
    FailureRollup,
    RevenueRollup,
    SuppressionRollup,
    TrackingEvent,
)

logger = structlog.get_logger(__name__)

RECOUNT_SECONDS = Histogram(
    "engine_rollup_recount_seconds",
    "Time to recount one time zone's stores over a day range",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECOUNT_FAILURES = Counter("engine_rollup_recount_failures_total", "Rollup recounts that failed")
LAST_REFRESH = Gauge(
    "engine_rollup_last_refresh_timestamp_seconds",
    "When the recent days' rollups were last recounted (this process)",
    # Under gunicorn's metrics files (config/gunicorn.py): the latest of the workers'.
    multiprocess_mode="max",
)

# "suppressed: probability 0.12 below threshold 0.30" and "... 0.08 ..." are one reason.
NUMBER = re.compile(r"\d+(?:[.:]\d+)*")

BATCH = 1000


def fold_reason(reason: str) -> str:
    return NUMBER.sub("N", reason)


@dataclass(frozen=True)
class Span:
    """Store-local days [first, last], both included, and the instants they cover."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, clock.min, self.zone)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), clock.min, self.zone)


KEY = ("store_id", "day", "campaign_id", "variant", "channel")


def _reported(kind: str) -> Exists:
    """Whether the intervention has a counted ``kind``: one probe of the (intervention,
    kind) index per recounted intervention.

    The always-true ``store = outer store OR pk < 0`` is there for PostgreSQL's planner: an
    EXISTS correlated by equalities only may run as a hashed subplan, and for a rare kind
    (clicks) it chose one, a scan of the whole tracking table per recount (0.4 s at 5 M
    rows, growing with the table; docs/benchmarks.md). A correlated condition that is not
    a plain equality rules that plan out, so the cost follows the recounted days' sends.
    """
    return Exists(
        TrackingEvent.objects.filter(
            Q(store_id=OuterRef("store_id")) | Q(pk__lt=0),
            intervention=OuterRef("pk"),
            kind=kind,
            duplicate=False,
            machine=False,  # a privacy proxy's open is not the shopper's
        )
    )


def _cohort(store_ids: list[UUID], span: Span, by: str) -> QuerySet[Intervention]:
    return Intervention.objects.filter(
        store_id__in=store_ids, **{f"{by}__gte": span.since, f"{by}__lt": span.until}
    ).annotate(day=TruncDate(by, tzinfo=span.zone))


def _counts(rows: QuerySet[Intervention], cohort: str, now: datetime) -> Iterator[DailyRollup]:
    grouped = (
        rows.alias(was_opened=_reported("opened"), was_clicked=_reported("clicked"))
        .values(*KEY)
        .annotate(
            interventions=Count("pk"),
            suppressed=Count("pk", filter=Q(status=Status.SUPPRESSED)),
            sent=Count("pk", filter=Q(sent_at__isnull=False)),
            delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
            opened=Count("pk", filter=Q(was_opened=True)),
            clicked=Count("pk", filter=Q(was_clicked=True)),
        )
        .order_by()
    )
    for row in grouped:
        yield DailyRollup(cohort=cohort, refreshed_at=now, **row)


def _orders(
    rows: QuerySet[Intervention], store_ids: list[UUID], cohort: str, span: Span, now: datetime
) -> Iterator[RevenueRollup]:
    """Per key and currency: the orders counted once (on their primary intervention) and
    the same orders as the attribution model shares them (``_shares``)."""
    by = "sent_at" if cohort == Cohort.SENT else "created_at"
    orders = Conversion.objects.filter(intervention__in=rows.values("pk")).annotate(
        day=TruncDate(f"intervention__{by}", tzinfo=span.zone)
    )
    grouped = (
        orders.values(
            "day",
            "currency",
            "intervention__store_id",
            "intervention__campaign_id",
            "intervention__variant",
            "intervention__channel",
        )
        .annotate(converted=Count("pk"), revenue=Sum("recovered_revenue"), discount=Sum("discount"))
        .order_by()
    )
    figures: dict[tuple[Any, ...], RevenueRollup] = {}

    def figure(key: tuple[Any, ...]) -> RevenueRollup:
        if key not in figures:
            figures[key] = RevenueRollup(
                cohort=cohort,
                refreshed_at=now,
                **dict(zip(("day", "currency", *KEY[:1], *KEY[2:]), key, strict=True)),
            )
        return figures[key]

    for row in grouped:
        target = figure(
            (
                row["day"],
                row["currency"],
                row["intervention__store_id"],
                row["intervention__campaign_id"],
                row["intervention__variant"],
                row["intervention__channel"],
            )
        )
        target.converted = row["converted"]
        target.revenue = row["revenue"]
        target.discount = row["discount"] or 0
    for key, weight, revenue in _shares(rows, store_ids, span):
        target = figure(key)
        target.credited_orders += 1
        target.credited += weight
        if revenue is not None:
            target.credited_revenue = (target.credited_revenue or Decimal(0)) + revenue
    yield from figures.values()


def _shares(
    rows: QuerySet[Intervention], store_ids: list[UUID], span: Span
) -> Iterator[tuple[tuple[Any, ...], Decimal, Any]]:
    """Each credit an order gave one of ``rows``: ((day, currency, store, campaign, variant,
    channel), weight, revenue share or None).

    The order's ``credits`` are the record; its ``converted`` tracking rows (one per
    credited intervention, indexed by intervention) only find the orders that credited
    these interventions, and a ``converted`` reported through /track, which credits
    nothing, finds no credit there. An order recorded before credits existed counts whole
    on its primary intervention. Plain ORM and Python, so embedded mode's SQLite can run
    it; the work follows the orders of the days recounted, not the sends.
    """
    cohort = rows.values("pk")
    found = TrackingEvent.objects.filter(
        # An order credits only sends before it, and a send is decided before it is sent:
        # the (store, kind, occurred_at) index bounds the search to orders since the span.
        store_id__in=store_ids,
        kind="converted",
        occurred_at__gte=span.since,
        intervention__in=cohort,
    ).values_list("store_id", "metadata__order_id")
    wanted = {(store_id, order_id) for store_id, order_id in found if isinstance(order_id, str)}
    # Two queries, not one with OR: under an OR PostgreSQL can only test the cohort
    # subquery row by row, and once the cohort outgrows work_mem it scans the whole
    # cohort for every order (a 7-day backfill chunk at 10 M interventions did not finish
    # in minutes; docs/benchmarks.md). Apart, each is a semi-join or a unique-index probe.
    primary = Conversion.objects.filter(intervention__in=cohort)
    credited = Conversion.objects.filter(
        store_id__in={store_id for store_id, _ in wanted},
        order_id__in={order_id for _, order_id in wanted},
    )
    orders = sorted({order.pk: order for order in (*primary, *credited)}.values(), key=pk_of)
    credits: list[tuple[str, Decimal, Any, str]] = []
    for order in orders:
        given = order.credits or (
            [
                {
                    "intervention_id": str(order.intervention_id),
                    "weight": "1",
                    "recovered_revenue": order.recovered_revenue,
                }
            ]
            if order.intervention_id
            else []
        )
        for credit in given:
            share = credit.get("recovered_revenue")
            credits.append(
                (
                    str(credit["intervention_id"]),
                    Decimal(str(credit["weight"])),
                    Decimal(str(share)) if share is not None else None,
                    order.currency,
                )
            )
    keys = {
        str(row["pk"]): row
        for row in rows.filter(pk__in={pk for pk, *_ in credits}).values("pk", *KEY)
    }
    for pk, weight, revenue, currency in credits:
        row = keys.get(pk)
        if row is None:
            continue  # credited a send of another day or another cohort
        yield (
            (
                row["day"],
                currency,
                row["store_id"],
                row["campaign_id"],
                row["variant"],
                row["channel"],
            ),
            weight,
            revenue,
        )


def pk_of(order: Conversion) -> int:
    return order.pk


def _suppressions(rows: QuerySet[Intervention], now: datetime) -> list[SuppressionRollup]:
    folded: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in (
        rows.filter(status=Status.SUPPRESSED)
        .values(*KEY, "status_reason")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        folded[(*(row[name] for name in KEY), fold_reason(row["status_reason"])[:500])] += row["n"]
    return [
        SuppressionRollup(
            refreshed_at=now, count=n, reason=key[-1], **dict(zip(KEY, key[:-1], strict=True))
        )
        for key, n in folded.items()
    ]


def _carts(store_ids: list[UUID], span: Span, now: datetime) -> list[CartRollup]:
    # The (store, abandoned_at) index: the cost follows the span's carts.
    return [
        CartRollup(refreshed_at=now, **row)
        for row in Cart.objects.filter(
            store_id__in=store_ids, abandoned_at__gte=span.since, abandoned_at__lt=span.until
        )
        .annotate(day=TruncDate("abandoned_at", tzinfo=span.zone))
        .values("store_id", "day")
        .annotate(abandoned=Count("pk"))
        .order_by()
    ]


# Reported by a provider after the send: the failures a send-time error never shows.
PROVIDER_FAILURES = ("bounced", "complained", "failed")


def _failures(store_ids: list[UUID], span: Span, now: datetime) -> list[FailureRollup]:
    """Failed attempts by the transport's reason code, and provider failure reports."""
    # Attempts record "<reason code>: <provider message>"; the code is what groups (the
    # message names addresses and ids). Cut in SQL so the grouping stays in the database.
    code = Case(
        When(error__contains=":", then=Left("error", StrIndex("error", Value(":")) - 1)),
        default=F("error"),
        output_field=CharField(),
    )
    attempts = (
        # The partial index on failed attempts' start finds the span's few failures; each
        # then probes its intervention for the store (attempts have no store column).
        DeliveryAttempt.objects.filter(
            started_at__gte=span.since,
            started_at__lt=span.until,
            outcome__in=DeliveryAttempt.FAILED,
            intervention__store_id__in=store_ids,
        )
        .annotate(
            store_id=F("intervention__store_id"),
            day=TruncDate("started_at", tzinfo=span.zone),
            reason=code,
        )
        .values("store_id", "day", "channel", "outcome", "reason")
        .annotate(count=Count("pk"))
        .order_by()
    )
    reports = (
        TrackingEvent.objects.filter(
            store_id__in=store_ids,
            kind__in=PROVIDER_FAILURES,
            occurred_at__gte=span.since,
            occurred_at__lt=span.until,
            duplicate=False,
        )
        .annotate(
            day=TruncDate("occurred_at", tzinfo=span.zone),
            channel=F("intervention__channel"),
            reason=F("kind"),
            outcome=Value(FailureOutcome.AFTER_SEND.value, output_field=CharField()),
        )
        .values("store_id", "day", "channel", "outcome", "reason")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return [
        FailureRollup(refreshed_at=now, **(row | {"reason": (row["reason"] or "unknown")[:500]}))
        for row in (*attempts, *reports)
    ]


def recount(store_ids: Iterable[UUID], span: Span) -> int:
    """Recount the rollups of these stores (all in ``span.zone``) over ``span``'s days;
    the number of rollup rows written."""
    store_ids = sorted(store_ids)
    if not store_ids:
        return 0
    started = time.monotonic()
    now = timezone.now()
    try:
        with transaction.atomic():
            # Serialises recounts of one store (beat and a backfill); pk order so two
            # recounts of overlapping store sets cannot deadlock. NO KEY: a plain FOR
            # UPDATE would conflict with the FOR KEY SHARE that every insert of a row
            # pointing at the store takes, stalling the store's intake during a recount.
            list(
                Store.objects.select_for_update(no_key=True)
                .filter(pk__in=store_ids)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            days = {"store_id__in": store_ids, "day__gte": span.first, "day__lte": span.last}
            for model in (DailyRollup, RevenueRollup, SuppressionRollup, CartRollup, FailureRollup):
                model.objects.filter(**days).delete()
            carts = _carts(store_ids, span, now)
            failures = _failures(store_ids, span, now)
            CartRollup.objects.bulk_create(carts, batch_size=BATCH)
            FailureRollup.objects.bulk_create(failures, batch_size=BATCH)
            written = len(carts) + len(failures)
            for cohort, by in ((Cohort.SENT, "sent_at"), (Cohort.DECIDED, "created_at")):
                rows = _cohort(store_ids, span, by)
                daily = list(_counts(rows, cohort, now))
                revenue = list(_orders(rows, store_ids, cohort, span, now))
                DailyRollup.objects.bulk_create(daily, batch_size=BATCH)
                RevenueRollup.objects.bulk_create(revenue, batch_size=BATCH)
                written += len(daily) + len(revenue)
                if cohort == Cohort.DECIDED:
                    suppressions = _suppressions(rows, now)
                    SuppressionRollup.objects.bulk_create(suppressions, batch_size=BATCH)
                    written += len(suppressions)
    except Exception:
        RECOUNT_FAILURES.inc()
        logger.exception(
            "rollup_recount_failed",
            stores=len(store_ids),
            first=str(span.first),
            last=str(span.last),
        )
        raise
    elapsed = time.monotonic() - started
    RECOUNT_SECONDS.observe(elapsed)
    logger.info(
        "rollups_recounted",
        stores=len(store_ids),
        zone=str(span.zone),
        first=str(span.first),
        last=str(span.last),
        rows=written,
        seconds=round(elapsed, 3),
    )
    return written


def stores_by_zone(store_ids: Iterable[UUID] | None = None) -> dict[str, list[UUID]]:
    stores = Store.objects.all() if store_ids is None else Store.objects.filter(pk__in=store_ids)
    zones: dict[str, list[UUID]] = defaultdict(list)
    for pk, zone in stores.order_by("pk").values_list("pk", "timezone"):
        zones[zone].append(pk)
    return zones


# The raw rows a recount reads that retention prunes by age (RETENTION_DAYS keys).
RECOUNTED_ROWS = ("tracking_events", "finished_interventions")


def retention_horizon(now: datetime | None = None) -> date | None:
    """The first day a recount may rebuild: from it on, every store's day still has all
    its raw rows. Before it retention has pruned some, the rollups are the only record
    left, and a recount would empty them. None when retention keeps those rows forever."""
    kept = [int(settings.RETENTION_DAYS.get(kind) or 0) for kind in RECOUNTED_ROWS]
    if not any(days > 0 for days in kept):
        return None
    cutoff = (now or timezone.now()) - timedelta(days=min(days for days in kept if days > 0))
    # A store's day starts up to 14 h before the UTC day of the same date (UTC+14), so the
    # day after the cutoff's may already have lost its first hours: skip it too.
    return cutoff.date() + timedelta(days=2)


def do_refresh_recent_rollups(days: int | None = None) -> dict[str, int]:
    """What beat runs: recount every store's last ``days`` days (today included, in each
    store's time zone), which covers late reports within ``ROLLUP_RECENT_DAYS``; never a
    day past the retention horizon (a short retention and a long daily pass would empty
    the rollups of days it pruned)."""
    days = days or settings.ROLLUP_RECENT_DAYS
    horizon = retention_horizon()
    written: dict[str, int] = defaultdict(int)
    for zone_name, store_ids in stores_by_zone().items():
        zone = ZoneInfo(zone_name)
        today = timezone.now().astimezone(zone).date()
        first = today - timedelta(days=days - 1)
        if horizon is not None:
            first = max(first, horizon)
        # The daily pass covers weeks: a transaction per week keeps each one short.
        for chunk in _chunks(first, today, CHUNK_DAYS):
            written[zone_name] += recount(store_ids, Span(*chunk, zone))
    LAST_REFRESH.set_to_current_time()
    return dict(written)


CHUNK_DAYS = 7


def _chunks(first: date, last: date, size: int) -> Iterator[tuple[date, date]]:
    start = first
    while start <= last:
        end = min(start + timedelta(days=size - 1), last)
        yield start, end
        start = end + timedelta(days=1)


def do_backfill_rollups(
    first: date, last: date, store_ids: list[UUID] | None = None, chunk_days: int = 7
) -> Iterator[tuple[str, date, date, int]]:
    """Rebuild the rollups of ``first``..``last`` (store-local days) from the raw rows,
    ``chunk_days`` per transaction, so memory and lock time stay bounded; yields each
    chunk done: (zone, first, last, rows written)."""
    for zone_name, ids in stores_by_zone(store_ids).items():
        zone = ZoneInfo(zone_name)
        for start, end in _chunks(first, last, chunk_days):
            yield zone_name, start, end, recount(ids, Span(start, end, zone))
