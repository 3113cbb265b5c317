"""Idempotency-Key, shared by the trigger endpoints and /events (docs/delivery.md).

A key is unique per store (a partial unique index on each table that takes one). The
request body's fingerprint is stored with it, so a repeat with the same body gets the
first answer and the same key with another body is a conflict.
"""

import hashlib
import json
from typing import Any

from interventions import metrics
from interventions.errors import InterventionConflict


def request_fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def check_same_request(stored_fingerprint: str, fingerprint: str) -> None:
    """A repeat of the first request, or InterventionConflict (409)."""
    if stored_fingerprint and stored_fingerprint != fingerprint:
        raise InterventionConflict(
            "This Idempotency-Key was already used with a different request body."
        )
    metrics.IDEMPOTENT_REPLAYS.inc()
