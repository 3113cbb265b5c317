"""Recording what shoppers and providers report about an intervention, and the orders
it earned (docs/analytics.md: what counts as a touch, how an order is attributed)."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from campaigns.models import Campaign
from config.api import reported_time_problem
from interventions.models import Cart, Intervention, Status
from outbound import outbox
from outbound.models import OutboxEvent
from stores.models import Shopper, Store
from tracking.attribution import Attribution, Touch, attribute
from tracking.models import Conversion, TrackingEvent

logger = structlog.get_logger(__name__)

# Scanners prefetch pixels and links, people double-tap: a repeat of these within
# TRACKING_DEDUPE_SECONDS is kept but flagged, so it is never counted.
DEDUPLICATED_KINDS = frozenset({"opened", "clicked"})

# An intervention that reached the shopper, or may have (unconfirmed: the provider may
# hold it). Only these can earn an order.
TOUCH_STATUSES = (Status.SENT, Status.UNCONFIRMED, Status.DELIVERED)
# A shopper's sends in one window are few (frequency caps); this bounds a pathological one.
MAX_TOUCHES = 100

CENT = Decimal("0.01")


def is_repeat(intervention: Intervention, kind: str, at: datetime) -> bool:
    """Whether a counted ``kind`` of this intervention lies within the dedupe window of
    ``at``, on either side: client timestamps do not arrive in order."""
    if kind not in DEDUPLICATED_KINDS:
        return False
    window = timedelta(seconds=settings.TRACKING_DEDUPE_SECONDS)
    return TrackingEvent.objects.filter(
        intervention=intervention,
        kind=kind,
        duplicate=False,
        # A proxy's prefetch is no human open: the person's own open, seconds later,
        # must still count.
        machine=False,
        occurred_at__gte=at - window,
        occurred_at__lte=at + window,
    ).exists()


def check_report_time(intervention: Intervention, occurred_at: datetime) -> None:
    """A client's ``occurred_at`` must be a time the report could have happened: not
    after now, not before the intervention existed, not past the tracking rows' retention
    (TRACKING_CLOCK_SKEW_SECONDS of slack for clocks that drift)."""
    skew = timedelta(seconds=settings.TRACKING_CLOCK_SKEW_SECONDS)
    reason = reported_time_problem(occurred_at, kept="tracking_events")
    if reason is None and occurred_at < intervention.created_at - skew:
        reason = f"Is before the intervention was created ({intervention.created_at.isoformat()})."
    if reason is None:
        return
    raise ValidationError({"occurred_at": [reason]})


def do_record_tracking_event(
    intervention: Intervention,
    kind: str,
    source: str,
    occurred_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    revenue: Decimal | None = None,
    machine: bool = False,
    duplicate: bool | None = None,
) -> TrackingEvent:
    """Record one tracking row and its outbox event (``tracking.<kind>``) together.

    ``duplicate`` when the caller has already looked (``is_repeat`` otherwise).
    ``machine``: the ESP says a privacy proxy loaded the pixel (docs/analytics.md); kept,
    never counted as a human open."""
    occurred_at = occurred_at or timezone.now()
    with transaction.atomic():
        lock_for_outbox([intervention.pk])
        if duplicate is None:
            duplicate = is_repeat(intervention, kind, occurred_at)
        event = TrackingEvent.objects.create(
            store_id=intervention.store_id,
            intervention=intervention,
            kind=kind,
            source=source,
            occurred_at=occurred_at,
            metadata=metadata or {},
            revenue=revenue,
            duplicate=duplicate,
            machine=machine,
        )
        outbox.record([outbox.tracked(event)])
    logger.info(
        "tracking_event_recorded",
        intervention_id=str(intervention.pk),
        kind=kind,
        source=source,
        duplicate=event.duplicate,
        machine=machine,
    )
    return event


def lock_for_outbox(intervention_ids: list[Any]) -> None:
    """Take the interventions' row locks before writing their outbox rows, as a status
    change does: one intervention's events then get ids in the order they commit, which
    is the order receivers get them in (docs/webhooks.md, "Ordering")."""
    list(
        Intervention.objects.select_for_update()
        .filter(pk__in=intervention_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def do_record_tracking_event_once(
    intervention: Intervention,
    kind: str,
    source: str,
    within: timedelta,
    metadata: dict[str, Any] | None = None,
) -> TrackingEvent | None:
    """Record the event unless the same one (intervention, kind, source) was recorded in
    the last ``within``; None when it was. For reports a client can repeat at will.

    One read answers both questions, this drop and the duplicate flag of ``is_repeat``
    (a report every frame, so the second query was a query per frame)."""
    now = timezone.now()
    dedupe = timedelta(
        seconds=settings.TRACKING_DEDUPE_SECONDS if kind in DEDUPLICATED_KINDS else 0
    )
    with transaction.atomic():
        # The intervention's row lock serialises two reports racing on two connections,
        # so both cannot see "none yet" and both insert.
        Intervention.objects.select_for_update().filter(pk=intervention.pk).first()
        seen = TrackingEvent.objects.filter(
            intervention=intervention,
            kind=kind,
            occurred_at__gte=now - max(within, dedupe),
            occurred_at__lte=now + dedupe,
        ).aggregate(
            same_report=Count("id", filter=Q(source=source, occurred_at__gte=now - within)),
            counted=Count(
                "id", filter=Q(duplicate=False, machine=False, occurred_at__gte=now - dedupe)
            ),
        )
        if seen["same_report"]:
            return None
        return do_record_tracking_event(
            intervention,
            kind,
            source,
            occurred_at=now,
            metadata=metadata,
            duplicate=bool(dedupe and seen["counted"]),
        )


def do_record_tracking_events(events: list[tuple[Intervention, str, str, datetime]]) -> None:
    """The bulk form, for bursts (WebSocket acks): (intervention, kind, source, occurred_at).

    Used for ``delivered``, which a status change guards already; no dedupe here."""
    with transaction.atomic():
        lock_for_outbox([intervention.pk for intervention, *_ in events])
        rows = TrackingEvent.objects.bulk_create(
            TrackingEvent(
                store_id=intervention.store_id,
                intervention=intervention,
                kind=kind,
                source=source,
                occurred_at=occurred_at,
            )
            for intervention, kind, source, occurred_at in events
        )
        outbox.record(outbox.tracked(row) for row in rows)


def tracking_rows(
    intervention: Intervention, kind: str, source: str, occurred_at: datetime
) -> list[TrackingEvent | OutboxEvent]:
    """The rows one tracking event is, unsaved: for a status change to write in its own
    statement (``transition_each``), which holds the intervention's lock as it does."""
    row = TrackingEvent(
        store_id=intervention.store_id,
        intervention=intervention,
        kind=kind,
        source=source,
        occurred_at=occurred_at,
    )
    return [row, outbox.tracked(row)]


