"""Intervention operations: intake, decision, delivery, lifecycle (docs/delivery.md).

``do_*`` change the database (and say so in the history); ``check_*`` validate first;
``access_*`` fetch through the store. Views, tasks, consumers and webhooks call these
and nothing below them.

Delivery is "exactly once in effect": every send is a row before it is a network call,
a task claims the row with a conditional update (queued → sending) so a repeated task
is a no-op, and a row left in ``sending`` by a dead worker is never re-sent on a
channel where that could reach the shopper twice (see ``do_sweep_stuck``).
"""

import hashlib
import json
import random
import time as monotonic_time
import uuid
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign
from interventions import decisions, metrics
from interventions.models import (
    UNSENT_STATUSES,
    Cart,
    CartEvent,
    DeliveryAttempt,
    EventType,
    IllegalTransition,
    Intervention,
    InterventionEvent,
    Status,
    transition,
)
from interventions.realtime.registry import is_connected
from notifications.models import Device, Suppression
from notifications.recipients import address_for
from notifications.transports.base import (
    OutboundMessage,
    Transport,
    TransportError,
    get_transport,
)
from stores.actions import do_upsert_shopper
from stores.models import Shopper, Store
from templates.context import build_context
from templates.rendering import RenderError, published_template, render_message
from tracking.actions import do_record_tracking_event
from tracking.models import TrackingEvent

logger = structlog.get_logger(__name__)

# Interventions per Celery task when a batch is dispatched.
DISPATCH_CHUNK = 100


class InterventionConflict(Exception):
    """The request cannot apply to the intervention in its current state (HTTP 409)."""


class TransientDeliveryError(Exception):
    """The transport failed in a way worth retrying; the intervention is back in queued."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# --- Facts for the decision engine ----------------------------------------


def store_rules(store: Store) -> decisions.StoreRules:
    return decisions.StoreRules(
        timezone=store.timezone,
        probability_threshold=store.probability_threshold,
        quiet_hours_start=store.quiet_hours_start,
        quiet_hours_end=store.quiet_hours_end,
        frequency_cap_per_hour=store.frequency_cap_per_hour,
        channel_caps_per_day=store.channel_caps_per_day or {},
        fallback_chain=tuple(store.fallback_chain or ()),
    )


def shopper_facts(
    shopper: Shopper, channels: Iterable[str] = decisions.ALL_CHANNELS
) -> decisions.ShopperFacts:
    """What the decision needs to know about the shopper, for ``channels`` only: an
    explicit email trigger does not pay for device, suppression or connection look-ups
    of other channels."""
    channels = set(channels)
    tokens = address_for(shopper, "push") if "push" in channels else None
    addresses = [
        address
        for channel, address in (("email", shopper.email), ("sms", shopper.phone))
        if channel in channels and address
    ]
    suppressed = (
        set(
            Suppression.objects.filter(
                store_id=shopper.store_id, address__in=addresses
            ).values_list("channel", "address")
        )
        if addresses
        else set()
    )
    # Only ``auto`` chooses among channels, so only it asks the registry.
    connected = len(channels) > 1 and is_connected(str(shopper.store_id), shopper.external_id)
    return facts_from(shopper, tokens or (), suppressed, connected)


def facts_from(
    shopper: Shopper,
    push_tokens: Collection[str],
    suppressed: set[tuple[str, str]],
    connected: bool,
) -> decisions.ShopperFacts:
    """The decision's view of a shopper, from data already fetched (one by one or in bulk)."""
    reachable = {"websocket"}
    if shopper.email:
        reachable.add("email")
    if shopper.phone:
        reachable.add("sms")
    if push_tokens:
        reachable.add("push")
    return decisions.ShopperFacts(
        timezone=shopper.timezone,
        segment=shopper.segment,
        channel_preferences=tuple(shopper.channel_preferences or ()),
        opted_out_channels=frozenset(shopper.opted_out_channels or ()),
        suppressed_channels=frozenset(
            channel
            for channel, address in (("email", shopper.email), ("sms", shopper.phone))
            if address and (channel, address) in suppressed
        ),
        reachable_channels=frozenset(reachable),
        connected=connected,
    )


def cart_facts(cart: Cart | None) -> decisions.CartFacts:
    if cart is None:
        return decisions.CartFacts()
    return decisions.CartFacts(
        value=cart.value,
        converted=cart.converted,
        probability=cart.probability,
        recommended_action=cart.recommended_action,
        recommended_discount=cart.recommended_discount,
    )


def recent_history(shopper: Shopper, now: datetime) -> list[decisions.PastIntervention]:
    rows = Intervention.objects.filter(
        shopper=shopper, created_at__gt=now - timedelta(days=1)
    ).values_list("channel", "status", "created_at", "sent_at")
    return [
        decisions.PastIntervention(channel, status, sent_at or created_at)
        for channel, status, created_at, sent_at in rows
    ]


def campaign_rule(campaign: Campaign) -> decisions.CampaignRule:
    return decisions.CampaignRule(
        id=campaign.pk,
        name=campaign.name,
        trigger=campaign.trigger,
        channel=campaign.channel,
        delay_minutes=campaign.delay_minutes,
        template_key=campaign.template_key,
        priority=campaign.priority,
        min_cart_value=campaign.min_cart_value,
        max_cart_value=campaign.max_cart_value,
        segments=tuple(campaign.segments or ()),
        min_probability=campaign.min_probability,
        max_probability=campaign.max_probability,
    )


# --- Creating interventions ------------------------------------------------


