"""Recording what shoppers and providers report about an intervention."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from interventions.models import Intervention
from tracking.models import TrackingEvent

logger = structlog.get_logger(__name__)


def do_record_tracking_event(
    intervention: Intervention,
    kind: str,
    source: str,
    occurred_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    revenue: Decimal | None = None,
) -> TrackingEvent:
    event = TrackingEvent.objects.create(
        store_id=intervention.store_id,
        intervention=intervention,
        kind=kind,
        source=source,
        occurred_at=occurred_at or timezone.now(),
        metadata=metadata or {},
        revenue=revenue,
    )
    logger.info(
        "tracking_event_recorded",
        intervention_id=str(intervention.pk),
        kind=kind,
        source=source,
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
    the last ``within``; None when it was. For reports a client can repeat at will."""
    with transaction.atomic():
        # The intervention's row lock serialises two reports racing on two connections,
        # so both cannot see "none yet" and both insert.
        Intervention.objects.select_for_update().filter(pk=intervention.pk).first()
        if TrackingEvent.objects.filter(
            intervention=intervention,
            kind=kind,
            source=source,
            occurred_at__gte=timezone.now() - within,
        ).exists():
            return None
        return do_record_tracking_event(intervention, kind, source, metadata=metadata)


def do_record_tracking_events(events: list[tuple[Intervention, str, str, datetime]]) -> None:
    """The bulk form, for bursts (WebSocket acks): (intervention, kind, source, occurred_at)."""
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
