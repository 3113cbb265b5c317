"""Recording what shoppers and providers report about an intervention."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.utils import timezone

from interventions.models import Intervention
from tracking.models import TrackingEvent

logger = structlog.get_logger(__name__)

# Scanners prefetch pixels and links, people double-tap: a repeat of these within
# TRACKING_DEDUPE_SECONDS is kept but flagged, so it is never counted.
DEDUPLICATED_KINDS = frozenset({"opened", "clicked"})


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
) -> TrackingEvent:
    occurred_at = occurred_at or timezone.now()
    event = TrackingEvent.objects.create(
        store_id=intervention.store_id,
        intervention=intervention,
        kind=kind,
        source=source,
        occurred_at=occurred_at,
        metadata=metadata or {},
        revenue=revenue,
        duplicate=is_repeat(intervention, kind, occurred_at),
    )
    logger.info(
        "tracking_event_recorded",
        intervention_id=str(intervention.pk),
        kind=kind,
        source=source,
        duplicate=event.duplicate,
    )
    return event


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
