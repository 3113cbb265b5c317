"""Cart events in bulk: accepted as a validated enqueue, decided by workers in chunks.

``POST /api/v1/events/batch`` stores the events and answers 202 without deciding: the
shoppers and carts are upserted with one statement per shape, the events inserted with
one multi-row INSERT marked ``decision_pending``, and one ``decide_events`` task per
chunk goes to the ``decisioning`` queue after the commit. The worker decides a chunk in
one transaction with the reads and writes batched (docs/decisions.md, "Events in bulk"):

- the chunk's pending events are claimed (``FOR UPDATE SKIP LOCKED``) and cleared in the
  transaction that stores their interventions, so an event is decided once: a repeated
  task finds nothing pending, and a crash rolls the whole chunk back for the sweeper;
- the shoppers are locked in one statement (what serialises one shopper's decisions
  with the single ``/events`` path, for the frequency caps), their recent history,
  devices and suppressions read with one query each, the store's campaigns once;
- each event is decided in order with the same functions as a single event
  (``choose_campaign``, ``build_decided``), its new intervention added to the shopper's
  history in memory, so a second event of the shopper in the chunk meets the cap;
- interventions, history and outbox rows are inserted with one statement each, and
  the queued ones dispatched in chunks per channel after the commit. A checkout in the
  chunk first stores what was decided before it, then converts the cart, so it cancels
  what an earlier abandonment started, as one event after another would.
"""

from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.audiences import facts_for, matches
from campaigns.budgets import BudgetLedger, has_budget
from campaigns.experiments.assignment import HOLDOUT
from campaigns.models import Campaign, CampaignKind, CampaignStatus
from interventions import decisions, metrics
from interventions.actions.deciding import announce, build_decided
from interventions.actions.events import (
    EVENT_TRIGGERS,
    do_convert_cart,
    experiment_arm,
    json_safe,
)
from interventions.actions.facts import arm_request, campaign_rule, cart_facts, facts_from
from interventions.actions.idempotency import check_same_request, request_fingerprint
from interventions.actions.intake import upsert_senders
from interventions.errors import InterventionConflict
from interventions.models import (
    Cart,
    CartEvent,
    EventType,
    Intervention,
    InterventionEvent,
    record_created,
)
from notifications.recipients import Reachability, reachability
from realtime.registry import connected_among
from stores.models import Shopper, Store

logger = structlog.get_logger(__name__)

# Events per decide_events task: a chunk is one transaction holding its shoppers' locks.
DECIDE_CHUNK = 100
# Only these need a worker: a cart_updated event is folded into the cart at intake.
DECIDED_TYPES = frozenset({*EVENT_TRIGGERS, EventType.CHECKOUT_COMPLETED})


@dataclass
class Accepted:
    """One accepted event: its id, and False when an Idempotency-Key repeat."""

    event_id: int
    created: bool = True


def check_accept_events(
    store: Store, events: list[dict[str, Any]], batch_key: str = ""
) -> list[Accepted | Exception]:
    """One result per validated event, in order; decisions follow on the worker.

    An event's ``idempotency_key`` (or, without one, the batch's Idempotency-Key and the
    item's index) makes a retried batch store nothing twice: a repeat gets the first
    event's id, the same key with another body is a conflict for that item alone.
    """
    keys = [
        event.pop("idempotency_key", "") or (f"{batch_key}:{index}" if batch_key else "")
        for index, event in enumerate(events)
    ]
    return _accept(store, events, keys, retry_on_conflict=True)


