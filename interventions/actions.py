"""Intervention operations (docs/delivery.md). Being written: signatures are the contract."""

from datetime import datetime
from typing import Any

from interventions.models import CartEvent, Intervention
from stores.models import Store


def do_accept_event(store: Store, event: dict[str, Any]) -> CartEvent:
    """Store a validated event (the body of POST /api/v1/events) and act on it."""
    raise NotImplementedError


def check_trigger_intervention(
    store: Store, trigger: dict[str, Any], idempotency_key: str = ""
) -> tuple[Intervention, bool]:
    """Explicit trigger (the body of POST /api/v1/interventions); returns (intervention, created)."""
    raise NotImplementedError


def do_mark_delivered(intervention: Intervention, source: str, at: datetime | None = None) -> bool:
    """sent → delivered (a WebSocket ack, a provider's delivery report); False if not sent."""
    raise NotImplementedError


def do_fail_after_send(intervention: Intervention, reason: str, source: str) -> bool:
    """sent → failed (hard bounce, undeliverable SMS), then the next fallback channel."""
    raise NotImplementedError
