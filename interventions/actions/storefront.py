"""What a storefront's WebSocket connection asks of the engine (docs/websocket-protocol.md):
acks, tracking frames, and on connect the sent-but-unacknowledged interventions.

The consumers call these through ``database_sync_to_async``; each is one store-scoped
look-up plus one action, so an ack or a tracking event for another store's (or, on a
user connection, another shopper's) intervention does nothing.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from interventions.actions.delivery import message_for
from interventions.actions.lifecycle import do_mark_delivered_many
from interventions.models import Intervention, Status
from realtime.frames import intervention_payload
from tracking.actions import do_record_tracking_event_once


def _valid_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def access_room_intervention(
    store_id: str, user_id: str, intervention_id: str = "", message_id: str = ""
) -> Intervention | None:
    """The intervention this room may act on, by id or by the messageId it was sent under."""
    rows = Intervention.objects.filter(store_id=store_id, channel="websocket")
    if user_id:
        rows = rows.filter(shopper__external_id=user_id)
    if intervention_id:
        if not _valid_uuid(intervention_id):
            return None
        return rows.filter(pk=intervention_id).first()
    if message_id:
        return rows.filter(provider_message_id=message_id).first()
    return None


@dataclass(frozen=True)
class AckRequest:
    """A client's ack as the consumer saw it: which room, which frame, when."""

    store_id: str
    user_id: str
    intervention_id: str
    message_id: str
    at: datetime


def do_acknowledge_many(acks: list[AckRequest]) -> list[str]:  # noqa: C901 - one outcome per ack state, resolved in one pass over the batch
    """Clients' acks: sent → delivered. One outcome per ack, for the consumer to decide
    whether to try again: delivered | not_yet_sent | unknown | ignored.

    One query finds every intervention of the batch; scoping (store, and shopper on a
    user connection) is checked per ack, so an ack for another store's or shopper's
    intervention is ``unknown`` and changes nothing.
    """
    by_id = [
        a.intervention_id for a in acks if a.intervention_id and _valid_uuid(a.intervention_id)
    ]
    by_message = [a.message_id for a in acks if not a.intervention_id and a.message_id]
    found: dict[str, Intervention] = {}
    if by_id:
        # Unordered (a dict by id): the default ordering cost ~13 % of a batch's CPU.
        for row in (
            Intervention.objects.filter(pk__in=by_id, channel="websocket")
            .select_related("shopper")
            .order_by()
        ):
            found[str(row.pk)] = row
    by_provider_id: dict[tuple[str, str], Intervention] = {}
    if by_message:
        for row in (
            Intervention.objects.filter(provider_message_id__in=by_message, channel="websocket")
            .select_related("shopper")
            .order_by()
        ):
            by_provider_id[(str(row.store_id), row.provider_message_id)] = row
    outcomes: list[str] = []
    to_deliver: dict[Any, tuple[Intervention, datetime]] = {}
    waiting: list[tuple[int, Any]] = []  # (position in outcomes, intervention id)
    for ack in acks:
        intervention = (
            found.get(ack.intervention_id)
            if ack.intervention_id
            else by_provider_id.get((ack.store_id, ack.message_id))
        )
        if (
            intervention is None
            or str(intervention.store_id) != ack.store_id
            or (ack.user_id and intervention.shopper.external_id != ack.user_id)
        ):
            outcomes.append("unknown")
        elif intervention.status in (Status.QUEUED, Status.SENDING):
            # The frame reached the browser before the pipeline recorded the send.
            outcomes.append("not_yet_sent")
        elif intervention.status != Status.SENT:
            outcomes.append("ignored")
        else:
            to_deliver.setdefault(intervention.pk, (intervention, ack.at))
            waiting.append((len(outcomes), intervention.pk))
            outcomes.append("ignored")
    # One batched write for every ack of the batch; the first ack of an intervention wins.
    delivered = do_mark_delivered_many(list(to_deliver.values()), source="websocket")
    for index, pk in waiting:
        if pk in delivered:
            outcomes[index] = "delivered"
            delivered.discard(pk)
    return outcomes


def do_record_shopper_tracking(
    store_id: str, user_id: str, intervention_id: str, event: str, message_id: str = ""
) -> bool:
    """Record a tracking frame; False when the room may not act on that intervention.

    The same event of the same intervention within ``WS_TRACKING_DEDUP_SECONDS`` counts
    once: a client repeating "clicked" 2,000 times must not inflate the store's figures.
    """
    intervention = access_room_intervention(store_id, user_id, intervention_id)
    if intervention is None:
        return False
    do_record_tracking_event_once(
        intervention,
        kind=event,
        source="websocket",
        within=timedelta(seconds=settings.WS_TRACKING_DEDUP_SECONDS),
        metadata={"messageId": message_id} if message_id else None,
    )
    return True


@dataclass(frozen=True)
class PendingFrame:
    message_id: str
    intervention_id: str
    payload: dict[str, Any]


# Table names are the models' defaults (checked by the offline-resend tests).
PENDING_EXISTS_SQL = (
    "SELECT 1 FROM interventions_intervention i "
    "JOIN stores_shopper s ON s.id = i.shopper_id "
    "WHERE i.store_id = %s AND s.external_id = %s AND i.channel = 'websocket' "
    "AND i.status = %s AND (i.expires_at IS NULL OR i.expires_at > %s) LIMIT 1"
)


SHOPPERS_WITH_PENDING_SQL = (
    "SELECT DISTINCT s.external_id FROM interventions_intervention i "
    "JOIN stores_shopper s ON s.id = i.shopper_id "
    "WHERE i.store_id = %s AND s.external_id = ANY(%s) AND i.channel = 'websocket' "
    "AND i.status = %s AND (i.expires_at IS NULL OR i.expires_at > %s)"
)


def shoppers_with_pending(user_ids_by_store: dict[str, list[str]]) -> set[tuple[str, str]]:
    """(store id, user id) of the given shoppers who have a sent, unacknowledged,
    unexpired websocket intervention: one statement per store for a whole connect batch,
    where ``pending_for_shopper`` alone would be a thread hop and a query per handshake."""
    now = timezone.now()
    waiting: set[tuple[str, str]] = set()
    with connection.cursor() as cursor:
        for store_id, user_ids in user_ids_by_store.items():
            cursor.execute(SHOPPERS_WITH_PENDING_SQL, [store_id, user_ids, Status.SENT, now])
            waiting.update((store_id, user_id) for (user_id,) in cursor.fetchall())
    return waiting


def pending_for_shopper(store_id: str, user_id: str) -> list[PendingFrame]:
    """The shopper's sent, unacknowledged, unexpired websocket interventions, oldest first."""
    now = timezone.now()
    # Asked at every user connection, and almost always empty. In a connect storm,
    # compiling the ORM query was 30 % of the handshake's CPU: a fixed statement answers
    # the common case, the ORM builds the frames only when there is something to send.
    with connection.cursor() as cursor:
        cursor.execute(PENDING_EXISTS_SQL, [store_id, user_id, Status.SENT, now])
        if cursor.fetchone() is None:
            return []
    rows = (
        Intervention.objects.filter(
            store_id=store_id,
            shopper__external_id=user_id,
            channel="websocket",
            status=Status.SENT,
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("shopper", "cart")
        .order_by("sent_at", "created_at", "id")
    )
    return [
        PendingFrame(
            message_id=intervention.provider_message_id or str(intervention.pk),
            intervention_id=str(intervention.pk),
            # The same message the transport published, through the same frame builder.
            payload=intervention_payload(message_for(intervention, user_id)),
        )
        for intervention in rows
    ]
