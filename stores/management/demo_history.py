"""Four weeks of believable history for the demo store, so the admin dashboard tells a
story the first time someone opens it (docs/analytics.md, "Demo history").

What is written, and how it keeps the models' invariants:
- campaigns through ``campaigns.actions`` (created, then launched four weeks ago);
- carts, interventions, their history rows and delivery attempts as bulk inserts: every
  history row is a move ``ALLOWED_SOURCES`` permits, the last one ends at the row's status,
  and ``sent_at`` / ``delivered_at`` are set exactly for the statuses that have them
  (``tests/stores/test_seed_demo.py`` walks every row to check);
- delivered, displayed, opened and clicked rows through ``tracking.actions``'s bulk form,
  a few repeated opens through the single form (so they are flagged duplicates);
- orders through ``tracking.actions.do_record_conversion``: the real last-touch attribution
  decides which send earns each one;
- bounces, refused recipients and STOP replies through ``notifications.actions``.

Deterministic: a fixed random seed and times relative to today (UTC). A history seeded
today is left alone, so a second ``seed_demo`` changes nothing; one seeded on an earlier day
is deleted and rebuilt up to today. Seeded rows are told apart by their ids: idempotency
keys ``history:<day>:<n>``, carts ``history-cart-…``, orders ``history-order-…``,
shoppers ``history-shopper-…``.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns.actions import do_create_campaign, do_transition_campaign
from campaigns.models import Campaign, Exposure
from interventions.models import (
    ALLOWED_SOURCES,
    Cart,
    DeliveryAttempt,
    Intervention,
    InterventionEvent,
    Status,
)
from notifications.actions import do_suppress_address
from notifications.models import Suppression
from stores.models import Shopper, Store
from tracking.actions import Order, do_record_conversion, do_record_tracking_event
from tracking.actions import do_record_tracking_events as record_tracking_rows
from tracking.models import Conversion

DAYS = 28
SHOPPERS = 420
SEED = 20260115
ACTOR = "demo seed"
CURRENCY = "EUR"
KEY_PREFIX = "history:"

FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dev", "Emma", "Farid", "Greta", "Hugo", "Inès", "Jon")


@dataclass(frozen=True)
class CampaignPlan:
    name: str
    channel: str
    share: float  # of the day's interventions
    delay_minutes: int
    discount_percent: Decimal | None = None
    variants: tuple[dict[str, Any], ...] = ()


CAMPAIGNS = (
    CampaignPlan(
        "Cart reminder email",
        "email",
        0.38,
        60,
        variants=(
            {"key": "plain", "weight": 50.0},
            {"key": "ten_off", "weight": 50.0, "discount_percent": "10"},
        ),
    ),
    CampaignPlan("On-site nudge", "websocket", 0.32, 0),
    CampaignPlan("Last call SMS", "sms", 0.14, 180, discount_percent=Decimal("5")),
    CampaignPlan("App reminder push", "push", 0.16, 30),
)


@dataclass(frozen=True)
class ChannelOdds:
    """Per send; clicks and conversions over delivered ones."""

    delivered: float
    opened: float
    clicked: float
    converted: float
    refused: float  # permanent error at send
    transient: float  # a retried error before the send went through
    bounced: float = 0.0  # reported failed after the send
    transport: str = ""
    refusal: str = ""
    delivered_source: str = ""
    opened_source: str = ""
    clicked_source: str = "link"


ODDS = {
    "websocket": ChannelOdds(
        0.94, 0.90, 0.17, 0.085, 0.01, 0.0, transport="websocket",
        refusal="room_unavailable: no live connection for this shopper",
        delivered_source="websocket", opened_source="websocket", clicked_source="websocket",
    ),
    "email": ChannelOdds(
        0.96, 0.47, 0.12, 0.06, 0.025, 0.06, bounced=0.03, transport="anymail",
        refusal="recipient_refused: 406 You tried to send to a recipient that has been marked as inactive",
        delivered_source="email_webhook", opened_source="pixel",
    ),
    "sms": ChannelOdds(
        0.97, 0.0, 0.10, 0.07, 0.035, 0.03, transport="twilio",
        refusal="invalid_number: Twilio 400 code 21211: Invalid 'To' Phone Number",
        delivered_source="sms_webhook",
    ),
    "push": ChannelOdds(
        0.86, 0.24, 0.07, 0.04, 0.05, 0.02, transport="fcm",
        refusal="no_live_device: every device token is dead",
        delivered_source="push", opened_source="api",
    ),
}  # fmt: skip

SUPPRESSION_REASONS = (
    (0.50, "probability {p:.2f} below threshold 0.30"),
    (0.22, "frequency cap 1/hour, last sent {hhmm}"),
    (0.16, "cart already converted"),
    (0.12, "no usable channel"),
)
# Not-yet-sent reminders whose shopper checked out first.
CANCEL_SHARE = 0.05
# Abandoned carts no campaign answered (under the minimum value, say).
UNMATCHED_SHARE = 0.08
SUPPRESS_SHARE = 0.17
STOP_SHARE = 0.03
ORGANIC_ORDERS_PER_DAY = 3


@dataclass
class Seeded:
    """What one run wrote, for the command's summary line."""

    interventions: int = 0
    orders: int = 0
    suppressions: int = 0
    skipped: bool = False


