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
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from interventions.models import Cart, Intervention, Status
from stores.models import Shopper, Store
from tracking.models import Conversion, TrackingEvent

logger = structlog.get_logger(__name__)

# Scanners prefetch pixels and links, people double-tap: a repeat of these within
# TRACKING_DEDUPE_SECONDS is kept but flagged, so it is never counted.
DEDUPLICATED_KINDS = frozenset({"opened", "clicked"})

# An intervention that reached the shopper, or may have (unconfirmed: the provider may
# hold it). Only these can earn an order.
TOUCH_STATUSES = (Status.SENT, Status.UNCONFIRMED, Status.DELIVERED)

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
        occurred_at__gte=at - window,
        occurred_at__lte=at + window,
    ).exists()


def do_record_tracking_event(
    intervention: Intervention,
    kind: str,
    source: str,
    occurred_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    revenue: Decimal | None = None,
    duplicate: bool | None = None,
) -> TrackingEvent:
    """``duplicate`` when the caller has already looked (``is_repeat`` otherwise)."""
    occurred_at = occurred_at or timezone.now()
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
    )
    logger.info(
        "tracking_event_recorded",
        intervention_id=str(intervention.pk),
        kind=kind,
        source=source,
        duplicate=event.duplicate,
    )
    return event


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
            counted=Count("id", filter=Q(duplicate=False, occurred_at__gte=now - dedupe)),
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
    TrackingEvent.objects.bulk_create(
        TrackingEvent(
            store_id=intervention.store_id,
            intervention=intervention,
            kind=kind,
            source=source,
            occurred_at=occurred_at,
        )
        for intervention, kind, source, occurred_at in events
    )


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


def last_touch(store: Store, shopper: Shopper | None, at: datetime) -> Intervention | None:
    """The shopper's most recent send within the attribution window before ``at``, on any
    of their carts (a shopper who abandons one cart often orders from a new one)."""
    if shopper is None:
        return None
    window = timedelta(hours=settings.ATTRIBUTION_WINDOW_HOURS)
    return (
        Intervention.objects.filter(
            store=store,
            shopper=shopper,
            status__in=TOUCH_STATUSES,
            sent_at__gte=at - window,
            sent_at__lte=at,
        )
        .order_by("-sent_at", "-id")
        .first()
    )


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
    touched = last_touch(store, shopper, order.occurred_at)
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
                source=source,
                fingerprint=body_hash,
                occurred_at=order.occurred_at,
            )
    except IntegrityError:
        # A concurrent request recorded the same order first.
        return _repeat(Conversion.objects.get(store=store, order_id=order.order_id), body_hash)
    if touched is not None:
        do_record_tracking_event(
            touched,
            "converted",
            source=source,
            occurred_at=order.occurred_at,
            revenue=recovered,
            metadata={
                "order_id": order.order_id,
                "currency": order.currency,
                "attribution": "last_touch",
                "window_hours": settings.ATTRIBUTION_WINDOW_HOURS,
            },
        )
    logger.info(
        "conversion_recorded",
        store_id=str(store.pk),
        order_id=order.order_id,
        intervention_id=str(touched.pk) if touched else None,
    )
    return conversion, True


def _repeat(existing: Conversion, body_hash: str) -> tuple[Conversion, bool]:
    if existing.fingerprint and body_hash and existing.fingerprint != body_hash:
        raise ConversionConflict(
            f"Order {existing.order_id} was already recorded with a different body."
        )
    return existing, False
