"""Frame shapes, client-frame validation and close codes (docs/websocket-protocol.md).

Every frame is ``{"type", "payload", "timestamp", "messageId"}``. Server frames that
are replayable (``intervention``) carry their Redis Stream entry id as ``messageId``;
the others carry a fresh random id.
"""

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Close codes (documented in docs/websocket-protocol.md#close-codes).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN_STORE = 4404
CLOSE_IDLE = 4408
CLOSE_TOO_MANY_CONNECTIONS = 4429
# A temporary server condition: back off and retry. Not the standard 1013: daphne's
# autobahn refuses to send any code outside 1000 and 3000-4999.
CLOSE_TRY_AGAIN_LATER = 4503

TRACKING_EVENTS = ("displayed", "clicked", "dismissed")
CLIENT_TYPES = ("ack", "tracking", "heartbeat", "resume")
# \Z, not $: $ also matches before a trailing newline.
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}\Z")
# Frames resent from Postgres for an intervention that never reached a replay stream carry
# the intervention's id as their messageId, so an ack may name either.
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.IGNORECASE)


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def frame_text(
    frame_type: str, payload: dict[str, Any], message_id: str = "", timestamp: str = ""
) -> str:
    return json.dumps(
        {
            "type": frame_type,
            "payload": payload,
            "timestamp": timestamp or now_iso(),
            "messageId": message_id or uuid.uuid4().hex,
        },
        separators=(",", ":"),
        default=str,
    )


def error_text(code: str, message: str, about: str = "") -> str:
    payload = {"code": code, "message": message}
    if about:
        payload["messageId"] = about
    return frame_text("error", payload)


def stream_id_key(message_id: str) -> tuple[int, int]:
    """Stream ids order as (milliseconds, sequence), not as strings."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class ClientFrame:
    type: str
    payload: dict[str, Any]
    message_id: str


class BadFrame(Exception):
    def __init__(self, code: str, message: str, about: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.about = about


def _require_str(payload: dict[str, Any], name: str, frame_type: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise BadFrame("missing_field", f"{frame_type}: payload.{name} must be a non-empty string.")
    return value


def parse_client_frame(text: str | None, raw_bytes: bytes | None, max_bytes: int) -> ClientFrame:  # noqa: C901 - one check per frame field, each with its own error
    """The validated frame, or ``BadFrame`` naming the problem."""
    if raw_bytes is not None:
        raise BadFrame("binary_not_supported", "Frames are JSON text, not binary.")
    size = len((text or "").encode())
    if size > max_bytes:
        raise BadFrame("too_large", f"Frame is {size} bytes; the limit is {max_bytes}.")
    try:
        data = json.loads(text or "")
    except ValueError:
        raise BadFrame("invalid_json", "Frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadFrame("invalid_frame", "Frame must be a JSON object.")
    raw_id = data.get("messageId")
    message_id = raw_id if isinstance(raw_id, str) else ""
    frame_type = data.get("type")
    if not isinstance(frame_type, str) or not frame_type:
        raise BadFrame("missing_field", "Frame has no type.", message_id)
    if frame_type not in CLIENT_TYPES:
        raise BadFrame(
            "unknown_type",
            f"Unknown frame type {frame_type[:40]!r}; expected one of {', '.join(CLIENT_TYPES)}.",
            message_id,
        )
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise BadFrame("invalid_frame", "payload must be a JSON object.", message_id)
    try:
        if frame_type == "ack":
            # Checked here, not in the database: a NUL byte in an id made psycopg refuse
            # the whole shared ack batch, so one client could drop every store's acks.
            acked = _require_str(payload, "messageId", "ack")
            if not (STREAM_ID.match(acked) or UUID.match(acked)):
                raise BadFrame(
                    "invalid_field", "ack: payload.messageId must be a messageId like '1712-0'."
                )
        elif frame_type == "tracking":
            if not UUID.match(_require_str(payload, "intervention_id", "tracking")):
                raise BadFrame("invalid_field", "tracking: payload.intervention_id must be a UUID.")
            event = _require_str(payload, "event", "tracking")
            if event not in TRACKING_EVENTS:
                raise BadFrame(
                    "invalid_field",
                    f"tracking: payload.event must be one of {', '.join(TRACKING_EVENTS)}.",
                )
        elif frame_type == "resume":
            after = _require_str(payload, "after", "resume")
            if not STREAM_ID.match(after):
                raise BadFrame(
                    "invalid_field", "resume: payload.after must be a messageId like '1712-0'."
                )
    except BadFrame as problem:
        raise BadFrame(problem.code, problem.message, message_id) from None
    return ClientFrame(type=frame_type, payload=payload, message_id=message_id)
