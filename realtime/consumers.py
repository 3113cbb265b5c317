"""WebSocket consumers for store and shopper rooms (docs/websocket-protocol.md).

They authenticate (signed token, Origin, per-store connection limit), join the room,
forward the room's frames, and turn a client's ``ack`` / ``tracking`` frames into one
action each (``interventions.actions``).
"""

import time
from collections import OrderedDict
from functools import partial
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import redis
import structlog
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import Counter, Gauge

from interventions import actions
from realtime import registry, replay
from realtime.acks import ack_batcher
from realtime.keepalive import keep_alive_clock
from realtime.pending import pending_check
from realtime.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_IDLE,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNKNOWN_STORE,
    STREAM_ID,
    BadFrame,
    ClientFrame,
    error_text,
    frame_text,
    parse_client_frame,
)
from realtime.tokens import TokenRefused, check_token
from stores.models import Store

logger = structlog.get_logger(__name__)

LIVE_CONNECTIONS = Gauge(
    "engine_websocket_connections", "Open WebSocket connections in this process.", ["room"]
)
REFUSED = Counter(
    "engine_websocket_refused_total", "WebSocket connections refused, by reason.", ["reason"]
)
BAD_FRAMES = Counter(
    "engine_websocket_bad_frames_total", "Client frames answered with an error.", ["problem"]
)
IDLE_CLOSED = Counter(
    "engine_websocket_idle_closed_total", "Connections closed for silence beyond the idle timeout."
)
FRAMES_SENT = Counter(
    "engine_websocket_frames_sent_total", "Intervention frames sent, by how.", ["how"]
)
CATCH_UPS = Counter(
    "engine_websocket_catch_ups_total",
    "Connections that caught up from the replay stream after this process lost Redis.",
)

REMEMBERED_FRAMES = 1000
STORE_CACHE_SECONDS = 30.0

# Store lookups run outside the single thread shared by sync views, so a connect storm
# does not queue behind (or in front of) HTTP requests.
_db = database_sync_to_async


