"""WebSocket transport: an ``intervention`` frame to the store's and the shopper's rooms.

Persist-then-publish lives in ``realtime.publish`` (docs/websocket-protocol.md):
the frame is logged in the rooms' replay streams before it is published, and its stream
id is the provider message id the pipeline records, which a client's ack names.
"""

from typing import ClassVar

import redis
import structlog
from prometheus_client import Counter

from notifications.transports.base import OutboundMessage, Transport, TransportError
from realtime import registry
from realtime.frames import intervention_payload
from realtime.publish import publish_frame

logger = structlog.get_logger(__name__)

PUBLISH_FAILURES = Counter(
    "engine_websocket_publish_failures_total", "Intervention frames that could not be published."
)


class WebSocketTransport(Transport):
    channel: ClassVar[str] = "websocket"
    name: ClassVar[str] = "websocket"

    def send(self, message: OutboundMessage) -> str:
        recipient = message.recipient if isinstance(message.recipient, str) else ""
        try:
            return publish_frame(
                store_id=str(message.store_id),
                user_id=recipient,
                frame_type="intervention",
                payload=intervention_payload(message),
                intervention_id=str(message.intervention_id),
            )
        except redis.RedisError as exc:
            registry.note_failure()
            PUBLISH_FAILURES.inc()
            logger.warning(
                "websocket_publish_failed",
                intervention_id=message.intervention_id,
                store_id=message.store_id,
                error=str(exc),
            )
            # Transient: the pipeline's sweeper sends it again once Redis is back.
            raise TransportError(
                f"Redis unreachable: {exc}", permanent=False, reason="redis_unreachable"
            ) from exc