@dataclass
class _Draft:
    """One intervention being written, with its history and its tracking."""

    intervention: Intervention
    history: list[InterventionEvent] = field(default_factory=list)
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    tracking: list[tuple[str, str, datetime]] = field(default_factory=list)

    def move(self, target: str, at: datetime, reason: str = "") -> None:
        current = self.intervention.status
        if self.history:
            assert current in ALLOWED_SOURCES[target], f"{current} → {target}"
        self.history.append(
            InterventionEvent(
                intervention=self.intervention,
                from_status=current if self.history else "",
                to_status=target,
                reason=reason[:500],
                at=at,
            )
        )
        self.intervention.status = target
        self.intervention.status_reason = reason[:500]


def do_seed_demo_history(store: Store, now: datetime | None = None) -> Seeded:
    """Write the demo store's history up to ``now``, unless today's is there already."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    if Intervention.objects.filter(
        store=store, idempotency_key__startswith=f"{KEY_PREFIX}{today.isoformat()}:"
    ).exists():
        return Seeded(skipped=True)
    with transaction.atomic():
        _delete_history(store)
        return _write_history(store, today, now)


def _delete_history(store: Store) -> None:
    Conversion.objects.filter(store=store, order_id__startswith="history-order-").delete()
    Intervention.objects.filter(store=store, idempotency_key__startswith=KEY_PREFIX).delete()
    Cart.objects.filter(store=store, external_id__startswith="history-cart-").delete()
    shoppers = Shopper.objects.filter(store=store, external_id__startswith="history-shopper-")
    addresses = [a for pair in shoppers.values_list("email", "phone") for a in pair if a]
    Suppression.objects.filter(store=store, address__in=addresses).delete()
    Exposure.objects.filter(campaign__store=store, shopper__in=shoppers).delete()


def _write_history(store: Store, today: date, now: datetime) -> Seeded:
    rng = random.Random(SEED)
    first_day = today - timedelta(days=DAYS)
    campaigns = _campaigns(store, datetime.combine(first_day, time(7), UTC))
    shoppers = _shoppers(store)
    carts: list[Cart] = []
    drafts: list[_Draft] = []
    blocked: dict[
        tuple[int, str], tuple[datetime, str]
    ] = {}  # (shopper, channel) → (since, reason)
    for offset in range(DAYS + 1):
        day = first_day + timedelta(days=offset)
        for n in range(_carts_on(day, offset, rng)):
            abandoned = _moment(day, rng)
            if abandoned > now - timedelta(hours=1):
                continue
            shopper = rng.choice(shoppers)
            cart = Cart(
                store=store,
                external_id=f"history-cart-{day:%m%d}-{n:03d}",
                shopper=shopper,
                value=Decimal(rng.randrange(1800, 26000)) / 100,
                currency=CURRENCY,
                items=[{"sku": f"SKU-{rng.randrange(100, 999)}", "quantity": rng.randint(1, 3)}],
                abandoned_at=abandoned,
            )
            if rng.random() < UNMATCHED_SHARE:
                carts.append(cart)  # no campaign's conditions matched: nothing decided
                continue
            plan = _pick_campaign(rng)
            draft = _decide(store, cart, shopper, plan, campaigns[plan.name], rng, now, blocked)
            if draft is None:
                continue
            draft.intervention.idempotency_key = f"{KEY_PREFIX}{today.isoformat()}:{len(drafts)}"
            carts.append(cart)
            drafts.append(draft)

    # Saved first: bulk_create takes each intervention's cart id from its now saved cart.
    Cart.objects.bulk_create(carts, batch_size=500)
    _insert(drafts)
    _record_exposures(drafts)
    _record_tracking(drafts, rng)
    suppressions = _record_suppressions(store, drafts, blocked)
    orders = _record_orders(store, drafts, shoppers, first_day, now, rng)
    return Seeded(interventions=len(drafts), orders=orders, suppressions=suppressions)


def _campaigns(store: Store, launched: datetime) -> dict[str, Campaign]:
    found = {c.name: c for c in Campaign.objects.filter(store=store)}
    for plan in CAMPAIGNS:
        if plan.name in found:
            continue
        campaign = do_create_campaign(
            Campaign(
                store=store,
                name=plan.name,
                trigger="cart_abandoned",
                channel=plan.channel,
                delay_minutes=plan.delay_minutes,
                discount_percent=plan.discount_percent,
                variants=list(plan.variants),
            ),
            actor=ACTOR,
        )
        found[plan.name] = do_transition_campaign(campaign, "launch", actor=ACTOR, now=launched)
    return found


def _shoppers(store: Store) -> list[Shopper]:
    Shopper.objects.bulk_create(
        [
            Shopper(
                store=store,
                external_id=f"history-shopper-{n:03d}",
                first_name=FIRST_NAMES[n % len(FIRST_NAMES)],
                email=f"shopper{n:03d}@example.com",
                phone=f"+3361234{n:04d}",
                timezone="UTC",
            )
            for n in range(SHOPPERS)
        ],
        ignore_conflicts=True,
    )
    return list(Shopper.objects.filter(store=store, external_id__startswith="history-shopper-"))


def _carts_on(day: date, offset: int, rng: random.Random) -> int:
    """About 40 a day, growing, busier at weekends."""
    weekend = 1.3 if day.weekday() >= 5 else 1.0
    return int((34 + offset * 0.8) * weekend * rng.uniform(0.85, 1.15))


def _moment(day: date, rng: random.Random) -> datetime:
    # Shoppers abandon carts in the day and the evening, rarely at night.
    hour = rng.choices(range(24), weights=[1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6] + [7] * 6 + [9, 10, 10, 8, 5, 2])[0]  # fmt: skip
    return datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), UTC)


def _pick_campaign(rng: random.Random) -> CampaignPlan:
    return rng.choices(CAMPAIGNS, weights=[plan.share for plan in CAMPAIGNS])[0]


def _decide(
    store: Store,
    cart: Cart,
    shopper: Shopper,
    plan: CampaignPlan,
    campaign: Campaign,
    rng: random.Random,
    now: datetime,
    blocked: dict[tuple[int, str], tuple[datetime, str]],
) -> _Draft | None:
    """The intervention the engine would have decided for this cart, and what followed."""
    assert cart.abandoned_at is not None
    created = cart.abandoned_at + timedelta(minutes=rng.randint(2, 15))
    variant = _arm(campaign, shopper)
    discount = (campaign.variant(variant) or {}).get("discount_percent") or plan.discount_percent
    cart.probability = round(rng.uniform(0.3, 0.8), 2)
    reasons = [f"probability {cart.probability:.2f} meets threshold 0.30"]
    intervention = Intervention(
        store=store,
        shopper=shopper,
        cart=cart,
        campaign=campaign,
        variant=variant,
        origin="campaign",
        requested_channel=plan.channel,
        channel=plan.channel,
        template_key="",
        content=_content(plan.channel, discount),
        created_at=created,
    )
    draft = _Draft(intervention)
    since, _ = blocked.get((shopper.pk, plan.channel), (None, ""))
    unreachable = since is not None and since < created
    if unreachable or rng.random() < SUPPRESS_SHARE:
        why = "no usable channel" if unreachable else _suppression_reason(cart, rng, created)
        intervention.decision = _decision(False, None, created, [*reasons, f"suppressed: {why}"])
        draft.move(Status.SUPPRESSED, created, f"suppressed: {why}")
        return draft
    send_at = _send_time(created, plan)
    if send_at > now:
        return None  # would still be waiting: left out rather than left for the scheduler
    if discount:
        discount = {"percent": str(discount), "source": "campaign"}
    intervention.decision = {
        **_decision(True, plan.channel, send_at, reasons),
        "discount": discount or None,
    }
    intervention.send_at = send_at
    first = Status.SCHEDULED if send_at > created else Status.QUEUED
    draft.move(first, created, reasons[-1])
    if first == Status.SCHEDULED and rng.random() < CANCEL_SHARE:
        draft.move(
            Status.CANCELLED, created + (send_at - created) / 2, "cancelled: checkout completed"
        )
        return draft
    _send(draft, plan.channel, send_at, rng, now, blocked)
    return draft


def _send(
    draft: _Draft,
    channel: str,
    send_at: datetime,
    rng: random.Random,
    now: datetime,
    blocked: dict[tuple[int, str], tuple[datetime, str]],
) -> None:
    intervention, odds = draft.intervention, ODDS[channel]
    if draft.intervention.status == Status.SCHEDULED:
        draft.move(Status.QUEUED, send_at, "due")
    intervention.queued_at = send_at
    started = send_at + timedelta(seconds=rng.uniform(0.2, 3))
    if rng.random() < odds.transient:
        reason = (
            "esp_503: Service Unavailable"
            if channel == "email"
            else f"{odds.transport}_unreachable: timed out"
        )
        draft.move(Status.SENDING, started)
        draft.attempts.append(
            _attempt(channel, odds, started, DeliveryAttempt.Outcome.TRANSIENT_ERROR, reason)
        )
        draft.move(Status.QUEUED, started, f"transient failure, will retry: {reason}")
        started += timedelta(seconds=rng.uniform(4, 90))
    if rng.random() < odds.refused:
        if channel != "websocket":
            draft.move(Status.SENDING, started)
        draft.attempts.append(
            _attempt(channel, odds, started, DeliveryAttempt.Outcome.PERMANENT_ERROR, odds.refusal)
        )
        draft.move(Status.FAILED, started, f"failed: {channel} failed permanently: {odds.refusal}")
        if channel in ("email", "sms"):
            blocked[(intervention.shopper.pk, channel)] = (started, odds.refusal.split(":")[0])
        return
    if channel != "websocket":
        draft.move(Status.SENDING, started)
    sent = started + timedelta(seconds=rng.uniform(0.1, 1.2))
    draft.attempts.append(
        _attempt(channel, odds, started, DeliveryAttempt.Outcome.SUCCEEDED, "", sent)
    )
    intervention.attempts = len(draft.attempts)
    intervention.sent_at = sent
    intervention.provider_message_id = f"history-{intervention.pk}"
    draft.move(Status.SENT, sent)
    _follow_up(draft, channel, odds, sent, rng, now, blocked)


def _follow_up(
    draft: _Draft,
    channel: str,
    odds: ChannelOdds,
    sent: datetime,
    rng: random.Random,
    now: datetime,
    blocked: dict[tuple[int, str], tuple[datetime, str]],
) -> None:
    """What the shopper and the provider reported after the send; never past ``now``."""
    intervention = draft.intervention
    if rng.random() < odds.bounced:
        at = sent + timedelta(minutes=rng.uniform(1, 20))
        if at < now:
            draft.tracking.append(("bounced", odds.delivered_source, at))
            draft.move(Status.FAILED, at, f"failed after send ({odds.delivered_source}): bounced")
            blocked[(intervention.shopper.pk, channel)] = (at, "bounced")
        return
    delivered = sent + timedelta(seconds=rng.uniform(1, 240))
    if rng.random() >= odds.delivered or delivered >= now:
        return
    intervention.delivered_at = delivered
    draft.move(Status.DELIVERED, delivered, "delivered")
    draft.tracking.append(("delivered", odds.delivered_source, delivered))
    seen = delivered + timedelta(minutes=rng.expovariate(1 / 45))
    if rng.random() < odds.opened and seen < now:
        draft.tracking.append(
            ("displayed" if channel == "websocket" else "opened", odds.opened_source, seen)
        )
    clicked = seen + timedelta(minutes=rng.expovariate(1 / 5))
    if rng.random() < odds.clicked and clicked < now:
        draft.tracking.append(("clicked", odds.clicked_source, clicked))
    if channel == "sms" and rng.random() < STOP_SHARE and seen < now:
        draft.tracking.append(("unsubscribed", "sms_webhook", seen))
        blocked[(intervention.shopper.pk, channel)] = (seen, "unsubscribed")


def _attempt(
    channel: str,
    odds: ChannelOdds,
    started: datetime,
    outcome: str,
    error: str,
    finished: datetime | None = None,
) -> DeliveryAttempt:
    return DeliveryAttempt(
        channel=channel,
        transport=odds.transport,
        outcome=outcome,
        error=error[:500],
        started_at=started,
        finished_at=finished or started + timedelta(milliseconds=300),
    )


def _send_time(created: datetime, plan: CampaignPlan) -> datetime:
    """The campaign's delay, then the store's quiet hours (21:00-08:00) for all but on-site."""
    send_at = created + timedelta(minutes=plan.delay_minutes)
    if plan.channel == "websocket":
        return created
    if send_at.hour >= 21:
        send_at = datetime.combine(send_at.date() + timedelta(days=1), time(8), UTC)
    elif send_at.hour < 8:
        send_at = datetime.combine(send_at.date(), time(8), UTC)
    return send_at


def _suppression_reason(cart: Cart, rng: random.Random, at: datetime) -> str:
    template = rng.choices(
        [r for _, r in SUPPRESSION_REASONS], [w for w, _ in SUPPRESSION_REASONS]
    )[0]
    if "{p" in template:
        cart.probability = round(rng.uniform(0.02, 0.29), 2)
    last_sent = at - timedelta(minutes=rng.randint(5, 55))
    return template.format(p=cart.probability, hhmm=f"{last_sent:%H:%M}")


def _decision(
    intervene: bool, channel: str | None, send_at: datetime, reasons: list[str]
) -> dict[str, Any]:
    return {
        "intervene": intervene,
        "status": "queued" if intervene else "suppressed",
        "channel": channel,
        "fallback_channels": [],
        "send_at": send_at.isoformat(),
        "reasons": reasons,
    }


def _content(channel: str, discount: Any) -> dict[str, Any]:
    offer = f" Here is {discount}% off." if discount else ""
    body = f"Your cart is waiting.{offer}"
    if channel == "email":
        return {"email": {"subject": "You left something behind", "text": body}}
    return {channel: {"title": "Still thinking it over?", "body": body}}


def _arm(campaign: Campaign, shopper: Shopper) -> str:
    """The sticky arm: the shopper's number decides, as a hash would."""
    if not campaign.has_experiment:
        return ""
    return str(campaign.variants[shopper.pk % len(campaign.variants)]["key"])