@dataclass
class Outcome:
    """What an event or trigger led to, for the API response."""

    intervention: Intervention | None = None
    created: bool = True
    reasons: list[str] = field(default_factory=list)


def _discount_for(cart: Cart | None, campaign: Campaign | None) -> dict[str, Any] | None:
    if campaign is not None and campaign.discount_percent is not None:
        return {"percent": str(campaign.discount_percent), "source": "campaign"}
    if cart is not None and cart.recommended_discount is not None:
        return {"percent": str(cart.recommended_discount), "source": "prediction"}
    return None


def _render(
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    channel: str,
    template_key: str,
    personalization: dict[str, Any],
    discount: dict[str, Any] | None,
    intervention_id: Any = None,
) -> tuple[Any, dict[str, Any]]:
    context = build_context(
        store=store,
        shopper=shopper,
        cart=cart,
        personalization=personalization,
        discount=discount,
        intervention_id=intervention_id,
    )
    return render_message(store.pk, template_key, channel, context, shopper.locale)


def _build_decided(
    *,
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    request: decisions.Request,
    facts: decisions.ShopperFacts,
    history: list[decisions.PastIntervention],
    origin: str,
    now: datetime,
    campaign: Campaign | None = None,
    personalization: dict[str, Any] | None = None,
    idempotency_key: str = "",
    fingerprint: str = "",
    extra_reasons: Iterable[str] = (),
) -> tuple[Intervention, InterventionEvent]:
    """Decide and render one intervention, unsaved: the single and the bulk paths save."""
    started = monotonic_time.perf_counter()
    decision = decisions.decide(request, facts, cart_facts(cart), store_rules(store), history, now)
    reasons = [*extra_reasons, *decision.reasons]
    personalization = personalization or {}
    discount = _discount_for(cart, campaign)
    status = decision.status
    version: Any = None
    content: dict[str, Any] = {}
    # Minted before the row, so the rendered links can name the intervention.
    intervention_id = uuid.uuid4()
    if decision.intervene and decision.channel:
        try:
            version, content = _render(
                store,
                shopper,
                cart,
                decision.channel,
                request.template_key,
                personalization,
                discount,
                intervention_id,
            )
        except RenderError as exc:
            status = Status.FAILED
            reasons.append(f"failed: template could not be rendered: {exc}")
    metrics.DECISION_SECONDS.observe(monotonic_time.perf_counter() - started)
    intervention = Intervention(
        id=intervention_id,
        store=store,
        shopper=shopper,
        cart=cart,
        campaign=campaign,
        origin=origin,
        requested_channel=request.channel,
        channel=decision.channel or (request.channel if request.channel != "auto" else ""),
        fallback_channels=list(decision.fallback_channels),
        status=status,
        status_reason=reasons[-1][:500] if reasons else "",
        decision={**decision.as_dict(), "reasons": reasons, "discount": discount},
        template_key=request.template_key,
        template_version=version,
        personalization=personalization,
        content=content,
        send_at=decision.send_at,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        queued_at=now if status == Status.QUEUED else None,
    )
    created = InterventionEvent(
        intervention=intervention,
        from_status="",
        to_status=status,
        reason=intervention.status_reason,
        detail={"reasons": reasons},
        at=now,
    )
    return intervention, created


def _announce(interventions: list[Intervention]) -> None:
    """Metrics and a log line per decision; queued ones are dispatched after commit."""
    for intervention in interventions:
        metrics.INTERVENTIONS_DECIDED.labels(
            status=intervention.status, channel=intervention.channel or "none"
        ).inc()
        logger.info(
            "intervention_decided",
            intervention_id=str(intervention.pk),
            store_id=str(intervention.store_id),
            status=intervention.status,
            channel=intervention.channel,
            reasons=intervention.decision["reasons"],
        )
    queued = [i for i in interventions if i.status == Status.QUEUED]
    if len(queued) == 1:
        # The row was just written in this request: the inline WebSocket send reuses it.
        transaction.on_commit(partial(dispatch, queued[0].pk, queued[0].channel, queued[0]))
    elif queued:
        transaction.on_commit(partial(dispatch_many, [(i.pk, i.channel) for i in queued]))


def _create_decided(
    *,
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    request: decisions.Request,
    origin: str,
    **fields: Any,
) -> Intervention:
    """Decide, render and store one intervention; dispatch it once the transaction commits."""
    now = timezone.now()
    channels = decisions.ALL_CHANNELS if request.channel == "auto" else (request.channel,)
    # Explicit triggers skip frequency caps, so they need no history.
    history = [] if request.explicit else recent_history(shopper, now)
    intervention, created = _build_decided(
        store=store,
        shopper=shopper,
        cart=cart,
        request=request,
        facts=shopper_facts(shopper, channels),
        history=history,
        origin=origin,
        now=now,
        **fields,
    )
    intervention.save(force_insert=True)
    created.save(force_insert=True)
    _announce([intervention])
    return intervention


def request_fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _json_safe(payload: dict[str, Any]) -> dict[str, Any]:
    """Decimals and datetimes as strings, for JSON columns."""
    safe: dict[str, Any] = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    return safe


def check_template(store: Store, template_key: str, field: str = "template") -> None:
    """A template that does not exist or has no published version is the caller's
    mistake: a 400 naming the field, and nothing stored."""
    if not template_key:
        return
    try:
        published_template(store.pk, template_key)
    except RenderError as exc:
        raise ValidationError({field: [str(exc)]}) from exc


