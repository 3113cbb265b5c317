"""Posting one signed event to one endpoint (Standard Webhooks: webhook-id,
webhook-timestamp and webhook-signature headers, signed by the ``standardwebhooks``
package). The one place that talks HTTP to subscribers."""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from standardwebhooks.webhooks import Webhook

from outbound.models import OutboxEvent, WebhookEndpoint
from outbound.targets import TargetRefused, pin_target


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str
    seconds: float


class PinnedAddressAdapter(HTTPAdapter):
    """Connects to an address already checked (the URL names the IP) while TLS still sends
    the endpoint's name as SNI and checks the certificate against it: urllib3's
    ``server_hostname`` and ``assert_hostname`` pool keywords, through requests' supported
    ``init_poolmanager`` hook (ignored for plain http)."""

    def __init__(self, hostname: str):
        self.hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **pool_kwargs: Any) -> None:
        pool_kwargs.update(server_hostname=self.hostname, assert_hostname=self.hostname)
        super().init_poolmanager(*args, **pool_kwargs)


def pinned_url(url: str, address: str) -> str:
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts._replace(netloc=f"{host}:{port}").geturl()


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
    parts = urlsplit(endpoint.url)
    try:
        # Resolved and checked once; the connection goes to that address (DNS rebinding),
        # with the endpoint's own name in Host and in TLS.
        address = pin_target(endpoint.url)
        with requests.Session() as session:
            session.mount(f"{parts.scheme}://", PinnedAddressAdapter(parts.hostname or ""))
            response = session.post(
                pinned_url(endpoint.url, address),
                data=body.encode(),
                headers={**headers, "host": parts.netloc},
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