def _insert(drafts: list[_Draft]) -> None:
    # auto_now_add overwrites created_at on insert; the decision time is put back after.
    decided = {draft.intervention.pk: draft.intervention.created_at for draft in drafts}
    rows = [draft.intervention for draft in drafts]
    Intervention.objects.bulk_create(rows, batch_size=500)
    for row in rows:
        row.created_at = decided[row.pk]
    Intervention.objects.bulk_update(rows, ["created_at"], batch_size=500)
    InterventionEvent.objects.bulk_create(
        [event for draft in drafts for event in draft.history], batch_size=1000
    )
    attempts = []
    for draft in drafts:
        for attempt in draft.attempts:
            attempt.intervention = draft.intervention
            attempts.append(attempt)
    DeliveryAttempt.objects.bulk_create(attempts, batch_size=1000)


def _record_exposures(drafts: list[_Draft]) -> None:
    first: dict[tuple[int, int], Exposure] = {}
    for draft in drafts:
        row = draft.intervention
        if row.variant and row.campaign is not None:
            key = (row.campaign.pk, row.shopper.pk)
            first.setdefault(
                key,
                Exposure(
                    campaign=row.campaign,
                    shopper=row.shopper,
                    arm=row.variant,
                    exposed_at=row.created_at,
                ),
            )
    Exposure.objects.bulk_create(list(first.values()), ignore_conflicts=True)