def check_trigger_intervention(
    store: Store, trigger: dict[str, Any], idempotency_key: str = ""
) -> tuple[Intervention, bool]:
    """An explicit trigger: the caller decided to intervene (POST /api/v1/interventions).

    With an ``idempotency_key`` a repeat returns the first intervention (created=False);
    the same key with a different body is a conflict, never a second intervention.
    """
    fingerprint = request_fingerprint(trigger) if idempotency_key else ""
    if idempotency_key:
        existing = Intervention.objects.filter(store=store, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_replay(existing, fingerprint), False
    check_template(store, trigger.get("template", ""))
    try:
        with transaction.atomic():
            intervention = _trigger(store, trigger, idempotency_key, fingerprint)
    except IntegrityError:
        # A concurrent request with the same key won the race; answer with its result.
        existing = Intervention.objects.filter(store=store, idempotency_key=idempotency_key).first()
        if not idempotency_key or existing is None:
            raise
        return _idempotent_replay(existing, fingerprint), False
    return intervention, True


def _idempotent_replay(existing: Intervention, fingerprint: str) -> Intervention:
    if existing.request_fingerprint and existing.request_fingerprint != fingerprint:
        raise InterventionConflict(
            "This Idempotency-Key was already used with a different request body."
        )
    metrics.IDEMPOTENT_REPLAYS.inc()
    return existing


def _trigger(
    store: Store, trigger: dict[str, Any], idempotency_key: str, fingerprint: str
) -> Intervention:
    shopper = do_upsert_shopper(store, trigger["user_id"], trigger.get("user"))
    _register_push_tokens(store, shopper, trigger.get("user"))
    cart = None
    if trigger.get("cart_id"):
        cart = _fold_cart(store, shopper, trigger["cart_id"], trigger.get("cart"), None)
    request = decisions.Request(
        channel=trigger.get("channel", "auto"),
        explicit=True,
        template_key=trigger.get("template", ""),
        send_at=trigger.get("scheduled_at"),
    )
    return _create_decided(
        store=store,
        shopper=shopper,
        cart=cart,
        request=request,
        origin="trigger",
        personalization=trigger.get("personalization") or {},
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )


# --- Events ---------------------------------------------------------------


def _register_push_tokens(store: Store, shopper: Shopper, profile: dict[str, Any] | None) -> None:
    from notifications.actions import do_register_device

    for token in (profile or {}).get("push_tokens") or ():
        do_register_device(store, shopper.external_id, token)


PREDICTION_FIELDS = (
    "probability",
    "confidence",
    "recommended_action",
    "recommended_discount",
    "model_version",
)


def _fold_cart(
    store: Store,
    shopper: Shopper,
    cart_id: str,
    cart_data: dict[str, Any] | None,
    prediction: dict[str, Any] | None,
) -> Cart:
    """Upsert the cart with what the event says about it (one INSERT ... ON CONFLICT)."""
    updates: dict[str, Any] = {"shopper": shopper}
    updates.update(
        {k: v for k, v in (cart_data or {}).items() if k in ("value", "currency", "items")}
    )
    updates.update(
        {k: v for k, v in (prediction or {}).items() if k in PREDICTION_FIELDS and v is not None}
    )
    row = Cart(store=store, external_id=cart_id, updated_at=timezone.now(), **updates)
    [upserted] = Cart.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["store", "external_id"],
        update_fields=[*updates, "updated_at"],
    )
    if upserted.pk is None:
        return Cart.objects.get(store=store, external_id=cart_id)
    return Cart.objects.get(pk=upserted.pk)


EVENT_TRIGGERS = {
    EventType.CART_ABANDONED: ("cart_abandoned", "time_based"),
    EventType.PREDICTION: ("prediction_high",),
}


@dataclass
class EventResult:
    event: CartEvent
    outcomes: list[Outcome]
    reasons: list[str]


@transaction.atomic
def do_accept_event(store: Store, event: dict[str, Any]) -> EventResult:
    """Store a validated event (the body of POST /api/v1/events) and act on it."""
    # Locked: serialises decisions for one shopper, so two simultaneous events cannot
    # both slip under the frequency cap.
    shopper = do_upsert_shopper(store, event["user_id"], event.get("user"), lock=True)
    _register_push_tokens(store, shopper, event.get("user"))
    cart = _fold_cart(store, shopper, event["cart_id"], event.get("cart"), event.get("prediction"))
    occurred_at = event.get("occurred_at") or timezone.now()
    cart_event = CartEvent.objects.create(
        store=store,
        type=event["type"],
        cart=cart,
        user_id=event["user_id"],
        payload=_json_safe(
            {k: v for k, v in event.items() if k not in ("type", "cart_id", "user_id")}
        ),
        occurred_at=occurred_at,
    )
    metrics.EVENTS_ACCEPTED.labels(type=event["type"]).inc()
    result = EventResult(cart_event, [], [])

    if event["type"] == EventType.CHECKOUT_COMPLETED:
        cancelled = do_convert_cart(cart, occurred_at, (event.get("cart") or {}).get("value"))
        result.reasons.append(f"checkout completed: {cancelled} pending intervention(s) cancelled")
        return result
    if event["type"] == EventType.CART_ABANDONED and cart.abandoned_at is None:
        cart.abandoned_at = occurred_at
        cart.save(update_fields=["abandoned_at", "updated_at"])
    triggers = EVENT_TRIGGERS.get(event["type"])
    if not triggers:
        result.reasons.append(f"{event['type']} updates the cart; it triggers nothing")
        return result

    campaigns = {c.pk: c for c in Campaign.objects.filter(store=store, is_active=True)}
    facts = shopper_facts(shopper)
    rule, reasons = decisions.choose_campaign(
        [campaign_rule(c) for c in campaigns.values()], triggers, cart_facts(cart), facts
    )
    result.reasons.extend(reasons)
    if rule is None:
        logger.info("event_without_campaign", store_id=str(store.pk), reasons=reasons)
        return result
    campaign = campaigns[rule.id]
    request = decisions.Request(
        channel="auto" if rule.channel == "all" else rule.channel,
        explicit=False,
        template_key=rule.template_key,
        delay_minutes=rule.delay_minutes,
    )
    intervention = _create_decided(
        store=store,
        shopper=shopper,
        cart=cart,
        request=request,
        origin="campaign",
        campaign=campaign,
        extra_reasons=reasons,
    )
    result.outcomes.append(Outcome(intervention, True, list(intervention.decision["reasons"])))
    return result