def _accept(
    store: Store, events: list[dict[str, Any]], keys: list[str], retry_on_conflict: bool
) -> list[Accepted | Exception]:
    fingerprints = [request_fingerprint(e) if k else "" for e, k in zip(events, keys, strict=True)]
    earlier: dict[str, int] = {}
    stored_fingerprints: dict[int, str] = {}
    for key, pk, stored in (
        CartEvent.objects.filter(store=store, idempotency_key__in=[k for k in keys if k])
        .order_by()
        .values_list("idempotency_key", "pk", "request_fingerprint")
    ):
        earlier[key], stored_fingerprints[pk] = pk, stored
    results: list[Accepted | Exception | None] = [None] * len(events)
    first_in_batch: dict[str, int] = {}
    repeats: dict[int, int] = {}
    todo: list[int] = []
    for index, key in enumerate(keys):
        if key and key in earlier:
            stored = stored_fingerprints[earlier[key]]
            results[index] = _replay(earlier[key], stored, fingerprints[index])
        elif key and key in first_in_batch:
            repeats[index] = first_in_batch[key]
        else:
            if key:
                first_in_batch[key] = index
            todo.append(index)
    try:
        with transaction.atomic():
            ids = _store_events(
                store,
                [events[i] for i in todo],
                [keys[i] for i in todo],
                [fingerprints[i] for i in todo],
            )
    except IntegrityError:
        # A concurrent request stored one of the keys first: read the keys again, once.
        if not retry_on_conflict:
            raise
        logger.warning("event_batch_key_conflict_retrying", store_id=str(store.pk))
        return _accept(store, events, keys, retry_on_conflict=False)
    for index, event_id in zip(todo, ids, strict=True):
        results[index] = Accepted(event_id)
    for index, original in repeats.items():
        first = results[original]
        results[index] = (
            _replay(first.event_id, fingerprints[original], fingerprints[index])
            if isinstance(first, Accepted)
            else first
        )
    return [r if r is not None else ValueError("not processed") for r in results]


def _replay(event_id: int, stored: str, fingerprint: str) -> Accepted | Exception:
    try:
        check_same_request(stored, fingerprint)
    except InterventionConflict as exc:
        return exc
    return Accepted(event_id, created=False)


def _store_events(
    store: Store, events: list[dict[str, Any]], keys: list[str], fingerprints: list[str]
) -> list[int]:
    if not events:
        return []
    now = timezone.now()
    _, carts = upsert_senders(store, events, now)
    rows = CartEvent.objects.bulk_create(
        [
            CartEvent(
                store=store,
                type=event["type"],
                cart=carts[event["cart_id"]],
                user_id=event["user_id"],
                payload=json_safe(
                    {k: v for k, v in event.items() if k not in ("type", "cart_id", "user_id")}
                ),
                occurred_at=event.get("occurred_at") or now,
                idempotency_key=key,
                request_fingerprint=fingerprint,
                decision_pending=event["type"] in DECIDED_TYPES,
            )
            for event, key, fingerprint in zip(events, keys, fingerprints, strict=True)
        ]
    )
    for type_, count in Counter(event["type"] for event in events).items():
        metrics.EVENTS_ACCEPTED.labels(type=type_).inc(count)
    pending = [row.pk for row in rows if row.decision_pending]
    if pending:
        transaction.on_commit(lambda: enqueue_decisions(pending))
    return [row.pk for row in rows]


def enqueue_decisions(event_ids: list[int]) -> None:
    """One ``decide_events`` task per chunk on the ``decisioning`` queue. A lost or failed
    enqueue leaves the events pending: the sweeper enqueues them again."""
    for start in range(0, len(event_ids), DECIDE_CHUNK):
        chunk = event_ids[start : start + DECIDE_CHUNK]
        try:
            current_app.signature(
                "interventions.tasks.decide_events", args=(chunk,), queue="decisioning"
            ).apply_async()
        except Exception as exc:
            metrics.ENQUEUE_FAILURES.labels(queue="decisioning").inc(len(chunk))
            logger.error(
                "enqueue_failed_sweeper_will_retry",
                queue="decisioning",
                count=len(chunk),
                error=str(exc),
            )