def _record_tracking(drafts: list[_Draft], rng: random.Random) -> None:
    record_tracking_rows(
        [
            (draft.intervention, kind, source, at)
            for draft in drafts
            for kind, source, at in draft.tracking
        ]
    )
    # Mail scanners fetch the pixel again within seconds: recorded, flagged, not counted.
    opened = [
        (d.intervention, at) for d in drafts for kind, _, at in d.tracking if kind == "opened"
    ]
    for intervention, at in rng.sample(opened, min(25, len(opened))):
        do_record_tracking_event(
            intervention, "opened", "pixel", occurred_at=at + timedelta(seconds=5)
        )


def _record_suppressions(
    store: Store, drafts: list[_Draft], blocked: dict[tuple[int, str], tuple[datetime, str]]
) -> int:
    shoppers = {d.intervention.shopper.pk: d.intervention.shopper for d in drafts}
    written = 0
    for (shopper_pk, channel), (since, reason) in blocked.items():
        shopper = shoppers[shopper_pk]
        address = shopper.email if channel == "email" else shopper.phone
        written += do_suppress_address(store.pk, channel, address, reason)
        # The row says when the address went bad, not when the demo was seeded.
        Suppression.objects.filter(store=store, channel=channel, address=address).update(
            created_at=since
        )
    return written