def do_convert_cart(cart: Cart, at: datetime, value: Any = None) -> int:
    """Checkout: the cart converted. Cancel what has not gone out; attribute what has."""
    if cart.converted_at is None:
        cart.converted_at = at
        cart.conversion_value = Decimal(str(value)) if value is not None else cart.value
        cart.save(update_fields=["converted_at", "conversion_value", "updated_at"])
    cancelled = 0
    for intervention in Intervention.objects.filter(cart=cart, status__in=UNSENT_STATUSES):
        try:
            transition(intervention, Status.CANCELLED, "cancelled: checkout completed")
            cancelled += 1
        except IllegalTransition:
            continue  # a worker claimed it meanwhile; it goes out and may be attributed
    window = timedelta(hours=settings.ATTRIBUTION_WINDOW_HOURS)
    touched = (
        Intervention.objects.filter(
            cart=cart,
            status__in=[Status.SENT, Status.UNCONFIRMED, Status.DELIVERED],
            sent_at__gte=at - window,
        )
        .order_by("-sent_at")
        .first()
    )
    if touched is not None and not touched.tracking_events.filter(kind="converted").exists():
        do_record_tracking_event(
            touched,
            "converted",
            source="checkout",
            occurred_at=at,
            revenue=cart.conversion_value,
            metadata={
                "attribution": "last_touch",
                "window_hours": settings.ATTRIBUTION_WINDOW_HOURS,
            },
        )
    return cancelled


# --- Lifecycle operations from the API and admin --------------------------


def do_cancel_intervention(intervention: Intervention, reason: str = "cancelled by API") -> None:
    if intervention.status not in UNSENT_STATUSES:
        raise InterventionConflict(f"Cannot cancel an intervention that is {intervention.status}.")
    try:
        transition(intervention, Status.CANCELLED, reason)
    except IllegalTransition as exc:
        raise InterventionConflict(str(exc)) from exc


def do_update_unsent(intervention: Intervention, changes: dict[str, Any]) -> Intervention:
    """Reschedule or edit content before the send (PATCH)."""
    with transaction.atomic():
        locked = Intervention.objects.select_for_update().get(pk=intervention.pk)
        if locked.status not in (Status.PENDING, Status.SCHEDULED, Status.QUEUED):
            raise InterventionConflict(f"Cannot change an intervention that is {locked.status}.")
        fields = []
        for name in ("content", "personalization", "expires_at"):
            if name in changes:
                setattr(locked, name, changes[name])
                fields.append(name)
        if fields:
            locked.save(update_fields=[*fields, "updated_at"])
        if "send_at" in changes:
            send_at = max(changes["send_at"], timezone.now())
            if locked.status == Status.QUEUED and send_at > timezone.now():
                transition(locked, Status.SCHEDULED, "rescheduled by API", send_at=send_at)
            elif locked.status == Status.SCHEDULED:
                Intervention.objects.filter(pk=locked.pk).update(send_at=send_at)
                InterventionEvent.objects.create(
                    intervention=locked,
                    from_status=locked.status,
                    to_status=locked.status,
                    reason=f"rescheduled by API to {send_at.isoformat()}",
                )
                locked.send_at = send_at
    return locked


def do_retry_failed(intervention: Intervention, reason: str = "retry requested") -> None:
    if intervention.status != Status.FAILED:
        raise InterventionConflict(
            f"Only failed interventions can be retried, not {intervention.status}."
        )
    with transaction.atomic():
        transition(
            intervention, Status.QUEUED, reason, queued_at=timezone.now(), send_at=timezone.now()
        )
        transaction.on_commit(lambda: dispatch(intervention.pk, intervention.channel))


def do_mark_delivered(intervention: Intervention, source: str, at: datetime | None = None) -> bool:
    """sent → delivered (a WebSocket ack, a provider's delivery report); False if not sent."""
    at = at or timezone.now()
    try:
        with transaction.atomic():
            transition(intervention, Status.DELIVERED, f"delivered ({source})", delivered_at=at)
            do_record_tracking_event(intervention, "delivered", source=source, occurred_at=at)
    except IllegalTransition:
        return False
    metrics.DELIVERED.labels(channel=intervention.channel).inc()
    return True


