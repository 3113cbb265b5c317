"""One keep-alive clock per event loop for every WebSocket connection it holds
(docs/websocket-protocol.md#keep-alive).

Each connection is visited once per ``WS_HEARTBEAT_SECONDS``: closed if it has been
silent longer than ``WS_IDLE_TIMEOUT_SECONDS``, otherwise sent a ``heartbeat``, its
registry entry refreshed and, after this process lost Redis, caught up. A task and a
timer per connection cost 10,000 sockets about a fifth of a core (issue 12); here the
connections sit on a wheel of one-second slots, one slot per tick, walked in slices with
a yield to the loop between slices, and each slice refreshes its registry entries in
one Redis pipeline.

Silence is judged in loop time, not wall time. When the event loop stalls (a long
synchronous call, a GC pause, a starved process), the frames clients sent meanwhile sit
unread in the sockets' buffers, and a clock that judged on waking would close live
clients (an earlier clock closed ~60 % of 5,000 sockets that way). So a tick or a slice
that resumes more than a tick late is a stall: its length is credited to every
connection heard before it, and nobody is closed for a tick after it was noticed; the
connections visited meanwhile are judged again a heartbeat later, once their frames
have been read.
"""

import asyncio
import math
import random
import time
from collections.abc import Coroutine
from typing import Any, Protocol
from weakref import WeakKeyDictionary

import structlog
from django.conf import settings
from prometheus_client import Counter

from realtime import registry
from realtime.protocol import frame_text

logger = structlog.get_logger(__name__)

STALLS = Counter(
    "engine_websocket_keep_alive_stalls_total",
    "Keep-alive ticks that ran more than a tick late (the event loop stalled).",
)

TICK_SECONDS = 1.0
# Connections judged between two yields to the event loop: at 10,000 connections and a
# 25 s heartbeat a slot holds ~400, walked in two slices.
SLICE = 200


class KeptAlive(Protocol):
    """What the clock needs of a connection (``realtime.consumers.RoomConsumer``)."""

    store_id: str
    holder: str
    channel_name: str
    last_heard: float  # time.monotonic() of the last frame received
    caught_up_at: float

    async def send_heartbeat(self, text: str) -> None: ...

    async def close_for_silence(self) -> None: ...

    async def catch_up(self) -> None: ...


