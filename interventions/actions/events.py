"""Cart events from the pipeline: fold them into the cart, decide, or convert."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.audiences import facts_for, matches
from campaigns.budgets import BudgetLedger
from campaigns.experiments.assignment import HOLDOUT, Arm, assign
from campaigns.models import Campaign, CampaignKind, CampaignStatus, record_exposure
from interventions import decisions, metrics
from interventions.actions.deciding import Outcome, create_decided
from interventions.actions.facts import arm_request, campaign_rule, cart_facts, shopper_facts
from interventions.actions.idempotency import check_same_request, request_fingerprint
from interventions.models import (
    UNSENT_STATUSES,
    Cart,
    CartEvent,
    EventType,
    IllegalTransition,
    Intervention,
    Status,
    transition,
)
from notifications.actions import do_register_device
from stores.actions import do_upsert_shopper
from stores.models import Shopper, Store
from tracking.actions import Order, do_record_conversion
from tracking.models import Conversion

logger = structlog.get_logger(__name__)


def json_safe(payload: dict[str, Any]) -> dict[str, Any]:
    """Decimals and datetimes as strings, for JSON columns."""
    safe: dict[str, Any] = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    return safe


def register_push_tokens(store: Store, shopper: Shopper, profile: dict[str, Any] | None) -> None:
    for token in (profile or {}).get("push_tokens") or ():
        do_register_device(store, shopper.external_id, token)


PREDICTION_FIELDS = (
    "probability",
    "confidence",
    "recommended_action",
    "recommended_discount",
    "model_version",
)


def fold_cart(
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


def check_accept_event(
    store: Store,
    event: dict[str, Any],
    idempotency_key: str,
    answer: Callable[[EventResult], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """POST /api/v1/events with an optional Idempotency-Key: (the answer, created).

    ``answer`` renders the response body; with a key it is stored on the event in the
    same transaction, so a retry (the pipeline that sends events retries) gets exactly
    the first answer and creates nothing; the same key with another body is a conflict.
    """
    if not idempotency_key:
        return answer(do_accept_event(store, event)), True
    fingerprint = request_fingerprint(event)
    earlier = CartEvent.objects.filter(store=store, idempotency_key=idempotency_key).first()
    if earlier is not None:
        return _replayed(earlier, fingerprint), False
    try:
        with transaction.atomic():
            result = do_accept_event(store, event, idempotency_key, fingerprint)
            body = answer(result)
            CartEvent.objects.filter(pk=result.event.pk).update(answer=body)
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its result.
        earlier = CartEvent.objects.filter(store=store, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return _replayed(earlier, fingerprint), False
    return body, True


def _replayed(earlier: CartEvent, fingerprint: str) -> dict[str, Any]:
    check_same_request(earlier.request_fingerprint, fingerprint)
    return earlier.answer or {}


@transaction.atomic
def do_accept_event(
    store: Store, event: dict[str, Any], idempotency_key: str = "", fingerprint: str = ""
) -> EventResult:
    """Store a validated event (the body of POST /api/v1/events) and act on it."""
    # Locked: serialises decisions for one shopper, so two simultaneous events cannot
    # both slip under the frequency cap.
    shopper = do_upsert_shopper(store, event["user_id"], event.get("user"), lock=True)
    register_push_tokens(store, shopper, event.get("user"))
    cart = fold_cart(store, shopper, event["cart_id"], event.get("cart"), event.get("prediction"))
    occurred_at = event.get("occurred_at") or timezone.now()
    cart_event = CartEvent.objects.create(
        store=store,
        type=event["type"],
        cart=cart,
        user_id=event["user_id"],
        payload=json_safe(
            {k: v for k, v in event.items() if k not in ("type", "cart_id", "user_id")}
        ),
        occurred_at=occurred_at,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
    )
    metrics.EVENTS_ACCEPTED.labels(type=event["type"]).inc()
    result = EventResult(cart_event, [], [])

    if event["type"] == EventType.CHECKOUT_COMPLETED:
        cancelled = do_convert_cart(
            cart,
            occurred_at,
            (event.get("cart") or {}).get("value"),
            order_id=event.get("order_id", ""),
            currency=(event.get("cart") or {}).get("currency", ""),
        )
        result.reasons.append(f"checkout completed: {cancelled} pending intervention(s) cancelled")
        return result
    if event["type"] == EventType.CART_ABANDONED and cart.abandoned_at is None:
        cart.abandoned_at = occurred_at
        cart.save(update_fields=["abandoned_at", "updated_at"])
    triggers = EVENT_TRIGGERS.get(event["type"])
    if not triggers:
        result.reasons.append(f"{event['type']} updates the cart; it triggers nothing")
        return result

    now = timezone.now()
    campaigns = {
        c.pk: c
        for c in Campaign.objects.filter(
            store=store, status=CampaignStatus.RUNNING, kind=CampaignKind.TRIGGERED
        ).exclude(ends_at__lte=now)
    }
    outside = [
        c
        for c in campaigns.values()
        if c.audience and not matches(c.audience, facts_for(cart, shopper, c.audience, now), now)
    ]
    result.reasons.extend(f"campaign '{c.name}': cart not in its audience" for c in outside)
    for campaign in outside:
        del campaigns[campaign.pk]
    facts = shopper_facts(shopper)
    rule, reasons = decisions.choose_campaign(
        [campaign_rule(c) for c in campaigns.values()], triggers, cart_facts(cart), facts
    )
    result.reasons.extend(reasons)
    if rule is None:
        logger.info("event_without_campaign", store_id=str(store.pk), reasons=reasons)
        return result
    campaign = campaigns[rule.id]
    arm = experiment_arm(campaign, shopper)
    request, discount = arm_request(campaign, arm)
    # A budgeted campaign's spend rows are locked at the charge, until this event commits;
    # a campaign without budgets takes no lock (campaigns/budgets.py).
    ledger = BudgetLedger(campaign, now)
    intervention = create_decided(
        store=store,
        shopper=shopper,
        cart=cart,
        request=request,
        origin="campaign",
        facts=facts,
        campaign=campaign,
        variant=arm,
        discount=discount,
        suppressed_by="holdout" if arm == HOLDOUT else "",
        extra_reasons=[*reasons, *([f"campaign '{campaign.name}' variant: {arm}"] if arm else [])],
        charge=ledger.charge,
    )
    ledger.save()
    result.outcomes.append(Outcome(intervention, True, list(intervention.decision["reasons"])))
    return result


def experiment_arm(campaign: Campaign, shopper: Shopper) -> str:
    """The shopper's arm in the campaign's experiment ("" when it has none): the recorded
    exposure if there is one, else the hash's pick, recorded now (docs/campaigns.md)."""
    if not campaign.has_experiment:
        return ""
    # The live split: the variants' weights, or the bandit's, or a promoted winner's. An arm
    # at 0 gets no new shoppers; those already exposed keep their arm (record_exposure).
    picked = assign(
        str(campaign.pk),
        shopper.external_id,
        [Arm(key, weight) for key, weight in campaign.arm_weights().items() if weight > 0],
        campaign.holdout_percent,
    )
    return record_exposure(campaign, shopper, picked).arm