def do_mark_delivered_many(
    deliveries: list[tuple[Intervention, datetime]], source: str
) -> set[Any]:
    """sent → delivered for a batch (WebSocket acks arrive in bursts): the ids that moved.

    Same result as ``do_mark_delivered`` one by one (status, history row, tracking row),
    in one locked SELECT, one UPDATE and two bulk INSERTs instead of four statements each.
    """
    wanted = {intervention.pk: (intervention, at) for intervention, at in deliveries}
    if not wanted:
        return set()
    with transaction.atomic():
        still_sent = set(
            Intervention.objects.select_for_update()
            .filter(pk__in=list(wanted), status=Status.SENT)
            .values_list("pk", flat=True)
        )
        moved = [wanted[pk] for pk in still_sent]
        reason = f"delivered ({source})"
        for intervention, at in moved:
            intervention.status, intervention.status_reason = Status.DELIVERED, reason
            intervention.delivered_at, intervention.updated_at = at, at
        Intervention.objects.bulk_update(
            [i for i, _ in moved], ["status", "status_reason", "delivered_at", "updated_at"]
        )
        InterventionEvent.objects.bulk_create(
            InterventionEvent(
                intervention=i,
                from_status=Status.SENT,
                to_status=Status.DELIVERED,
                reason=reason,
                at=at,
            )
            for i, at in moved
        )
        TrackingEvent.objects.bulk_create(
            TrackingEvent(
                store_id=i.store_id, intervention=i, kind="delivered", source=source, occurred_at=at
            )
            for i, at in moved
        )
    for intervention, _ in moved:
        metrics.DELIVERED.labels(channel=intervention.channel).inc()
    return still_sent


def do_fail_after_send(intervention: Intervention, reason: str, source: str) -> bool:
    """sent → failed (hard bounce, undeliverable SMS), then the next fallback channel."""
    try:
        transition(intervention, Status.FAILED, f"failed after send ({source}): {reason}")
    except IllegalTransition:
        return False
    metrics.DELIVERY_FAILURES.labels(channel=intervention.channel, reason=reason[:40]).inc()
    _fall_back(intervention)
    return True


# --- Delivery -------------------------------------------------------------


def dispatch(intervention_id: Any, channel: str, loaded: Intervention | None = None) -> None:
    """Hand a queued intervention to its channel. Called after commit.

    WebSocket is sent inline (a publish is ~1 ms; a Celery hop would add 5-10 ms and cap
    throughput). Other channels go to their own Celery queue, so a slow provider cannot
    hold up the rest. If the broker is down the row stays queued and the sweeper
    re-dispatches it: the intervention is never lost with the message.
    """
    if channel == "websocket":
        try:
            do_deliver(intervention_id, loaded)
        except TransientDeliveryError as exc:
            logger.warning(
                "websocket_publish_deferred", intervention_id=str(intervention_id), error=str(exc)
            )
        return
    from interventions.tasks import deliver_intervention

    try:
        deliver_intervention.apply_async(args=(str(intervention_id),), queue=channel)
    except Exception as exc:
        metrics.ENQUEUE_FAILURES.labels(queue=channel).inc()
        logger.error(
            "enqueue_failed_sweeper_will_retry",
            intervention_id=str(intervention_id),
            queue=channel,
            error=str(exc),
        )


def dispatch_many(queued: list[tuple[Any, str]]) -> None:
    """Dispatch a batch: one Celery task per chunk and channel instead of one per item.

    WebSocket items go through the websocket queue here too: publishing a whole batch
    inline would hold the API response for the length of the batch.
    """
    from interventions.tasks import deliver_interventions

    by_channel: dict[str, list[str]] = {}
    for pk, channel in queued:
        by_channel.setdefault(channel, []).append(str(pk))
    for channel, ids in by_channel.items():
        for start in range(0, len(ids), DISPATCH_CHUNK):
            chunk = ids[start : start + DISPATCH_CHUNK]
            try:
                deliver_interventions.apply_async(args=(chunk,), queue=channel)
            except Exception as exc:
                metrics.ENQUEUE_FAILURES.labels(queue=channel).inc(len(chunk))
                logger.error(
                    "enqueue_failed_sweeper_will_retry",
                    queue=channel,
                    count=len(chunk),
                    error=str(exc),
                )


@dataclass
class SendFacts:
    """What the send-time checks read, fetched once for a whole batch (or for one)."""

    suppressed: set[tuple[Any, str, str]]  # (store id, channel, address)
    push_tokens: dict[int, list[str]]  # shopper id → active device tokens


def send_facts(interventions: Collection[Intervention]) -> SendFacts:
    addresses = {
        address
        for i in interventions
        if i.channel in ("email", "sms")
        and (address := address_for(i.shopper, i.channel))
        and isinstance(address, str)
    }
    suppressed: set[tuple[Any, str, str]] = set()
    if addresses:
        suppressed = set(
            Suppression.objects.filter(
                store_id__in={i.store_id for i in interventions}, address__in=addresses
            ).values_list("store_id", "channel", "address")
        )
    push_tokens: dict[int, list[str]] = {}
    push_shoppers = {i.shopper_id for i in interventions if i.channel == "push"}
    if push_shoppers:
        for shopper_id, token in Device.objects.filter(
            shopper_id__in=push_shoppers, active=True
        ).values_list("shopper_id", "token"):
            push_tokens.setdefault(shopper_id, []).append(token)
    return SendFacts(suppressed, push_tokens)


def _recipient(intervention: Intervention, facts: SendFacts) -> str | list[str] | None:
    if intervention.channel == "push":
        return facts.push_tokens.get(intervention.shopper_id) or None
    return address_for(intervention.shopper, intervention.channel)


