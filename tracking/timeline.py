"""An intervention's story in one list: its status changes and what was reported about it."""

from typing import Any

from interventions.models import Intervention, InterventionEvent
from tracking.models import TrackingEvent


def timeline(intervention: Intervention) -> list[dict[str, Any]]:
    """Status changes (``type: "status"``) and tracking events (``type: "tracking"``),
    oldest first; at the same instant a status change comes before what it caused."""
    entries: list[tuple[Any, int, int, dict[str, Any]]] = []
    for change in InterventionEvent.objects.filter(intervention=intervention):
        entries.append(
            (
                change.at,
                0,
                change.pk,
                {
                    "type": "status",
                    "event": change.to_status,
                    "at": change.at,
                    "from_status": change.from_status,
                    "reason": change.reason,
                },
            )
        )
    for event in TrackingEvent.objects.filter(intervention=intervention):
        entries.append(
            (
                event.occurred_at,
                1,
                event.pk,
                {
                    "type": "tracking",
                    "event": event.kind,
                    "at": event.occurred_at,
                    "source": event.source,
                    "duplicate": event.duplicate,
                    "machine": event.machine,
                    "revenue": event.revenue,
                    "metadata": event.metadata,
                },
            )
        )
    entries.sort(key=lambda entry: entry[:3])
    return [entry for *_, entry in entries]
