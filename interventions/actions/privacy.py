"""Data protection: erase a shopper, export what is held about them, prune old rows.

The erasure spans every app that holds a shopper's data, so it lives with the engine,
above them all (docs/operations.md#data-protection says what is erased, what is kept
and why).
"""

import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from interventions.actions.events import json_safe
from interventions.models import (
    UNSENT_STATUSES,
    Cart,
    CartEvent,
    DeliveryAttempt,
    Intervention,
    InterventionEvent,
    Status,
    transition_many,
)
from notifications.models import Device, Suppression, WebhookReceipt
from outbound.models import OutboxEvent
from realtime.replay import erase_frames
from stores.models import ErasureRecord, Shopper
from tracking.models import TrackingEvent

logger = structlog.get_logger(__name__)

ERASED = "[erased]"
# What an event's sender says about the shopper (the ``user`` profile and any loose copy
# of its fields); dropped from stored payloads whatever they hold.
PROFILE_KEYS = frozenset({"user", "email", "phone", "first_name", "last_name", "name"})
# Finished: nothing will happen to them any more (sending and the unsent are in flight).
FINISHED_STATUSES = frozenset(
    {
        Status.SENT,
        Status.UNCONFIRMED,
        Status.DELIVERED,
        Status.SUPPRESSED,
        Status.CANCELLED,
        Status.FAILED,
    }
)
BULK_SIZE = 500


def shopper_hash(store_id: Any, user_id: str) -> str:
    """How an ErasureRecord names a shopper: a store can recompute it, no one can read it."""
    return hashlib.sha256(f"{store_id}:{user_id}".encode()).hexdigest()


class Scrubber:
    """Replaces a shopper's personal values wherever they appear in text or JSON.

    Addresses and tokens are distinctive, so they are replaced inside longer strings too
    (a provider's error quotes the address); names and the user id are replaced only as
    whole values, since "Sam" inside "Samsung" is not the shopper.
    """

    def __init__(self, substrings: Iterable[str], whole_values: Iterable[str]):
        wanted = sorted({s for s in substrings if s}, key=len, reverse=True)
        self.pattern = (
            re.compile("|".join(map(re.escape, wanted)), re.IGNORECASE) if wanted else None
        )
        self.whole_values = {v.casefold() for v in whole_values if v}

    def text(self, value: str) -> str:
        if value.casefold() in self.whole_values:
            return ERASED
        return self.pattern.sub(ERASED, value) if self.pattern else value

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {key: self.json(item) for key, item in value.items()}
        return value

    def payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in payload.items() if k not in PROFILE_KEYS}
        scrubbed: dict[str, Any] = self.json(kept)
        return scrubbed | {k: ERASED for k in payload if k in PROFILE_KEYS}


def _scrubber_for(shopper: Shopper, events: list[CartEvent], tokens: list[str]) -> Scrubber:
    # Past events may carry an address the profile no longer has.
    profiles = [e.payload.get("user") or {} for e in events if isinstance(e.payload, dict)]
    substrings = {shopper.email, shopper.phone, *tokens}
    whole_values = {shopper.first_name, shopper.external_id}
    for profile in profiles:
        if not isinstance(profile, dict):
            continue
        substrings.update(str(profile.get(k) or "") for k in ("email", "phone"))
        substrings.update(str(t) for t in profile.get("push_tokens") or ())
        whole_values.add(str(profile.get("first_name") or ""))
    return Scrubber(substrings, whole_values)


def _rewrite(rows: Iterable[models.Model], fields: list[str], change: Callable[[Any], bool]) -> int:
    """Apply ``change`` to each row (it returns whether it changed anything) and save the
    changed ones in bulk; no query per row."""
    changed: list[models.Model] = []
    count = 0
    for row in rows:
        if change(row):
            changed.append(row)
        if len(changed) >= BULK_SIZE:
            type(changed[0]).objects.bulk_update(changed, fields)  # type: ignore[attr-defined]
            count += len(changed)
            changed = []
    if changed:
        type(changed[0]).objects.bulk_update(changed, fields)  # type: ignore[attr-defined]
        count += len(changed)
    return count