def _block_at_send_time(
    intervention: Intervention, recipient: str | list[str] | None, facts: SendFacts
) -> str:
    """Opt-outs and suppressions can arrive after the decision: STOP wins over a queued SMS."""
    channel = intervention.channel
    if channel in (intervention.shopper.opted_out_channels or ()):
        return f"{channel}: shopper opted out"
    if not recipient:
        return f"{channel}: no address known"
    if isinstance(recipient, str) and (intervention.store_id, channel, recipient) in (
        facts.suppressed
    ):
        return f"{channel}: address on the suppression list"
    return ""


def _message_for(intervention: Intervention, recipient: str | list[str]) -> OutboundMessage:
    cart = intervention.cart
    return OutboundMessage(
        intervention_id=str(intervention.pk),
        store_id=str(intervention.store_id),
        channel=intervention.channel,
        recipient=recipient,
        content=intervention.content,
        shopper_id=intervention.shopper.external_id,
        metadata={
            "user_id": intervention.shopper.external_id,
            "kind": intervention.origin,
            "cart": {
                "id": cart.external_id,
                "value": str(cart.value) if cart.value is not None else None,
                "currency": cart.currency,
                "items": cart.items,
            }
            if cart
            else None,
            "discount": intervention.decision.get("discount"),
            "expires_at": intervention.expires_at.isoformat() if intervention.expires_at else None,
            "template_version": intervention.template_version_id,
        },
    )


@dataclass
class BatchDelivery:
    outcomes: Counter[str] = field(default_factory=Counter)
    # (intervention id, provider's retry-after) for items that failed transiently.
    to_retry: list[tuple[str, float | None]] = field(default_factory=list)


def do_deliver(intervention_id: Any, loaded: Intervention | None = None) -> str:
    """Send one queued intervention through its channel's transport. Safe to repeat.

    Returns what happened (for logs and tests): sent, skipped, suppressed, fell_back or
    failed. Raises TransientDeliveryError after putting the row back to queued.
    """
    # No ordering (``first()`` would sort by the model's default) and no store join:
    # this runs once per send.
    intervention = loaded or next(
        iter(
            Intervention.objects.select_related("shopper", "cart")
            .filter(pk=intervention_id)
            .order_by()
        ),
        None,
    )
    if intervention is None or intervention.status != Status.QUEUED:
        return "skipped"  # the claim below re-checks the row itself
    return _deliver_loaded(intervention, send_facts([intervention]), timezone.now())


def do_deliver_many(intervention_ids: list[str]) -> BatchDelivery:
    """Deliver a chunk of queued interventions: the reads batched, each send on its own.

    The send-time facts (suppressions, device tokens) are read once for the chunk; each
    item is then claimed (queued → sending, committed) right before its own provider
    call and recorded right after it, exactly as ``do_deliver`` does. So a worker killed
    mid-chunk leaves at most the one item whose call was under way in ``sending``; the
    rest are still ``queued`` and the sweeper dispatches them again (docs/delivery.md).
    """
    result = BatchDelivery()
    interventions = list(
        Intervention.objects.select_related("shopper", "cart")
        .filter(pk__in=intervention_ids, status=Status.QUEUED)
        .order_by()
    )
    result.outcomes["skipped"] += len(intervention_ids) - len(interventions)
    facts = send_facts(interventions)
    now = timezone.now()
    for intervention in interventions:
        try:
            result.outcomes[_deliver_loaded(intervention, facts, now)] += 1
        except TransientDeliveryError as exc:
            result.to_retry.append((str(intervention.pk), exc.retry_after))
    return result


def _deliver_loaded(intervention: Intervention, facts: SendFacts, now: datetime) -> str:
    if intervention.expires_at and intervention.expires_at <= now:
        try:
            transition(intervention, Status.FAILED, "failed: expired before it could be sent")
        except IllegalTransition:
            return "skipped"
        return "failed"
    recipient = _recipient(intervention, facts)
    blocked = _block_at_send_time(intervention, recipient, facts)
    if blocked:
        try:
            if _fall_back(intervention, blocked):
                return "fell_back"
            transition(intervention, Status.SUPPRESSED, f"suppressed at send time: {blocked}")
        except IllegalTransition:
            return "skipped"
        return "suppressed"
    assert recipient is not None
    transport = get_transport(intervention.channel)
    message = _message_for(intervention, recipient)
    if intervention.channel == "websocket":
        return _publish_then_record(intervention, transport, message)
    return _claim_and_send(intervention, transport, message)


def _claim_and_send(
    intervention: Intervention, transport: Transport, message: OutboundMessage
) -> str:
    """Claim (queued → sending, plus a started attempt row), commit, call, record.

    The claim is committed before the provider call, so ``sending`` means "the call may
    have happened" and nothing else: that is what the sweeper relies on.
    """
    try:
        with transaction.atomic():
            transition(
                intervention,
                Status.SENDING,
                "claimed for sending",
                attempts=intervention.attempts + 1,
            )
            attempt = DeliveryAttempt.objects.create(
                intervention=intervention, channel=intervention.channel, transport=transport.name
            )
    except IllegalTransition:
        return "skipped"  # another worker claimed it first
    started = monotonic_time.perf_counter()
    try:
        provider_message_id = transport.send(message)
    except TransportError as exc:
        return _handle_transport_error(intervention, attempt, exc)
    finally:
        metrics.SEND_SECONDS.labels(channel=intervention.channel).observe(
            monotonic_time.perf_counter() - started
        )
    finished = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            outcome=DeliveryAttempt.Outcome.SUCCEEDED,
            provider_message_id=provider_message_id[:200],
            finished_at=finished,
        )
        transition(
            intervention,
            Status.SENT,
            f"sent via {transport.name}",
            provider_message_id=provider_message_id[:200],
            sent_at=finished,
        )
    metrics.DELIVERY_ATTEMPTS.labels(channel=intervention.channel, outcome="succeeded").inc()
    return "sent"


