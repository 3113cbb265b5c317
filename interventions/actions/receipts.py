"""What providers report back about a send: delivered, bounced, undeliverable."""

import uuid
from datetime import datetime
from typing import Any

import structlog

from interventions import metrics
from interventions.actions.lifecycle import do_fail_after_send, do_mark_delivered
from interventions.models import Intervention
from notifications.actions import do_suppress_address
from notifications.recipients import contact_address
from tracking.actions import do_record_tracking_event

logger = structlog.get_logger(__name__)


def do_record_provider_event(
    *,
    channel: str,
    provider_message_id: str,
    kind: str,
    source: str,
    occurred_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    failure_reason: str = "",
    suppress_reason: str = "",
    intervention_id: str = "",
    machine: bool = False,
) -> Intervention | None:
    """A provider's delivery report becomes a tracking event and, for delivered or
    failed, a state change. Unknown ids return None (the webhook still answers 200).
    ``machine``: the provider says a privacy proxy, not a person, opened it."""
    intervention = find_intervention(channel, provider_message_id, intervention_id)
    metrics.PROVIDER_EVENTS.labels(channel, kind, "yes" if intervention else "no").inc()
    if intervention is None:
        logger.info(
            "provider_event_unmatched", channel=channel, provider_message_id=provider_message_id
        )
        return None
    if kind == "delivered":
        # Records the "delivered" tracking event itself; a repeat report is a no-op.
        do_mark_delivered(intervention, source=source, at=occurred_at)
    else:
        do_record_tracking_event(
            intervention,
            kind,
            source,
            occurred_at=occurred_at,
            metadata=metadata or {},
            machine=machine,
        )
    if failure_reason:
        do_fail_after_send(intervention, reason=failure_reason, source=source)
    if suppress_reason:
        address = contact_address(intervention.shopper, channel)
        if address:
            do_suppress_address(intervention.store_id, channel, address, suppress_reason)
    return intervention


def find_intervention(
    channel: str, provider_message_id: str, intervention_id: str = ""
) -> Intervention | None:
    interventions = Intervention.objects.select_related("shopper").filter(channel=channel)
    if provider_message_id:
        found = interventions.filter(provider_message_id=provider_message_id).first()
        if found is not None:
            return found
    if intervention_id:
        # The id we put in the message's metadata: survives ESP message id formats.
        try:
            pk = uuid.UUID(str(intervention_id))
        except ValueError:
            return None
        return interventions.filter(pk=pk).first()
    return None