@transaction.atomic
def do_erase_shopper(shopper: Shopper, erased_by: str) -> ErasureRecord:
    """Erase a shopper's personal data everywhere, keeping what the store's counts need.

    The shopper row stays, emptied and marked erased: their interventions point at it
    (statuses, channels, campaigns and times stay, so do conversions' values). Unsent
    interventions are cancelled. Suppressions keep their address: it must never be
    contacted again. The replay streams in Redis are cleared after commit.
    """
    # Locked like intake's upsert, so an event arriving meanwhile waits and then finds
    # no shopper under this id (it creates a new one: new data, sent after the erasure).
    shopper = Shopper.objects.select_for_update().get(pk=shopper.pk)
    store_id, user_id = shopper.store_id, shopper.external_id
    now = timezone.now()
    counts: dict[str, int] = {}

    events = list(CartEvent.objects.filter(store_id=store_id, user_id=user_id))
    devices = Device.objects.filter(shopper=shopper)
    scrubber = _scrubber_for(shopper, events, list(devices.values_list("token", flat=True)))

    unsent = Intervention.objects.filter(shopper=shopper, status__in=UNSENT_STATUSES)
    counts["interventions_cancelled"] = len(
        transition_many([(i, {}) for i in unsent], Status.CANCELLED, "cancelled: shopper erased")
    )

    placeholder = f"erased:{shopper.pk}"

    def erase_event(event: CartEvent) -> bool:
        event.user_id = placeholder
        event.payload = scrubber.payload(event.payload if isinstance(event.payload, dict) else {})
        return True

    counts["cart_events"] = _rewrite(events, ["user_id", "payload"], erase_event)

    def erase_intervention(intervention: Intervention) -> bool:
        intervention.content = {}
        intervention.personalization = {}
        intervention.decision = {
            **scrubber.json(intervention.decision),
            "erased_at": now.isoformat(),
        }
        intervention.status_reason = scrubber.text(intervention.status_reason)
        intervention.idempotency_key = scrubber.text(intervention.idempotency_key)
        return True

    interventions = Intervention.objects.filter(shopper=shopper).only(
        "pk", "decision", "status_reason", "idempotency_key"
    )
    counts["interventions"] = _rewrite(
        interventions.iterator(chunk_size=BULK_SIZE),
        ["content", "personalization", "decision", "status_reason", "idempotency_key"],
        erase_intervention,
    )
    intervention_ids = {str(pk) for pk in interventions.values_list("pk", flat=True)}

    def erase_history(event: InterventionEvent) -> bool:
        reason, detail = scrubber.text(event.reason), scrubber.json(event.detail)
        changed = (reason, detail) != (event.reason, event.detail)
        event.reason, event.detail = reason, detail
        return changed

    counts["history_rows_scrubbed"] = _rewrite(
        InterventionEvent.objects.filter(intervention__shopper=shopper).iterator(BULK_SIZE),
        ["reason", "detail"],
        erase_history,
    )

    def erase_attempt(attempt: DeliveryAttempt) -> bool:
        error = scrubber.text(attempt.error)
        changed = error != attempt.error
        attempt.error = error
        return changed

    counts["delivery_attempts_scrubbed"] = _rewrite(
        DeliveryAttempt.objects.filter(intervention__shopper=shopper)
        .exclude(error="")
        .iterator(BULK_SIZE),
        ["error"],
        erase_attempt,
    )
    # Kind, source, time and revenue stay: conversions still count.
    counts["tracking_events"] = TrackingEvent.objects.filter(intervention__shopper=shopper).update(
        metadata={}
    )
    counts["devices"], _ = devices.delete()

    def erase_outbox_event(event: OutboxEvent) -> bool:
        # Not yet delivered or not yet pruned: what goes out from now on is scrubbed too.
        data = scrubber.json(event.data)
        if "metadata" in data:
            data["metadata"] = {}
        if data.get("user_id") == user_id:
            data["user_id"] = placeholder
        changed = data != event.data
        event.data = data
        return changed

    counts["outbox_events_scrubbed"] = _rewrite(
        OutboxEvent.objects.filter(store_id=store_id)
        .filter(Q(intervention_id__in=list(intervention_ids)) | Q(data__user_id=user_id))
        .iterator(BULK_SIZE),
        ["data"],
        erase_outbox_event,
    )

    for field in ("email", "phone", "first_name", "locale", "country", "timezone", "segment"):
        setattr(shopper, field, "")
    shopper.channel_preferences = []
    shopper.opted_out_channels = []
    shopper.external_id = placeholder
    shopper.erased_at = now
    shopper.save()

    record = ErasureRecord.objects.create(
        store_id=store_id,
        shopper_hash=shopper_hash(store_id, user_id),
        erased_at=now,
        erased_by=erased_by[:200],
        counts=counts,
    )
    logger.info("shopper_erased", store_id=str(store_id), erasure_id=record.pk, **counts)
    transaction.on_commit(lambda: _erase_frames(str(store_id), user_id, intervention_ids))
    return record