class KeepAliveClock:
    def __init__(self, heartbeat_seconds: float, idle_timeout_seconds: float):
        self.heartbeat_seconds = heartbeat_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self.slots = max(1, round(heartbeat_seconds / TICK_SECONDS))
        self.tick = heartbeat_seconds / self.slots
        self.wheel: list[dict[KeptAlive, None]] = [{} for _ in range(self.slots)]
        self.slot_of: dict[KeptAlive, int] = {}
        self.cursor = 0
        # (when the stall was noticed, its length in seconds), newest last; rare.
        self.stalls: list[tuple[float, float]] = []
        # No idle close before this (monotonic): a tick after the last stall noticed.
        self.closes_held_until = 0.0
        self.catching_up: set[KeptAlive] = set()
        self.worker: asyncio.Task[None] | None = None
        self.errands: set[asyncio.Task[None]] = set()

    def add(self, connection: KeptAlive) -> None:
        # First heartbeat half a period to a period from now: connections accepted in
        # one storm spread over the wheel instead of ticking together.
        ahead = random.randint(math.ceil(self.slots / 2), self.slots)
        slot = (self.cursor + ahead) % self.slots
        self.wheel[slot][connection] = None
        self.slot_of[connection] = slot
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self.run())

    def discard(self, connection: KeptAlive) -> None:
        slot = self.slot_of.pop(connection, None)
        if slot is not None:
            self.wheel[slot].pop(connection, None)
        # No connections, no timer. When the clock itself closed the last idle connection
        # it stops on its own (``run``): cancelling itself could cut that close short.
        if not self.slot_of and self.worker not in (None, asyncio.current_task()):
            self.worker.cancel()
            self.worker = None

    def __len__(self) -> int:
        return len(self.slot_of)

    async def run(self) -> None:
        due = time.monotonic() + self.tick
        while self.slot_of:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            # After a stall the wheel carries on from where it was: the missed slots are
            # not run back to back (their connections' deadlines moved with the stall).
            due = now + self.tick if self.noticed(now, now - due) else due + self.tick
            self.cursor = (self.cursor + 1) % self.slots
            await self.visit(list(self.wheel[self.cursor]))

    def noticed(self, now: float, late: float) -> bool:
        """Whether resuming ``late`` seconds after we meant to is a stall; if so, remember it."""
        if late <= self.tick:
            return False
        STALLS.inc()
        logger.warning("websocket_keep_alive_stalled", seconds=round(late, 3))
        self.stalls.append((now, late))
        self.closes_held_until = now + self.tick
        # A connection silent for longer than this is idle whatever the stalls were.
        horizon = self.idle_timeout_seconds + 2 * self.heartbeat_seconds
        horizon += sum(seconds for _, seconds in self.stalls)
        self.stalls = [(at, seconds) for at, seconds in self.stalls if at > now - horizon]
        return True

    def silent_for(self, last_heard: float, now: float) -> float:
        """Seconds without a frame from the client, the event loop's stalls since not counted."""
        silent = now - last_heard
        for noticed_at, seconds in self.stalls:
            if noticed_at > last_heard:
                silent -= seconds
        return silent

    async def visit(self, connections: list[KeptAlive]) -> None:
        for first in range(0, len(connections), SLICE):
            if first:
                yielded = time.monotonic()
                await asyncio.sleep(0)
                now = time.monotonic()
                self.noticed(now, now - yielded)
            await self.visit_slice(connections[first : first + SLICE])

    async def visit_slice(self, connections: list[KeptAlive]) -> None:
        now = time.monotonic()
        # Right after a stall the frames clients sent during it may still be unread.
        hold_closes = now < self.closes_held_until
        # One frame text per slice, not a timestamp, a random id and a JSON dump per
        # connection.
        heartbeat = frame_text("heartbeat", {})
        refreshed: list[tuple[str, str, str]] = []
        behind: list[KeptAlive] = []
        # Two heartbeats past the process's last Redis failure: the subscription may come
        # back a moment after Redis answers, so one catch-up could be too early.
        failed_at = registry.last_failure() + 2 * self.heartbeat_seconds
        for connection in connections:
            if connection not in self.slot_of:
                continue  # gone while the clock yielded
            silent = self.silent_for(connection.last_heard, now)
            if silent > self.idle_timeout_seconds and not hold_closes:
                self.discard(connection)
                await connection.close_for_silence()
                continue
            await connection.send_heartbeat(heartbeat)
            refreshed.append((connection.store_id, connection.holder, connection.channel_name))
            if failed_at > connection.caught_up_at and connection not in self.catching_up:
                behind.append(connection)
        if refreshed:
            self.spawn(registry.refresh(refreshed))
        if behind:
            self.catching_up.update(behind)
            self.spawn(self.catch_up(behind))

    async def catch_up(self, connections: list[KeptAlive]) -> None:
        try:
            await asyncio.gather(*(c.catch_up() for c in connections))
        finally:
            self.catching_up.difference_update(connections)

    def spawn(self, errand: Coroutine[Any, Any, None]) -> None:
        # Redis writes and catch-ups run beside the walk: the clock never waits on I/O,
        # so a slow Redis cannot pass for a stalled loop.
        task = asyncio.create_task(errand)
        self.errands.add(task)
        task.add_done_callback(self.errands.discard)


_clocks: "WeakKeyDictionary[asyncio.AbstractEventLoop, KeepAliveClock]" = WeakKeyDictionary()


def keep_alive_clock() -> KeepAliveClock:
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = KeepAliveClock(
            float(settings.WS_HEARTBEAT_SECONDS), float(settings.WS_IDLE_TIMEOUT_SECONDS)
        )
    return clock