def _record_orders(
    store: Store,
    drafts: list[_Draft],
    shoppers: list[Shopper],
    first_day: date,
    now: datetime,
    rng: random.Random,
) -> int:
    """Orders after sends (likelier after a click, and with the variant's discount), and a
    few with no send before them; attribution is the engine's own."""
    orders: list[tuple[datetime, Shopper, Cart | None, Decimal]] = []
    for draft in drafts:
        row = draft.intervention
        if row.cart is None:
            continue
        if row.status == Status.CANCELLED:
            # Cancelled because the shopper checked out before the reminder went out.
            orders.append(
                (draft.history[-1].at, row.shopper, row.cart, row.cart.value or Decimal(50))
            )
            continue
        if row.sent_at is None or row.status == Status.FAILED:
            continue
        odds = ODDS[row.channel].converted
        odds *= 2.2 if any(kind == "clicked" for kind, _, _ in draft.tracking) else 0.6
        odds *= 1.4 if row.variant == "ten_off" else 1.0
        at = row.sent_at + timedelta(hours=min(rng.expovariate(1 / 10), 70))
        if rng.random() < odds and at < now:
            value = (row.cart.value or Decimal(50)) * Decimal(str(round(rng.uniform(0.9, 1.2), 2)))
            orders.append((at, row.shopper, row.cart, value.quantize(Decimal("0.01"))))
    for offset in range(DAYS):
        for _ in range(ORGANIC_ORDERS_PER_DAY):
            at = _moment(first_day + timedelta(days=offset), rng)
            orders.append(
                (at, rng.choice(shoppers), None, Decimal(rng.randrange(2000, 15000)) / 100)
            )
    orders.sort(key=lambda order: order[0])
    carts = []
    for n, (at, shopper, cart, value) in enumerate(orders):
        order = Order(
            order_id=f"history-order-{n:05d}",
            user_id=shopper.external_id,
            occurred_at=at,
            value=value,
            currency=CURRENCY,
            cart_id=cart.external_id if cart else "",
        )
        do_record_conversion(store, order, shopper=shopper, cart=cart, source="checkout")
        if cart is not None and cart.converted_at is None:
            cart.converted_at, cart.conversion_value = at, value
            carts.append(cart)
    Cart.objects.bulk_update(carts, ["converted_at", "conversion_value"], batch_size=500)
    return len(orders)