def _erase_frames(store_id: str, user_id: str, intervention_ids: set[str]) -> None:
    try:
        erase_frames(store_id, user_id, intervention_ids)
    except RedisError as exc:
        # The streams expire on their own WS_REPLAY_WINDOW after their last frame.
        logger.warning("erasure_replay_unavailable", store_id=store_id, error=str(exc))


def shopper_export(shopper: Shopper) -> dict[str, Any]:
    """Everything held about a shopper, as JSON-ready data (GET /shoppers/{id}/export)."""
    store_id, user_id = shopper.store_id, shopper.external_id
    events = CartEvent.objects.filter(store_id=store_id, user_id=user_id).select_related("cart")
    carts = Cart.objects.filter(
        models.Q(shopper=shopper) | models.Q(pk__in=events.values("cart_id"))
    ).distinct()
    interventions = (
        Intervention.objects.filter(shopper=shopper)
        .select_related("cart", "campaign")
        .prefetch_related("events", "attempts_log", "tracking_events")
    )
    addresses = [a for a in (shopper.email, shopper.phone) if a]
    suppressions = Suppression.objects.filter(store_id=store_id, address__in=addresses)
    return json_safe(
        {
            "exported_at": timezone.now(),
            "store": {"id": shopper.store_id, "name": shopper.store.name},
            "profile": {
                "user_id": user_id,
                **{
                    field: getattr(shopper, field)
                    for field in (
                        "email",
                        "phone",
                        "first_name",
                        "locale",
                        "country",
                        "timezone",
                        "segment",
                        "channel_preferences",
                        "opted_out_channels",
                        "created_at",
                        "updated_at",
                    )
                },
            },
            "carts": [_cart(cart) for cart in carts],
            "events": [
                {
                    "id": e.pk,
                    "type": e.type,
                    "cart_id": e.cart.external_id,
                    "payload": e.payload,
                    "occurred_at": e.occurred_at,
                    "received_at": e.received_at,
                }
                for e in events
            ],
            "interventions": [_intervention(i) for i in interventions],
            "tracking": [
                _tracking(t) | {"intervention_id": i.pk}
                for i in interventions
                for t in i.tracking_events.all()
            ],
            "devices": [
                {
                    "token": d.token,
                    "platform": d.platform,
                    "active": d.active,
                    "created_at": d.created_at,
                }
                for d in Device.objects.filter(shopper=shopper)
            ],
            "suppressions": [
                {
                    "channel": s.channel,
                    "address": s.address,
                    "reason": s.reason,
                    "created_at": s.created_at,
                }
                for s in suppressions
            ],
        }
    )


