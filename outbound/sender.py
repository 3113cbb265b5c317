"""Posting one signed event to one endpoint (Standard Webhooks: webhook-id,
webhook-timestamp and webhook-signature headers, signed by the ``standardwebhooks``
package). The one place that talks HTTP to subscribers."""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from outbound.models import OutboxEvent, WebhookEndpoint
from outbound.targets import TargetRefused, check_target


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str
    seconds: float


def serialize(event: OutboxEvent) -> str:
    return json.dumps(event.body(), separators=(",", ":"), sort_keys=True)


def post(endpoint: WebhookEndpoint, event: OutboxEvent) -> Outcome:
    started = time.monotonic()
    body = serialize(event)
    # The timestamp is the attempt's, as the spec has it (receivers refuse old ones);
    # the id stays the event's on every retry and replay.
    now = datetime.now(UTC)
    signature = Webhook(endpoint.secret).sign(event.webhook_id, now, body)
    headers = {
        "content-type": "application/json",
        "user-agent": "intervention-engine-webhooks/1",
        "webhook-id": event.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    try:
        check_target(endpoint.url)
        response = requests.post(
            endpoint.url,
            data=body.encode(),
            headers=headers,
            timeout=(3.05, settings.WEBHOOK_TIMEOUT_SECONDS),
            allow_redirects=False,
        )
    except TargetRefused as error:
        return Outcome(False, None, f"refused: {error}", time.monotonic() - started)
    except requests.RequestException as error:
        return Outcome(False, None, type(error).__name__, time.monotonic() - started)
    ok = 200 <= response.status_code < 300
    return Outcome(
        ok,
        response.status_code,
        "" if ok else f"HTTP {response.status_code}",
        time.monotonic() - started,
    )
