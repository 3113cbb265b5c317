"""Who is connected over WebSocket, per store, in Redis (docs/websocket-protocol.md#registry).

Keys (all under ``ie:ws:``):
- ``conns:{store}``: sorted set, member = channel name, score = last activity (epoch s);
- ``info:{store}``: hash, channel name → JSON {scope, user_id, instance, connected_at};
- ``user:{store}:{user digest}``: sorted set of that shopper's channel names;
- ``token:{store}:{token digest}``: sorted set of the channel names opened with one store
  token (store rooms: a dashboard's tabs, or one leaked token).

Every connection's score is refreshed each heartbeat (``refresh``, by the keep-alive
clock), so the entries of a process that died without cleaning up age out after
``WS_IDLE_TIMEOUT_SECONDS + WS_HEARTBEAT_SECONDS`` instead of counting against the
store's limit forever.
"""

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import redis
import structlog
from django.conf import settings
from prometheus_client import Counter

from realtime.redis_clients import async_redis, sync_redis

logger = structlog.get_logger(__name__)

INSTANCE = f"{socket.gethostname()}:{os.getpid()}"

REGISTRY_ERRORS = Counter(
    "engine_websocket_registry_errors_total",
    "Redis errors while reading or writing the WebSocket connection registry.",
    ["operation"],
)

# Atomic so that a connect storm cannot overshoot a limit between count and add.
# Returns 1 (admitted), 0 (the store is at its limit) or -1 (the holder, a shopper in a
# user room or one token in a store room, is at theirs: ARGV[7]).
# Stale entries go in chunks: Lua's unpack() fails past ~8,000 values ("too many results
# to unpack"), and the info hash is cleaned before the index, so a failure can never
# leave orphaned info fields behind a cleaned index.
_REGISTER = """
local cutoff = tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #stale > 0 then
  for first = 1, #stale, 1000 do
    redis.call('HDEL', KEYS[2], unpack(stale, first, math.min(first + 999, #stale)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
end
if KEYS[3] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then
    return -1
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
if KEYS[3] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
return 1
"""

# When this process last failed to reach Redis (monotonic; 0: never). A subscription
# broken with the link misses what is published until channels_redis resubscribes, so
# connections catch up from the replay stream once Redis answers again (consumers).
_last_failure = 0.0


def note_failure() -> None:
    global _last_failure  # one per process, like the metric
    _last_failure = time.monotonic()


def last_failure() -> float:
    return _last_failure


ADMITTED = "admitted"
STORE_LIMIT = "store_limit"
USER_LIMIT = "user_limit"  # the holder's cap: a shopper's, or a store token's
_OUTCOMES = {1: ADMITTED, 0: STORE_LIMIT, -1: USER_LIMIT}


def user_digest(user_id: str) -> str:
    # Shoppers' ids are the store's own strings; a digest keeps keys and Channels group
    # names (ASCII, < 100 characters) valid whatever they contain.
    return hashlib.sha256(user_id.encode()).hexdigest()[:32]


def stale_after_seconds() -> float:
    return float(settings.WS_IDLE_TIMEOUT_SECONDS + settings.WS_HEARTBEAT_SECONDS)


def holder_of(scope: str, user_id: str, token: str) -> str:
    """Whose connections are capped together: the shopper in a user room (any of their
    tokens), the token itself in a store room."""
    if scope == "user":
        return user_id
    return f"token:{hashlib.sha256(token.encode()).hexdigest()[:32]}" if token else ""


def _keys(store_id: str, holder: str) -> tuple[str, str, str]:
    if holder.startswith("token:"):
        held = f"ie:ws:token:{store_id}:{holder.removeprefix('token:')}"
    else:
        held = f"ie:ws:user:{store_id}:{user_digest(holder)}" if holder else ""
    return f"ie:ws:conns:{store_id}", f"ie:ws:info:{store_id}", held


def holder_limit(holder: str) -> int:
    if holder.startswith("token:"):
        return int(settings.WS_MAX_CONNECTIONS_PER_STORE_TOKEN)
    return int(settings.WS_MAX_CONNECTIONS_PER_USER)


async def register(
    store_id: str, scope: str, user_id: str, channel_name: str, limit: int, holder: str = ""
) -> str:
    """Record the connection: ``ADMITTED``, or ``STORE_LIMIT`` when the store is at
    ``limit``, or ``USER_LIMIT`` when the holder (``holder_of``) is at its cap:
    ``WS_MAX_CONNECTIONS_PER_USER`` for a shopper, ``WS_MAX_CONNECTIONS_PER_STORE_TOKEN``
    for a store token. So one shopper's tabs, one leaked user token or one leaked store
    token cannot take the store's whole limit."""
    now = time.time()
    holder = holder or (user_id if scope == "user" else "")
    conns, info, user = _keys(store_id, holder)
    details = json.dumps(
        {"scope": scope, "user_id": user_id, "instance": INSTANCE, "connected_at": now}
    )
    client = async_redis()
    admitted = await client.eval(
        _REGISTER,
        3,
        conns,
        info,
        user,
        now - stale_after_seconds(),
        limit,
        now,
        channel_name,
        details,
        int(stale_after_seconds()) + 1,
        holder_limit(holder),
    )
    return _OUTCOMES[int(admitted)]