class ConversionConflict(Exception):
    """The order id is known with another body: a caller's bug, not a repeat."""


@dataclass(frozen=True)
class Order:
    """An order as the store reports it (POST /api/v1/conversions or checkout_completed)."""

    order_id: str
    user_id: str
    occurred_at: datetime
    value: Decimal | None = None
    currency: str = ""
    cart_id: str = ""
    # The discount the shopper got, if the store knows it; otherwise the attributed
    # intervention's percentage of the value.
    discount: Decimal | None = None
    # The fields the caller actually sent, to tell a repeat from a conflict.
    given: tuple[tuple[str, Any], ...] = ()


def fingerprint(given: dict[str, Any]) -> str:
    """ "" for an order known only from a checkout event: any later report of it is a repeat."""
    if not given:
        return ""
    canonical = json.dumps(given, cls=DjangoJSONEncoder, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def store_window_hours(store: Store) -> int:
    return store.attribution_window_hours or settings.ATTRIBUTION_WINDOW_HOURS


def touches(store: Store, shopper: Shopper | None, at: datetime) -> list[Touch]:
    """The shopper's touches that any window could reach before ``at``, on any of their
    carts (a shopper who abandons one cart often orders from a new one).

    A touch is a send the shopper could have seen: email, SMS and push once the provider
    took it (sent, unconfirmed, delivered); a WebSocket message once a storefront acked
    it (delivered), since a publish to a room with no open tab reaches nobody."""
    if shopper is None:
        return []
    widest = max(
        store_window_hours(store),
        Campaign.objects.filter(store=store).aggregate(w=Max("attribution_window_hours"))["w"] or 0,
    )
    rows = (
        Intervention.objects.filter(
            store=store,
            shopper=shopper,
            sent_at__gte=at - timedelta(hours=widest),
            sent_at__lte=at,
        )
        .filter(
            Q(status__in=TOUCH_STATUSES) & ~Q(channel="websocket")
            | Q(channel="websocket", status=Status.DELIVERED)
        )
        .select_related("campaign")
        .order_by("-sent_at", "-id")[:MAX_TOUCHES]
    )
    return [
        Touch(
            intervention_id=row.pk,
            sent_at=row.sent_at,
            channel=row.channel,
            window_hours=row.campaign.attribution_window_hours if row.campaign else None,
            model=row.campaign.attribution_model if row.campaign else "",
        )
        for row in rows
        if row.sent_at is not None
    ]


def discount_given(order: Order, intervention: Intervention | None) -> Decimal:
    if order.discount is not None:
        return order.discount
    percent = ((intervention.decision if intervention else None) or {}).get("discount") or {}
    if order.value is None or not percent.get("percent"):
        return Decimal(0)
    return (order.value * Decimal(str(percent["percent"])) / 100).quantize(CENT)


def do_record_conversion(
    store: Store,
    order: Order,
    *,
    shopper: Shopper | None,
    cart: Cart | None,
    source: str,
) -> tuple[Conversion, bool]:
    """Record the order once and attribute it to its last touch: (conversion, created).

    A repeat with the same body returns the first row; with another body it raises
    ``ConversionConflict``. The attributed intervention gets one ``converted`` tracking
    row per order, with the recovered revenue.
    """
    body_hash = fingerprint(dict(order.given))
    existing = Conversion.objects.filter(store=store, order_id=order.order_id).first()
    if existing is not None:
        return _repeat(existing, body_hash)
    attribution = attribute(
        touches(store, shopper, order.occurred_at),
        order.occurred_at,
        store.attribution_model,
        store_window_hours(store),
    )
    credited = Intervention.objects.in_bulk([c.intervention_id for c in attribution.credits])
    touched = credited.get(attribution.primary)
    discount = discount_given(order, touched)
    recovered = (
        max(order.value - discount, Decimal(0))
        if touched is not None and order.value is not None
        else None
    )
    try:
        with transaction.atomic():
            conversion = Conversion.objects.create(
                store=store,
                order_id=order.order_id,
                shopper=shopper,
                user_id=order.user_id,
                cart=cart,
                cart_external_id=order.cart_id,
                value=order.value,
                currency=order.currency,
                discount=discount,
                intervention=touched,
                recovered_revenue=recovered,
                attribution_model=attribution.model,
                credits=credit_rows(attribution, recovered),
                source=source,
                fingerprint=body_hash,
                occurred_at=order.occurred_at,
            )
            outbox.record([outbox.conversion_recorded(conversion, conversion.credits)])
            record_credits(conversion, attribution, credited, recovered, store)
    except IntegrityError:
        # A concurrent request recorded the same order first.
        return _repeat(Conversion.objects.get(store=store, order_id=order.order_id), body_hash)
    logger.info(
        "conversion_recorded",
        store_id=str(store.pk),
        order_id=order.order_id,
        intervention_id=str(touched.pk) if touched else None,
        attribution_model=attribution.model,
        credited=len(attribution.credits),
    )
    return conversion, True


def credit_rows(attribution: Attribution, recovered: Decimal | None) -> list[dict[str, Any]]:
    return [
        {
            "intervention_id": str(credit.intervention_id),
            "weight": str(credit.weight),
            "recovered_revenue": (
                str((recovered * credit.weight).quantize(CENT)) if recovered is not None else None
            ),
        }
        for credit in attribution.credits
    ]


def record_credits(
    conversion: Conversion,
    attribution: Attribution,
    credited: dict[Any, Intervention],
    recovered: Decimal | None,
    store: Store,
) -> None:
    """One ``converted`` tracking row per credited intervention, with its share of the
    recovered revenue; the order itself stays one ``Conversion`` row, counted once."""
    for credit in attribution.credits:
        do_record_tracking_event(
            credited[credit.intervention_id],
            "converted",
            source=conversion.source,
            occurred_at=conversion.occurred_at,
            revenue=(recovered * credit.weight).quantize(CENT) if recovered is not None else None,
            metadata={
                "order_id": conversion.order_id,
                "currency": conversion.currency,
                "attribution": attribution.model,
                "weight": str(credit.weight),
                "primary": credit.intervention_id == attribution.primary,
                "window_hours": store_window_hours(store),
            },
        )


def _repeat(existing: Conversion, body_hash: str) -> tuple[Conversion, bool]:
    if existing.fingerprint and body_hash and existing.fingerprint != body_hash:
        raise ConversionConflict(
            f"Order {existing.order_id} was already recorded with a different body."
        )
    return existing, False
