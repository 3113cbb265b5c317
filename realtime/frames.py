"""The one builder of an ``intervention`` frame's payload (docs/websocket-protocol.md).

Both the live publish (``realtime.transport``) and the resend to a shopper who reconnects
after the replay window (``interventions.actions.storefront``) build it from the same
``OutboundMessage``, so a client cannot tell the two apart.
"""

from typing import Any

from notifications.transports.base import OutboundMessage


def intervention_payload(message: OutboundMessage) -> dict[str, Any]:
    metadata = message.metadata
    return {
        "id": message.intervention_id,
        "kind": metadata.get("kind", ""),
        "content": message.content,
        "cart": metadata.get("cart"),
        "discount": metadata.get("discount"),
        "expires_at": metadata.get("expires_at"),
    }