class StoreRules:
    """The per-store settings a connection is checked against, cached briefly so a
    reconnect storm does not become a Postgres storm."""

    _cache: ClassVar[dict[str, tuple[float, "StoreRules | None"]]] = {}

    def __init__(self, allowed_origins: list[str], connection_limit: int):
        self.allowed_origins = allowed_origins
        self.connection_limit = connection_limit

    @classmethod
    def _load(cls, store_id: str) -> "StoreRules | None":
        row = (
            Store.objects.filter(pk=store_id)
            .values("allowed_origins", "max_websocket_connections")
            .first()
        )
        if row is None:
            return None
        return cls(list(row["allowed_origins"] or []), int(row["max_websocket_connections"]))

    @classmethod
    async def of(cls, store_id: str) -> "StoreRules | None":
        cached = cls._cache.get(store_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        rules = await _db(cls._load, thread_sensitive=False)(store_id)
        cls._cache[store_id] = (time.monotonic() + STORE_CACHE_SECONDS, rules)
        return rules

    @classmethod
    def forget(cls) -> None:
        cls._cache.clear()


class FrameBudget:
    """A token bucket: ``per_second`` frames on average, ``burst`` at once. Per connection,
    in memory: it bounds what one socket costs this process (replays, database writes)."""

    def __init__(self, per_second: float, burst: int):
        self.per_second = per_second
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def spend(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class RoomConsumer(AsyncWebsocketConsumer):
    room_kind: ClassVar[str]

    store_id = ""
    user_id = ""
    holder = ""  # whose connections are capped together (registry.holder_of)
    room = ""
    registered = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels (4.2+) first hops to the shared sync thread to close stale database
        # connections before EVERY message: each frame sent, each ack and heartbeat
        # received. ~9 % of a web process's samples under the trigger benchmark (issue 12),
        # and it queued behind the HTTP views on that one thread. These consumers touch
        # the database only through ``database_sync_to_async``, which does the same
        # housekeeping in its own worker thread around each call.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        route = self.scope["url_route"]["kwargs"]
        self.store_id = str(route.get("store_id", ""))
        self.user_id = str(route.get("user_id", ""))
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        token = query.get("token", [""])[0]
        resume_after = query.get("last_message_id", [""])[0]
        self.sent: OrderedDict[str, str] = OrderedDict()
        self.last_heard = self.caught_up_at = time.monotonic()
        # Stream ids are milliseconds: a dashboard's catch-up starts no earlier than this.
        self.connected_stream_id = f"{int(time.time() * 1000)}-0"
        self.budgets = {
            "resume": FrameBudget(settings.WS_RESUMES_PER_SECOND, 1),
            "tracking": FrameBudget(settings.WS_TRACKING_PER_SECOND, settings.WS_TRACKING_BURST),
        }

        if resume_after and not STREAM_ID.match(resume_after):
            return await self.refuse(CLOSE_BAD_REQUEST, "bad_last_message_id")
        try:
            claim = check_token(token, self.room_kind, self.store_id, self.user_id)
        except TokenRefused as refusal:
            code = CLOSE_FORBIDDEN if refusal.problem == "mismatch" else CLOSE_UNAUTHENTICATED
            return await self.refuse(code, f"token_{refusal.problem}")
        self.store_id = claim.store_id
        self.holder = registry.holder_of(self.room_kind, self.user_id, token)
        rules = await StoreRules.of(self.store_id)
        if rules is None:
            return await self.refuse(CLOSE_UNKNOWN_STORE, "unknown_store")
        origin = self.header("origin")
        # Browsers always send Origin; server-side clients (the store's own backend, our
        # benchmarks) may not, and they can forge it anyway, so only its presence is checked.
        if origin and origin not in rules.allowed_origins and not self.same_origin(origin):
            return await self.refuse(CLOSE_FORBIDDEN, "origin_not_allowed")
        try:
            admitted = await registry.register(
                self.store_id,
                self.room_kind,
                self.user_id,
                self.channel_name,
                rules.connection_limit,
                self.holder,
            )
        except redis.RedisError as exc:
            logger.warning("websocket_registry_unreachable", error=str(exc))
            return await self.refuse(CLOSE_TRY_AGAIN_LATER, "registry_unreachable")
        if admitted == registry.STORE_LIMIT:
            return await self.refuse(CLOSE_TOO_MANY_CONNECTIONS, "connection_limit")
        if admitted == registry.USER_LIMIT:
            reason = (
                "user_connection_limit" if self.room_kind == "user" else "token_connection_limit"
            )
            return await self.refuse(CLOSE_TOO_MANY_CONNECTIONS, reason)
        self.registered = True
        self.room = (
            replay.user_room(self.store_id, self.user_id)
            if self.room_kind == "user"
            else replay.store_room(self.store_id)
        )
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()
        LIVE_CONNECTIONS.labels(self.room_kind).inc()
        await self.send(text_data=frame_text("config", self.config_payload()))
        if resume_after:
            await self.replay_after(resume_after)
        if self.room_kind == "user" and await pending_check().has_pending(
            self.store_id, self.user_id
        ):
            await self.send_pending()
        # Heartbeats, the idle judgement, registry refreshes and catch-ups: one clock
        # per process for every connection, not a task each (realtime/keepalive.py).
        keep_alive_clock().add(self)

    async def refuse(self, code: int, reason: str) -> None:
        # A close before accept() becomes an HTTP 403 with no close code; browsers and
        # our client need the code to tell "fix your token" from "back off and retry".
        REFUSED.labels(reason).inc()
        logger.info(
            "websocket_refused",
            reason=reason,
            code=code,
            store_id=self.store_id,
            room=self.room_kind,
        )
        await self.accept()
        await self.close(code=code)

    def same_origin(self, origin: str) -> bool:
        # Pages the engine serves itself (the demo storefront) are not cross-site.
        host = self.header("host")
        return bool(host) and urlsplit(origin).netloc == host

    def header(self, name: str) -> str:
        wanted = name.encode()
        for key, value in self.scope.get("headers", []):
            if key.lower() == wanted:
                return str(value.decode(errors="replace"))
        return ""

    def config_payload(self) -> dict[str, Any]:
        return {
            "room": self.room_kind,
            "store_id": self.store_id,
            "user_id": self.user_id,
            "heartbeat_seconds": settings.WS_HEARTBEAT_SECONDS,
            "idle_timeout_seconds": settings.WS_IDLE_TIMEOUT_SECONDS,
            "max_message_bytes": settings.WS_MAX_MESSAGE_BYTES,
            "replay_window_seconds": settings.WS_REPLAY_WINDOW,
        }

    async def disconnect(self, code: int) -> None:
        if not self.registered:
            return
        self.registered = False
        keep_alive_clock().discard(self)
        LIVE_CONNECTIONS.labels(self.room_kind).dec()
        await self.channel_layer.group_discard(self.room, self.channel_name)
        await registry.unregister(self.store_id, self.holder, self.channel_name)

    # --- server → client ------------------------------------------------------

    async def send_frame(self, message_id: str, intervention_id: str, text: str, how: str) -> None:
        self.sent[message_id] = intervention_id
        while len(self.sent) > REMEMBERED_FRAMES:
            self.sent.popitem(last=False)
        FRAMES_SENT.labels(how).inc()
        await self.send(text_data=text)

    async def room_frame(self, event: dict[str, Any]) -> None:
        """A frame published to this room by any server process."""
        if event["message_id"] in self.sent:
            return  # already sent by replay or the offline resend
        await self.send_frame(event["message_id"], event["intervention_id"], event["text"], "live")

    async def replay_after(self, after: str) -> None:
        for logged in await replay.read_after(self.room, after):
            if logged.message_id in self.sent:
                continue  # a resume answers only what this connection has not sent yet
            await self.send_frame(logged.message_id, logged.intervention_id, logged.text, "replay")

    async def send_pending(self) -> None:
        """Interventions sent while the shopper was offline and never acknowledged."""
        pending = await _db(actions.pending_for_shopper, thread_sensitive=False)(
            self.store_id, self.user_id
        )
        already = set(self.sent.values())
        pending = [frame for frame in pending if frame.intervention_id not in already]
        if not pending:
            return
        # Prefer the logged frame, byte for byte what a live client got.
        logged = {
            frame.intervention_id: frame for frame in await replay.read_after(self.room, "0-0")
        }
        for frame in pending:
            if frame.intervention_id in logged:
                text = logged[frame.intervention_id].text
                message_id = logged[frame.intervention_id].message_id
            else:
                message_id = frame.message_id
                text = frame_text("intervention", frame.payload, message_id=message_id)
            await self.send_frame(message_id, frame.intervention_id, text, "offline")

    # --- keep-alive (called by realtime.keepalive's clock) ----------------------

    async def send_heartbeat(self, text: str) -> None:
        await self.send(text_data=text)

    async def close_for_silence(self) -> None:
        IDLE_CLOSED.inc()
        logger.info("websocket_idle_closed", store_id=self.store_id, room=self.room_kind)
        await self.close(code=CLOSE_IDLE)

    async def catch_up(self) -> None:
        """Send what was published for this room while this process's pub/sub link was
        down (and until it resubscribed): a shopper's unacknowledged interventions, or a
        dashboard's frames since its last one. Without it they waited for a reconnect."""
        try:
            if self.room_kind == "user":
                await self.send_pending()
            else:
                await self.replay_after(next(reversed(self.sent), self.connected_stream_id))
        except (redis.RedisError, DatabaseError) as exc:
            logger.info("websocket_catch_up_deferred", store_id=self.store_id, error=str(exc))
            return
        CATCH_UPS.inc()
        self.caught_up_at = time.monotonic()

    # --- client → server ------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.registered:
            return  # refused: frames racing the close must not act on anything
        self.last_heard = time.monotonic()
        try:
            frame = parse_client_frame(text_data, bytes_data, settings.WS_MAX_MESSAGE_BYTES)
        except BadFrame as problem:
            BAD_FRAMES.labels(problem.code).inc()
            await self.send(text_data=error_text(problem.code, problem.message, problem.about))
            return
        if frame.type in ("ack", "tracking") and self.room_kind != "user":
            # A store token watches every shopper's frames (a dashboard); were it allowed
            # to ack or track, anyone holding one could mark any intervention delivered or
            # clicked. Only the shopper's own page speaks for what the shopper saw.
            BAD_FRAMES.labels("read_only").inc()
            await self.send(
                text_data=error_text(
                    "read_only",
                    f"A {self.room_kind} connection is read-only: only a user connection "
                    f"may send {frame.type} frames.",
                    frame.message_id,
                )
            )
        elif frame.type in self.budgets and not self.budgets[frame.type].spend():
            BAD_FRAMES.labels("rate_limited").inc()
            await self.send(
                text_data=error_text(
                    "rate_limited",
                    f"Too many {frame.type} frames on this connection; this one was ignored.",
                    frame.message_id,
                )
            )
        elif frame.type == "heartbeat":
            await self.send(text_data=frame_text("heartbeat", {"reply_to": frame.message_id}))
        elif frame.type == "ack":
            await self.acknowledge(frame)
        elif frame.type == "tracking":
            await self.track(frame)
        elif frame.type == "resume":
            await self.replay_after(frame.payload["after"])

    async def acknowledge(self, frame: ClientFrame) -> None:
        message_id = frame.payload["messageId"]
        ack_batcher().submit(
            actions.AckRequest(
                store_id=self.store_id,
                user_id=self.user_id,
                intervention_id=self.sent.get(message_id, ""),
                message_id=message_id,
                at=timezone.now(),
            ),
            partial(self.ack_was_for_nothing, frame.message_id),
        )

    async def ack_was_for_nothing(self, frame_message_id: str, ack: actions.AckRequest) -> None:
        BAD_FRAMES.labels("unknown_message").inc()
        await self.send(
            text_data=error_text(
                "unknown_message",
                f"No intervention was sent as {ack.message_id[:40]!r}.",
                frame_message_id,
            )
        )

    async def track(self, frame: ClientFrame) -> None:
        intervention_id = frame.payload["intervention_id"]
        recorded = await _db(actions.do_record_shopper_tracking, thread_sensitive=False)(
            self.store_id,
            self.user_id,
            intervention_id,
            frame.payload["event"],
            frame.message_id,
        )
        if not recorded:
            BAD_FRAMES.labels("unknown_intervention").inc()
            await self.send(
                text_data=error_text(
                    "unknown_intervention",
                    f"No intervention {intervention_id[:40]!r} in this room.",
                    frame.message_id,
                )
            )


class StoreRoomConsumer(RoomConsumer):
    room_kind = "store"


class UserRoomConsumer(RoomConsumer):
    room_kind = "user"