@transaction.atomic
def do_decide_events(event_ids: list[int]) -> Counter[str]:
    """Decide a chunk of pending events; safe to repeat (what is decided is not pending)."""
    outcomes: Counter[str] = Counter()
    events = list(
        CartEvent.objects.select_for_update(of=("self",), skip_locked=True)
        .select_related("store")
        .filter(pk__in=event_ids, decision_pending=True)
        # In arrival order, as the single path decides them (not by the caller's clocks).
        .order_by("id")
    )
    outcomes["skipped"] = len(event_ids) - len(events)
    by_store: dict[Any, list[CartEvent]] = defaultdict(list)
    for event in events:
        by_store[event.store_id].append(event)
    for store_events in by_store.values():
        _decide_for_store(store_events[0].store, store_events, outcomes)
    CartEvent.objects.filter(pk__in=[event.pk for event in events]).update(decision_pending=False)
    return outcomes


class _Chunk:
    """What one store's part of a chunk reads once: locked shoppers, carts, campaigns,
    history, reachability per set of channels, connection state."""

    def __init__(self, store: Store, events: list[CartEvent], now: datetime):
        self.store = store
        self.now = now
        # Locked in external id order, as the intake upserts them (no deadlock between
        # the two); the single /events path locks the shopper too, for the same cap.
        self.shoppers = {
            s.external_id: s
            for s in Shopper.objects.select_for_update()
            .filter(store=store, external_id__in={e.user_id for e in events})
            .order_by("external_id")
        }
        # Read after the shopper locks: what a single event folded meanwhile is seen.
        self.carts = Cart.objects.in_bulk({e.cart_id for e in events})
        self.campaigns = {
            c.pk: c
            for c in Campaign.objects.select_related("store")
            .filter(store=store, status=CampaignStatus.RUNNING, kind=CampaignKind.TRIGGERED)
            .exclude(ends_at__lte=now)
        }
        self.rules = {pk: campaign_rule(c) for pk, c in self.campaigns.items()}
        self.history: dict[Any, list[decisions.PastIntervention]] = defaultdict(list)
        for shopper_id, channel, status, created_at, sent_at in (
            Intervention.objects.filter(
                shopper__in=list(self.shoppers.values()), created_at__gt=now - timedelta(days=1)
            )
            .order_by()
            .values_list("shopper_id", "channel", "status", "created_at", "sent_at")
        ):
            self.history[shopper_id].append(
                decisions.PastIntervention(channel, status, sent_at or created_at)
            )
        self._reach: dict[tuple[str, ...], Reachability] = {}
        self._connected: set[str] | None = None
        self.ledgers: dict[int, BudgetLedger] = {}
        # A budgeted campaign's spend rows are locked at its first charge; with several
        # in one chunk, charged in whatever order the events come, two chunks could lock
        # them in opposite orders and deadlock. Those the chunk's events may charge are
        # locked now, in id order, as every chunk does (one event locks one campaign).
        triggers = {t for e in events for t in EVENT_TRIGGERS.get(EventType(e.type), ())}
        for pk in sorted(self.campaigns):
            campaign = self.campaigns[pk]
            if campaign.trigger in triggers and has_budget(campaign):
                self.ledger(campaign).lock()

    def facts(self, shopper: Shopper, channels: Collection[str]) -> decisions.ShopperFacts:
        """``shopper_facts(shopper, channels)``, with the look-ups made once per chunk."""
        key = tuple(sorted(channels))
        if key not in self._reach:
            self._reach[key] = reachability(self.shoppers.values(), key)
        connected = False
        if len(channels) > 1:  # only ``auto`` chooses among channels, as for one event
            if self._connected is None:
                self._connected = connected_among(str(self.store.pk), self.shoppers)
            connected = shopper.external_id in self._connected
        return facts_from(shopper, self._reach[key], connected)

    def ledger(self, campaign: Campaign) -> BudgetLedger:
        if campaign.pk not in self.ledgers:
            self.ledgers[campaign.pk] = BudgetLedger(campaign, self.now)
        return self.ledgers[campaign.pk]


