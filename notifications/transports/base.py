"""The sending interface every channel plugs into (docs/delivery.md).

A transport takes one rendered ``OutboundMessage`` and either returns the provider's
message id or raises ``TransportError``, classified ``permanent`` (do not retry; try
the next channel in the fallback chain) or transient (retry with backoff, after
``retry_after`` seconds when the provider said so).

Transports are chosen per channel by the ``NOTIFICATION_TRANSPORTS`` setting (dotted
class paths) and imported lazily.
"""

from collections import deque
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import structlog
from django.conf import settings
from django.utils.module_loading import import_string

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OutboundMessage:
    intervention_id: str
    store_id: str
    channel: str
    # The shopper's address on this channel: email, E.164 phone, push tokens, or user id.
    recipient: str | list[str]
    # Rendered content for this channel, e.g. {"subject", "html", "text"} for email.
    content: dict[str, Any]
    shopper_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class TransportError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        reason: str = "provider_error",
        suppress_address: bool = False,
    ):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        # Short, stable label for metrics and the intervention's failure reason.
        self.reason = reason
        # The address is dead (hard bounce, unsubscribed number): never send to it again.
        self.suppress_address = suppress_address


class Transport:
    channel: ClassVar[str]
    name: ClassVar[str]
    # Most messages ``send_many`` takes in one call; 0 for a transport that sends one at
    # a time. A chunk handed over in one call is claimed as one (docs/delivery.md).
    batch_size: ClassVar[int] = 0

    def send(self, message: OutboundMessage) -> str:
        raise NotImplementedError

    def send_many(self, messages: list[OutboundMessage]) -> list[str | TransportError]:
        """One call for a chunk: per message, the provider's id or why it was refused."""
        raise NotImplementedError

    def find_sent(self, intervention_id: str) -> str | None:
        """The provider's message id if it holds our message for ``intervention_id``;
        None if it does not, or if this provider cannot be asked (docs/delivery.md)."""
        return None


class LogTransport(Transport):
    """Development default: logs the message and keeps it, so `make run` shows what
    would have been sent. Tests read ``LogTransport.outbox``: the last messages only, so a
    long-running process that logs instead of sending does not grow without end."""

    name = "log"
    outbox: ClassVar[deque[OutboundMessage]] = deque(maxlen=1000)
    batch_size = 500

    def __init__(self, channel: str):
        self.channel = channel  # type: ignore[misc]

    def send(self, message: OutboundMessage) -> str:
        LogTransport.outbox.append(message)
        logger.info(
            "message_logged_instead_of_sent",
            channel=message.channel,
            intervention_id=message.intervention_id,
            recipient=message.recipient,
            content=message.content,
        )
        return f"log-{message.intervention_id}"

    def send_many(self, messages: list[OutboundMessage]) -> list[str | TransportError]:
        return [self.send(message) for message in messages]


# Short names accepted in EMAIL_TRANSPORT / SMS_TRANSPORT / PUSH_TRANSPORT.
TRANSPORT_ALIASES = {
    "anymail": "notifications.transports.email.AnymailEmailTransport",
    "twilio": "notifications.transports.sms.TwilioSmsTransport",
    "fcm": "notifications.transports.push.FcmPushTransport",
}


@cache
def get_transport(channel: str) -> Transport:
    configured: dict[str, str] = getattr(settings, "NOTIFICATION_TRANSPORTS", {})
    path = configured.get(channel, "")
    if not path or path == "log":
        return LogTransport(channel)
    transport_class = import_string(TRANSPORT_ALIASES.get(path, path))
    return transport_class()