def do_convert_cart(
    cart: Cart, at: datetime, value: Any = None, *, order_id: str = "", currency: str = ""
) -> int:
    """Checkout: the cart converted. Cancel what has not gone out; record the order
    (``cart:<cart id>`` when the event names none) and attribute it (docs/analytics.md)."""
    cancelled = close_cart(cart, at, value)
    order = Order(
        order_id=order_id or f"cart:{cart.external_id}",
        user_id=cart.shopper.external_id if cart.shopper else "",
        occurred_at=at,
        value=cart.conversion_value,
        currency=currency or cart.currency,
        cart_id=cart.external_id,
    )
    # No body kept: a repeated event, or the same order reported through the API later,
    # is a repeat and the first report stands.
    do_record_conversion(cart.store, order, shopper=cart.shopper, cart=cart, source="checkout")
    return cancelled


def close_cart(cart: Cart, at: datetime, value: Any = None) -> int:
    """Mark the cart converted and cancel its unsent interventions: how many."""
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
    return cancelled


@transaction.atomic
def check_record_conversion(store: Store, body: dict[str, Any]) -> tuple[Conversion, bool]:
    """An order from POST /api/v1/conversions: (conversion, created). Its cart, if named
    and known, converts as at checkout; a repeat returns the first, another body for
    the same order id raises ``ConversionConflict``."""
    shopper = do_upsert_shopper(store, body["user_id"], None, lock=True)
    occurred_at = body.get("occurred_at") or timezone.now()
    cart_id = body.get("cart_id") or ""
    cart = Cart.objects.filter(store=store, external_id=cart_id).first() if cart_id else None
    order = Order(
        order_id=body["order_id"],
        user_id=body["user_id"],
        occurred_at=occurred_at,
        value=body["value"],
        currency=body["currency"],
        cart_id=cart_id,
        discount=body.get("discount"),
        given=tuple(sorted(body.items())),
    )
    conversion, created = do_record_conversion(
        store, order, shopper=shopper, cart=cart, source="api"
    )
    if created and cart is not None:
        close_cart(cart, occurred_at, body["value"])
    return conversion, created