# Refreshes one store's connections: KEYS[1] the store's index, KEYS[2..] the holders'
# keys of the first #KEYS - 1 channel names in ARGV[3..] (those with a holder come
# first). XX: an entry already removed (a disconnect, a cleanup) is not brought back.
# One command per store instead of two or three per connection: packing them was most
# of the refresh's CPU in the web process (issue 12).
_REFRESH = """
local now = ARGV[1]
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i])
end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now, ARGV[i + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 0
"""


async def refresh(connections: list[tuple[str, str, str]]) -> None:
    """Refresh the last activity of ``(store_id, holder, channel_name)`` connections (one
    slice of a keep-alive tick, ``realtime.keepalive``) in one pipeline: 10k connections
    at a 25 s heartbeat are 400 refreshes/s, otherwise 400 round trips. ``holder`` as
    given to ``register``."""
    by_store: dict[str, list[tuple[str, str]]] = {}
    for store_id, holder, channel_name in connections:
        by_store.setdefault(store_id, []).append((holder, channel_name))
    ttl = int(stale_after_seconds()) + 1
    try:
        async with async_redis().pipeline(transaction=False) as pipe:
            for store_id, members in by_store.items():
                members.sort(key=lambda member: not member[0])
                held = [_keys(store_id, holder)[2] for holder, _ in members if holder]
                conns = _keys(store_id, "")[0]
                names = [name for _, name in members]
                pipe.eval(_REFRESH, 1 + len(held), conns, *held, time.time(), ttl, *names)
            await pipe.execute()
    except redis.RedisError as exc:
        note_failure()
        REGISTRY_ERRORS.labels("touch").inc()
        logger.warning("websocket_registry_touch_failed", error=str(exc))


async def unregister(store_id: str, holder: str, channel_name: str) -> None:
    conns, info, user = _keys(store_id, holder)
    try:
        async with async_redis().pipeline(transaction=False) as pipe:
            pipe.zrem(conns, channel_name)
            pipe.hdel(info, channel_name)
            if user:
                pipe.zrem(user, channel_name)
            await pipe.execute()
    except redis.RedisError as exc:
        note_failure()
        REGISTRY_ERRORS.labels("unregister").inc()
        logger.warning("websocket_registry_unregister_failed", store_id=store_id, error=str(exc))


def is_connected(store_id: str, user_id: str) -> bool:
    """Whether the shopper has a live WebSocket connection on any server instance."""
    _, _, user = _keys(str(store_id), user_id)
    try:
        live = sync_redis().zcount(user, time.time() - stale_after_seconds(), "+inf")
    except redis.RedisError as exc:
        # Unknown is treated as offline: the pipeline then picks a channel that does not
        # depend on a live socket.
        REGISTRY_ERRORS.labels("is_connected").inc()
        logger.warning("websocket_registry_unreachable", store_id=str(store_id), error=str(exc))
        return False
    return bool(live)


def connected_among(store_id: str, user_ids: Iterable[str]) -> set[str]:
    """``is_connected`` for many shoppers of a store: one pipelined round trip."""
    user_ids = list(user_ids)
    since = time.time() - stale_after_seconds()
    try:
        with sync_redis().pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(_keys(str(store_id), user_id)[2], since, "+inf")
            counts = pipe.execute()
    except redis.RedisError as exc:
        REGISTRY_ERRORS.labels("is_connected").inc()
        logger.warning("websocket_registry_unreachable", store_id=str(store_id), error=str(exc))
        return set()  # unknown is offline, as for one shopper
    return {user_id for user_id, live in zip(user_ids, counts, strict=True) if live}


def connections(store_id: str) -> list[dict[str, Any]]:
    """The store's live connections: channel, scope, user, instance, since, last activity."""
    conns, info, _ = _keys(str(store_id), "")
    client = sync_redis()
    scored: Any = client.zrangebyscore(
        conns, time.time() - stale_after_seconds(), "+inf", withscores=True
    )
    if not scored:
        return []
    details: Any = client.hmget(info, [name for name, _ in scored])
    listing = []
    for (name, last_seen), raw in zip(scored, details, strict=True):
        entry = json.loads(raw) if raw else {}
        entry.update({"channel_name": name.decode(), "last_seen": last_seen})
        listing.append(entry)
    return listing
