"""Acks are written to Postgres in batches, off the consumers' path.

Profiling the trigger → frame benchmark showed one database round trip per ack (a thread
hop, a pool checkout, a lookup, the transition) costing more server CPU than the frame
itself; at 500 frames/s the acks alone saturated a process. Consumers now hand acks to
one batcher per event loop, which every ``ACK_BATCH_SECONDS`` resolves the whole batch
with one lookup in one worker thread. An ack that overtook the pipeline's ``sent``
bookkeeping is retried a few times; an ack for nothing in the room is answered with an
``error`` frame through the consumer's callback.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import structlog
from channels.db import database_sync_to_async
from prometheus_client import Counter, Histogram

from interventions.actions import AckRequest, do_acknowledge_many

logger = structlog.get_logger(__name__)

# A batch costs ~1.3 ms of CPU whatever its size (a thread hop, a pool checkout, the
# lookup and the one statement) and ~0.25 ms per ack on top (measured in-process, issue
# 12, stop 17): at 50 acks/s a 50 ms window wrote batches of ~2.5, 0.77 ms an ack; a
# 200 ms window writes ~10, 0.38 ms an ack. Only the row's move to ``delivered`` waits
# (its delivered_at is the ack's arrival); the frame and the shopper do not.
ACK_BATCH_SECONDS = 0.2
ACK_BATCH_MAX = 500
RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

ACKS = Counter("engine_websocket_acks_total", "Client acks, by outcome.", ["outcome"])
ACK_BATCH_SIZE = Histogram(
    "engine_websocket_ack_batch_size",
    "Acks written per batch.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
ACK_BATCH_FAILURES = Counter(
    "engine_websocket_ack_batch_failures_total", "Ack batches that failed (database errors)."
)
ACK_FAILURES = Counter(
    "engine_websocket_ack_failures_total",
    "Acks that failed on their own after their batch failed and was retried ack by ack.",
)

OnUnknown = Callable[[AckRequest], Awaitable[None]]


@dataclass
class PendingAck:
    request: AckRequest
    on_unknown: OnUnknown
    tries: int = 0


class AckBatcher:
    def __init__(self) -> None:
        self.pending: list[PendingAck] = []
        self.wakeup = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None

    def submit(self, request: AckRequest, on_unknown: OnUnknown) -> None:
        self._queue(PendingAck(request, on_unknown))

    def _queue(self, ack: PendingAck) -> None:
        self.pending.append(ack)
        self.wakeup.set()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            # Let a batch gather: acks arrive in bursts when a frame fans out.
            await asyncio.sleep(ACK_BATCH_SECONDS)
            self.wakeup.clear()
            while self.pending:
                batch, self.pending = self.pending[:ACK_BATCH_MAX], self.pending[ACK_BATCH_MAX:]
                await self._write(batch)

    async def _write(self, batch: list[PendingAck]) -> None:
        ACK_BATCH_SIZE.observe(len(batch))
        acknowledge = database_sync_to_async(do_acknowledge_many, thread_sensitive=False)
        try:
            outcomes = await acknowledge([ack.request for ack in batch])
        except Exception as exc:
            # The batch is shared by every connection of this process: one ack the
            # database refuses must not drop the others, so they are retried one by one
            # and only the bad one fails. A failed ack's row stays "sent"; the shopper's
            # next connection resends it and the client acks again.
            ACK_BATCH_FAILURES.inc()
            logger.error("websocket_ack_batch_failed", size=len(batch), error=str(exc))
            if len(batch) == 1:
                self._failed(batch[0], exc)
                return
            for ack in batch:
                try:
                    await self._resolve([ack], await acknowledge([ack.request]))
                except Exception as single_exc:
                    self._failed(ack, single_exc)
            return
        await self._resolve(batch, outcomes)

    def _failed(self, ack: PendingAck, exc: Exception) -> None:
        ACK_FAILURES.inc()
        logger.error(
            "websocket_ack_failed",
            store_id=ack.request.store_id,
            intervention_id=ack.request.intervention_id,
            message_id=ack.request.message_id[:80],
            error=str(exc),
        )

    async def _resolve(self, batch: list[PendingAck], outcomes: list[str]) -> None:
        loop = asyncio.get_running_loop()
        for ack, outcome in zip(batch, outcomes, strict=True):
            ACKS.labels(outcome).inc()
            if outcome == "not_yet_sent" and ack.tries < len(RETRY_DELAYS):
                ack.tries += 1
                loop.call_later(RETRY_DELAYS[ack.tries - 1], self._queue, ack)
            elif outcome == "not_yet_sent":
                logger.warning(
                    "websocket_ack_gave_up",
                    store_id=ack.request.store_id,
                    intervention_id=ack.request.intervention_id,
                    message_id=ack.request.message_id,
                )
            elif outcome == "unknown":
                try:
                    await ack.on_unknown(ack.request)
                except Exception as exc:  # the connection may be gone by now
                    logger.info("websocket_ack_error_not_sent", error=str(exc))


_batchers: "WeakKeyDictionary[asyncio.AbstractEventLoop, AckBatcher]" = WeakKeyDictionary()


def ack_batcher() -> AckBatcher:
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = AckBatcher()
    return batcher
