"""The replay log: one Redis Stream per room (docs/websocket-protocol.md#replay).

A stream entry's id (``<ms>-<seq>``) is the frame's ``messageId``, so ids are ordered and
a client resumes with the last id it saw. An intervention goes into the store's stream
and the shopper's stream under the *same* id (one Lua script, atomic), so a message has
one id whichever room it is read from. Streams are trimmed to ``WS_REPLAY_WINDOW`` seconds
and expire when a room stays silent that long; Postgres stays the source of truth.
"""

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from realtime.redis_clients import async_redis, sync_redis
from realtime.registry import user_digest

REPLAY_BATCH = 500

# XADD with an explicit id requires it to exceed the stream's last id: it does, because
# every entry of a user stream was first added to its store stream in this same script.
_APPEND = """
local id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*',
  'type', ARGV[2], 'payload', ARGV[3], 'timestamp', ARGV[4], 'intervention_id', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
if KEYS[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[1], id,
    'type', ARGV[2], 'payload', ARGV[3], 'timestamp', ARGV[4], 'intervention_id', ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return id
"""


@dataclass(frozen=True)
class LoggedFrame:
    message_id: str
    intervention_id: str
    text: str


def store_room(store_id: str) -> str:
    return f"store.{store_id}"


def user_room(store_id: str, user_id: str) -> str:
    return f"user.{store_id}.{user_digest(user_id)}"


def stream_key(room: str) -> str:
    return f"ie:ws:room:{room}"


def assemble(frame_type: str, payload_json: str, timestamp: str, message_id: str) -> str:
    # The payload is stored as JSON text and spliced in as is: no decode/encode per frame.
    return (
        f'{{"type":"{frame_type}","payload":{payload_json},'
        f'"timestamp":"{timestamp}","messageId":"{message_id}"}}'
    )


def append(
    store_id: str,
    user_id: str,
    frame_type: str,
    payload_json: str,
    timestamp: str,
    intervention_id: str,
) -> str:
    """Log the frame in the store's room and the shopper's room; return its messageId."""
    window = int(settings.WS_REPLAY_WINDOW)
    min_id = int((time.time() - window) * 1000)
    message_id = sync_redis().eval(
        _APPEND,
        2,
        stream_key(store_room(store_id)),
        stream_key(user_room(store_id, user_id)) if user_id else "",
        min_id,
        frame_type,
        payload_json,
        timestamp,
        intervention_id,
        window + 60,
    )
    return message_id.decode() if isinstance(message_id, bytes) else str(message_id)


async def read_after(room: str, after: str) -> list[LoggedFrame]:
    """Every logged frame of ``room`` after ``after`` that is still in the window, in order."""
    cutoff_ms = int((time.time() - settings.WS_REPLAY_WINDOW) * 1000)
    start = f"({after}"
    client = async_redis()
    frames: list[LoggedFrame] = []
    while True:
        entries: Any = await client.xrange(stream_key(room), min=start, max="+", count=REPLAY_BATCH)
        for raw_id, fields in entries:
            message_id = raw_id.decode()
            if int(message_id.partition("-")[0]) < cutoff_ms:
                continue
            frames.append(
                LoggedFrame(
                    message_id=message_id,
                    intervention_id=fields.get(b"intervention_id", b"").decode(),
                    text=assemble(
                        fields[b"type"].decode(),
                        fields[b"payload"].decode(),
                        fields[b"timestamp"].decode(),
                        message_id,
                    ),
                )
            )
        if len(entries) < REPLAY_BATCH:
            return frames
        start = f"({entries[-1][0].decode()}"


def erase_frames(store_id: str, user_id: str, intervention_ids: set[str]) -> int:
    """Forget a shopper's frames: drop their room's stream, and their interventions'
    entries from the store's stream (which carries the same payloads). Returns how many
    store-stream entries went; the window bounds the scan."""
    client = sync_redis()
    client.delete(stream_key(user_room(store_id, user_id)))
    key = stream_key(store_room(store_id))
    erased = 0
    start = "-"
    while intervention_ids:
        entries: Any = client.xrange(key, min=start, max="+", count=REPLAY_BATCH)
        doomed = [
            raw_id
            for raw_id, fields in entries
            if fields.get(b"intervention_id", b"").decode() in intervention_ids
        ]
        if doomed:
            erased += int(client.xdel(key, *doomed))
        if len(entries) < REPLAY_BATCH:
            break
        start = f"({entries[-1][0].decode()}"
    return erased
