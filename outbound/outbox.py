"""Writing outbox rows: called by the one writer of each change, inside its transaction,
so an event exists exactly when its change committed (docs/webhooks.md).

Payloads carry ids and facts, never personal data: a receiver that needs more reads the
API (``GET /api/v1/interventions/{id}``).
"""

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

from outbound.models import OutboxEvent, Stream


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def plain(value: Any) -> Any:
    """JSON-safe, the way receivers read it: ids and decimals as strings, times in ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def event(
    store_id: Any,
    event_type: str,
    occurred_at: datetime,
    data: dict[str, Any],
    intervention_id: Any = None,
    stream: str = Stream.INTERVENTION_EVENTS,
) -> OutboxEvent:
    return OutboxEvent(
        webhook_id=new_webhook_id(),
        store_id=store_id,
        stream=stream,
        type=event_type,
        intervention_id=intervention_id,
        occurred_at=occurred_at,
        data=plain(data),
    )


def status_changed(
    intervention: Any, from_status: str, to_status: str, reason: str, at: datetime
) -> OutboxEvent:
    """``intervention.<status>``: written by ``record_created`` / ``transition`` /
    ``transition_many`` only."""
    return event(
        intervention.store_id,
        f"intervention.{to_status}",
        at,
        {
            "intervention_id": intervention.pk,
            "store_id": intervention.store_id,
            "channel": intervention.channel,
            "campaign_id": intervention.campaign_id,
            "variant": intervention.variant,
            "from_status": from_status or None,
            "status": to_status,
            "reason": reason,
        },
        intervention_id=intervention.pk,
    )


def tracked(tracking_event: Any) -> OutboxEvent:
    """``tracking.<kind>``: one per tracking row, duplicates and machine opens included
    (flagged), so a receiver can count the way the engine does or its own way."""
    return event(
        tracking_event.store_id,
        f"tracking.{tracking_event.kind}",
        tracking_event.occurred_at,
        {
            "intervention_id": tracking_event.intervention_id,
            "store_id": tracking_event.store_id,
            "kind": tracking_event.kind,
            "source": tracking_event.source,
            "duplicate": tracking_event.duplicate,
            "machine": bool((tracking_event.metadata or {}).get("machine")),
            "revenue": tracking_event.revenue,
            "metadata": tracking_event.metadata or {},
        },
        intervention_id=tracking_event.intervention_id,
    )


def conversion_recorded(conversion: Any, credits: list[dict[str, Any]]) -> OutboxEvent:
    """``conversion.recorded``: one per order, with the interventions credited for it."""
    return event(
        conversion.store_id,
        "conversion.recorded",
        conversion.occurred_at,
        {
            "order_id": conversion.order_id,
            "store_id": conversion.store_id,
            "user_id": conversion.user_id,
            "cart_id": conversion.cart_external_id or None,
            "value": conversion.value,
            "currency": conversion.currency,
            "discount": conversion.discount,
            "source": conversion.source,
            "attributed_to": conversion.intervention_id,
            "recovered_revenue": conversion.recovered_revenue,
            "credits": credits,
        },
        stream=Stream.CONVERSION_EVENTS,
    )


def record(events: Iterable[OutboxEvent]) -> None:
    OutboxEvent.objects.bulk_create(list(events))
    if settings.WEBHOOK_RELAY_ON_COMMIT:
        # Embedded mode runs no beat to fan the outbox out: kick the relay once the change
        # commits. Tasks run eagerly there, so the posts happen in this process, after the
        # commit, never inside the change's transaction. Robust: a receiver's failure is
        # the delivery's to record, not the change's caller's.
        transaction.on_commit(relay_outbox, robust=True)


def relay_outbox() -> None:
    # By name: the models layer imports no task module (docs/architecture.md).
    current_app.signature("outbound.tasks.dispatch_outbox").apply_async()