def _cart(cart: Cart) -> dict[str, Any]:
    return {
        "id": cart.external_id,
        "value": cart.value,
        "currency": cart.currency,
        "items": cart.items,
        "abandoned_at": cart.abandoned_at,
        "converted_at": cart.converted_at,
        "conversion_value": cart.conversion_value,
        "probability": cart.probability,
        "recommended_action": cart.recommended_action,
        "created_at": cart.created_at,
        "updated_at": cart.updated_at,
    }


def _tracking(event: TrackingEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "source": event.source,
        "occurred_at": event.occurred_at,
        "revenue": event.revenue,
        "metadata": event.metadata,
    }


def _intervention(intervention: Intervention) -> dict[str, Any]:
    return {
        "id": intervention.pk,
        "origin": intervention.origin,
        "channel": intervention.channel,
        "status": intervention.status,
        "status_reason": intervention.status_reason,
        "campaign": intervention.campaign.name if intervention.campaign else None,
        "cart_id": intervention.cart.external_id if intervention.cart else None,
        "template_key": intervention.template_key,
        "decision": intervention.decision,
        "personalization": intervention.personalization,
        "content": intervention.content,
        "send_at": intervention.send_at,
        "sent_at": intervention.sent_at,
        "delivered_at": intervention.delivered_at,
        "created_at": intervention.created_at,
        "history": [
            {"from": e.from_status, "to": e.to_status, "reason": e.reason, "at": e.at}
            for e in intervention.events.all()
        ],
        "attempts": [
            {
                "channel": a.channel,
                "outcome": a.outcome,
                "error": a.error,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
            }
            for a in intervention.attempts_log.all()
        ],
    }


def _retention_kinds() -> list[tuple[str, models.QuerySet[Any], str]]:
    """(setting key, rows, age field): ordered by insertion, which the primary key (or,
    for interventions, an indexed created_at) follows, so each batch is an index scan."""
    return [
        ("cart_events", CartEvent.objects.order_by("id"), "received_at"),
        ("delivery_attempts", DeliveryAttempt.objects.order_by("id"), "started_at"),
        ("intervention_history", InterventionEvent.objects.order_by("id"), "at"),
        ("tracking_events", TrackingEvent.objects.order_by("id"), "recorded_at"),
        # Twilio replay guards: once pruned, a captured request that old would apply again
        # (its signature has no time), hence a long default (docs/operations.md).
        ("webhook_receipts", WebhookReceipt.objects.order_by("id"), "received_at"),
        (
            "finished_interventions",
            Intervention.objects.filter(status__in=FINISHED_STATUSES).order_by("created_at"),
            "created_at",
        ),
    ]


def do_prune_expired(now: datetime | None = None) -> dict[str, int]:
    """Delete rows older than their retention (settings.RETENTION_DAYS; 0 keeps forever),
    oldest first, in batches of RETENTION_BATCH_SIZE, each its own short transaction, at
    most RETENTION_MAX_ROWS_PER_RUN per kind: the next run carries on."""
    now = now or timezone.now()
    batch_size = int(settings.RETENTION_BATCH_SIZE)
    limit = int(settings.RETENTION_MAX_ROWS_PER_RUN)
    pruned: dict[str, int] = {}
    for kind, rows, age_field in _retention_kinds():
        days = int(settings.RETENTION_DAYS.get(kind) or 0)
        if days <= 0:
            continue
        expired = rows.filter(**{f"{age_field}__lt": now - timedelta(days=days)})
        deleted = 0
        while deleted < limit:
            ids = list(expired.values_list("pk", flat=True)[: min(batch_size, limit - deleted)])
            if not ids:
                break
            # An intervention takes its history, attempts and tracking with it.
            rows.model.objects.filter(pk__in=ids).delete()
            deleted += len(ids)
        pruned[kind] = deleted
    if any(pruned.values()):
        logger.info("retention_pruned", **pruned)
    return pruned