def _decide_for_store(store: Store, events: list[CartEvent], outcomes: Counter[str]) -> None:
    chunk = _Chunk(store, events, timezone.now())
    decided: list[tuple[Intervention, InterventionEvent]] = []
    abandoned: dict[datetime, list[Any]] = defaultdict(list)

    def flush() -> None:
        # One UPDATE per abandonment time (a batch's events usually share one): a
        # bulk_update's CASE per row cost more than deciding the events.
        for at, cart_ids in abandoned.items():
            Cart.objects.filter(pk__in=cart_ids).update(abandoned_at=at, updated_at=chunk.now)
        abandoned.clear()
        if decided:
            record_created(decided)
            announce([intervention for intervention, _ in decided])
            decided.clear()

    for event in events:
        shopper = chunk.shoppers.get(event.user_id)
        cart = chunk.carts.get(event.cart_id)
        if shopper is None or cart is None:
            outcomes["gone"] += 1  # erased since it was accepted
            continue
        if event.type == EventType.CHECKOUT_COMPLETED:
            flush()
            cart_data = event.payload.get("cart") or {}
            do_convert_cart(
                cart,
                event.occurred_at,
                cart_data.get("value"),
                order_id=event.payload.get("order_id", ""),
                currency=cart_data.get("currency", ""),
            )
            outcomes["converted"] += 1
            continue
        if event.type == EventType.CART_ABANDONED and cart.abandoned_at is None:
            cart.abandoned_at, cart.updated_at = event.occurred_at, chunk.now
            abandoned[event.occurred_at].append(cart.pk)
        decision = _decide_event(chunk, event, shopper, cart)
        if decision is None:
            outcomes["no_campaign"] += 1
            continue
        decided.append(decision)
        intervention = decision[0]
        chunk.history[shopper.pk].append(
            decisions.PastIntervention(intervention.channel, intervention.status, chunk.now)
        )
        outcomes[intervention.status] += 1
    flush()
    for ledger in chunk.ledgers.values():
        ledger.save()


def _decide_event(
    chunk: _Chunk, event: CartEvent, shopper: Shopper, cart: Cart
) -> tuple[Intervention, InterventionEvent] | None:
    """``do_accept_event``'s decision for one event, from the chunk's reads."""
    triggers = EVENT_TRIGGERS.get(EventType(event.type))
    if not triggers:
        return None
    now = chunk.now
    eligible = [
        rule
        for pk, rule in chunk.rules.items()
        if not chunk.campaigns[pk].audience
        or matches(
            chunk.campaigns[pk].audience,
            facts_for(cart, shopper, chunk.campaigns[pk].audience, now),
            now,
        )
    ]
    rule, reasons = decisions.choose_campaign(
        eligible, triggers, cart_facts(cart), chunk.facts(shopper, decisions.ALL_CHANNELS)
    )
    if rule is None:
        return None
    campaign = chunk.campaigns[rule.id]
    arm = experiment_arm(campaign, shopper)
    request, discount = arm_request(campaign, arm)
    channels = decisions.ALL_CHANNELS if request.channel == "auto" else (request.channel,)
    return build_decided(
        store=chunk.store,
        shopper=shopper,
        cart=cart,
        request=request,
        facts=chunk.facts(shopper, channels),
        history=list(chunk.history[shopper.pk]),
        origin="campaign",
        now=now,
        campaign=campaign,
        variant=arm,
        discount=discount,
        suppressed_by="holdout" if arm == HOLDOUT else "",
        extra_reasons=[*reasons, *([f"campaign '{campaign.name}' variant: {arm}"] if arm else [])],
        charge=chunk.ledger(campaign).charge,
    )


def do_redispatch_undecided(older_than: float, limit: int = 5000) -> int:
    """The sweeper's part: events still pending after ``older_than`` seconds lost their
    task (broker restart, a failed enqueue, a worker that crashed mid-chunk): enqueue
    them again. A duplicate task is harmless: the claim lets one decide."""
    stale = list(
        CartEvent.objects.filter(
            decision_pending=True,
            received_at__lt=timezone.now() - timedelta(seconds=older_than),
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale:
        enqueue_decisions(stale)
    return len(stale)