def _publish_then_record(
    intervention: Intervention, transport: Transport, message: OutboundMessage
) -> str:
    """WebSocket: publish, then record queued → sent and the attempt in one transaction.

    No claim step before the send: a repeated publish is harmless (clients de-duplicate
    by intervention id), so the row does not need to be locked against a second sender,
    and the hot path saves a transaction. If the process dies between the publish and
    the record, the row is still queued and the sweeper publishes it again.
    """
    started_at = timezone.now()
    started = monotonic_time.perf_counter()
    try:
        message_id = transport.send(message)
    except TransportError as exc:
        DeliveryAttempt.objects.create(
            intervention=intervention,
            channel=intervention.channel,
            transport=transport.name,
            outcome=DeliveryAttempt.Outcome.PERMANENT_ERROR
            if exc.permanent
            else DeliveryAttempt.Outcome.TRANSIENT_ERROR,
            error=f"{exc.reason}: {exc}"[:500],
            started_at=started_at,
            finished_at=timezone.now(),
        )
        metrics.DELIVERY_FAILURES.labels(channel=intervention.channel, reason=exc.reason).inc()
        if not exc.permanent:
            raise TransientDeliveryError(str(exc), retry_after=exc.retry_after) from exc
        reason = f"websocket failed permanently: {exc.reason}: {exc}"
        if _fall_back(intervention, reason):
            return "fell_back"
        transition(intervention, Status.FAILED, f"failed: {reason}")
        return "failed"
    finally:
        metrics.SEND_SECONDS.labels(channel=intervention.channel).observe(
            monotonic_time.perf_counter() - started
        )
    finished = timezone.now()
    try:
        with transaction.atomic():
            transition(
                intervention,
                Status.SENT,
                f"published via {transport.name}",
                attempts=intervention.attempts + 1,
                provider_message_id=message_id[:200],
                sent_at=finished,
            )
            DeliveryAttempt.objects.create(
                intervention=intervention,
                channel=intervention.channel,
                transport=transport.name,
                outcome=DeliveryAttempt.Outcome.SUCCEEDED,
                provider_message_id=message_id[:200],
                started_at=started_at,
                finished_at=finished,
            )
    except IllegalTransition:
        return "skipped"  # cancelled, or another publisher recorded it first
    metrics.DELIVERY_ATTEMPTS.labels(channel=intervention.channel, outcome="succeeded").inc()
    return "sent"


def _handle_transport_error(
    intervention: Intervention, attempt: DeliveryAttempt, exc: TransportError
) -> str:
    outcome = (
        DeliveryAttempt.Outcome.PERMANENT_ERROR
        if exc.permanent
        else DeliveryAttempt.Outcome.TRANSIENT_ERROR
    )
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(
        outcome=outcome, error=f"{exc.reason}: {exc}"[:500], finished_at=timezone.now()
    )
    metrics.DELIVERY_ATTEMPTS.labels(channel=intervention.channel, outcome=outcome).inc()
    metrics.DELIVERY_FAILURES.labels(channel=intervention.channel, reason=exc.reason).inc()
    logger.warning(
        "delivery_attempt_failed",
        intervention_id=str(intervention.pk),
        channel=intervention.channel,
        permanent=exc.permanent,
        reason=exc.reason,
        error=str(exc),
    )
    if exc.suppress_address:
        address = address_for(intervention.shopper, intervention.channel)
        if isinstance(address, str):
            Suppression.objects.get_or_create(
                store_id=intervention.store_id,
                channel=intervention.channel,
                address=address,
                defaults={"reason": exc.reason},
            )
    if exc.permanent:
        reason = f"{intervention.channel} failed permanently: {exc.reason}: {exc}"
        if _fall_back(intervention, reason):
            return "fell_back"
        transition(intervention, Status.FAILED, f"failed: {reason}")
        return "failed"
    transition(intervention, Status.QUEUED, f"transient failure, will retry: {exc.reason}: {exc}")
    raise TransientDeliveryError(str(exc), retry_after=exc.retry_after)


def _fall_back(intervention: Intervention, reason: str = "") -> bool:
    """Move to the next usable channel of the chain; False when none is left."""
    shopper = intervention.shopper
    facts = shopper_facts(shopper)
    remaining = list(intervention.fallback_channels or [])
    skipped: list[str] = []
    while remaining:
        channel = remaining.pop(0)
        if channel in facts.opted_out_channels or channel in facts.suppressed_channels:
            continue
        if channel not in facts.reachable_channels:
            continue
        try:
            _, content = _render(
                intervention.store,
                shopper,
                intervention.cart,
                channel,
                intervention.template_key,
                intervention.personalization,
                intervention.decision.get("discount"),
                intervention.pk,
            )
        except RenderError as exc:
            # A template written for email only has nothing to say by SMS: try the next.
            skipped.append(f"{channel} skipped: {exc}")
            continue
        note = "; ".join([*filter(None, [reason]), *skipped, f"falling back to {channel}"])
        transition(
            intervention,
            Status.QUEUED,
            note,
            channel=channel,
            fallback_channels=remaining,
            content=content,
            queued_at=timezone.now(),
        )
        metrics.FALLBACKS.labels(to_channel=channel).inc()
        transaction.on_commit(partial(dispatch, intervention.pk, channel))
        return True
    return False


def do_give_up(intervention_id: Any, reason: str) -> None:
    """Retries are exhausted: fail, or fall back to the next channel."""
    intervention = Intervention.objects.select_related("shopper", "cart", "store").get(
        pk=intervention_id
    )
    if intervention.status != Status.QUEUED:
        return
    note = f"{intervention.channel} gave up after {intervention.attempts} attempts: {reason}"
    if not _fall_back(intervention, note):
        transition(intervention, Status.FAILED, f"failed: {note}")


def retry_delay(retries: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, or the provider's own delay when it gave one."""
    if retry_after:
        return min(retry_after, settings.DELIVERY_RETRY_MAX_DELAY)
    ceiling = min(
        settings.DELIVERY_RETRY_BASE_DELAY * 2**retries, settings.DELIVERY_RETRY_MAX_DELAY
    )
    return random.uniform(ceiling / 2, ceiling)


# --- Periodic work --------------------------------------------------------


def do_release_due(limit: int = 500) -> int:
    """Scheduled interventions whose time has come go to their queue.

    A database scan instead of Celery ETAs: with Redis as broker, a task whose ETA lies
    beyond the visibility timeout is redelivered (and would run twice), and ETAs live
    in worker memory. The row's ``send_at`` is the schedule; nothing is lost on restart.
    """
    now = timezone.now()
    released = 0
    due = list(
        Intervention.objects.filter(status=Status.SCHEDULED, send_at__lte=now)
        .order_by("send_at")
        .values_list("pk", flat=True)[:limit]
    )
    for intervention in Intervention.objects.filter(pk__in=due):
        try:
            with transaction.atomic():
                transition(intervention, Status.QUEUED, "due: released by scheduler", queued_at=now)
                transaction.on_commit(partial(dispatch, intervention.pk, intervention.channel))
            released += 1
        except IllegalTransition:
            continue
    return released


def do_sweep_stuck(
    queued_after: float | None = None, sending_after: float | None = None
) -> dict[str, int]:
    """Find work a lost broker message or a dead worker left behind.

    - queued for too long: the task was lost (broker restart, enqueue failure): dispatch again.
      A duplicate task is harmless, the claim lets only one send. WebSocket rows are
      picked up much sooner (``SWEEP_WEBSOCKET_QUEUED_AFTER_SECONDS``): an inline publish
      that failed while Redis was down has no task waiting to retry it, the shopper is on
      the site now, and a repeated publish is harmless.
    - sending for too long: the worker died during the provider call (a row is only in
      ``sending`` between its own claim and the call's result, so at most one per worker
      thread), and the provider may or may not have the message. WebSocket is
      re-published (clients de-duplicate by intervention id); other channels are not
      re-sent, since a second email or SMS is worse than the rare lost one: they become
      ``unconfirmed`` and the provider's delivery webhook, if it comes, settles them.
    """
    now = timezone.now()
    queued_after = settings.SWEEP_QUEUED_AFTER_SECONDS if queued_after is None else queued_after
    sending_after = settings.SWEEP_SENDING_AFTER_SECONDS if sending_after is None else sending_after
    counts = {"redispatched": 0, "republished": 0, "unconfirmed": 0}
    websocket_after = settings.SWEEP_WEBSOCKET_QUEUED_AFTER_SECONDS
    stale_queued = (
        Intervention.objects.filter(status=Status.QUEUED)
        .filter(
            Q(updated_at__lt=now - timedelta(seconds=queued_after))
            | Q(channel="websocket", updated_at__lt=now - timedelta(seconds=websocket_after))
        )
        .values_list("pk", "channel")[:1000]
    )
    stale = list(stale_queued)
    if stale:
        # Touch the rows so the next sweep waits another full timeout for this dispatch.
        Intervention.objects.filter(pk__in=[pk for pk, _ in stale], status=Status.QUEUED).update(
            updated_at=now
        )
        # In chunks, as a batch is: after a crash there can be thousands of them.
        dispatch_many(stale)
        counts["redispatched"] = len(stale)
    for intervention in Intervention.objects.filter(
        status=Status.SENDING, updated_at__lt=now - timedelta(seconds=sending_after)
    )[:1000]:
        try:
            if intervention.channel == "websocket":
                transition(
                    intervention, Status.QUEUED, "sweeper: publish interrupted, republishing"
                )
                dispatch(intervention.pk, intervention.channel)
                counts["republished"] += 1
            else:
                with transaction.atomic():
                    transition(
                        intervention,
                        Status.UNCONFIRMED,
                        "unconfirmed: worker lost during the provider call; "
                        "not resent to avoid a duplicate",
                        sent_at=intervention.updated_at,  # the claim: when it may have gone
                    )
                    DeliveryAttempt.objects.filter(
                        intervention=intervention, outcome=DeliveryAttempt.Outcome.STARTED
                    ).update(outcome=DeliveryAttempt.Outcome.WORKER_LOST, finished_at=now)
                counts["unconfirmed"] += 1
        except IllegalTransition:
            continue
    if any(counts.values()):
        metrics.SWEPT.labels(kind="redispatched").inc(counts["redispatched"])
        metrics.SWEPT.labels(kind="republished").inc(counts["republished"])
        metrics.SWEPT.labels(kind="unconfirmed").inc(counts["unconfirmed"])
        logger.warning("sweeper_recovered_interventions", **counts)
    return counts


def access_intervention(store: Store, intervention_id: Any) -> Intervention:
    """The store's intervention, or Intervention.DoesNotExist (a 404, never another store's)."""
    return Intervention.objects.select_related("shopper", "cart").get(
        store=store, pk=intervention_id
    )
