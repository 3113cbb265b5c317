"""Whether a connecting shopper has interventions waiting, asked for a batch of
handshakes at once (docs/websocket-protocol.md#replay).

Every user connection asks Postgres for the shopper's sent, unacknowledged interventions,
and the answer is almost always "none". One thread hop and one query per handshake were
the largest share of a handshake's CPU beyond what a bare Channels app does; here the
handshakes arriving within ``PENDING_BATCH_SECONDS`` (or while a query runs) share one hop
and one statement per store, and only a shopper with something waiting costs a query of
their own (``interventions.actions.pending_for_shopper``).
"""

import asyncio
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async

from interventions.actions import shoppers_with_pending

PENDING_BATCH_SECONDS = 0.02
PENDING_BATCH_MAX = 1000


class PendingCheck:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str, asyncio.Future[bool]]] = []
        self.worker: asyncio.Task[None] | None = None

    async def has_pending(self, store_id: str, user_id: str) -> bool:
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.asked.append((store_id, user_id, answer))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self.run())
        return await answer

    async def run(self) -> None:
        while self.asked:
            await asyncio.sleep(PENDING_BATCH_SECONDS)
            batch, self.asked = self.asked[:PENDING_BATCH_MAX], self.asked[PENDING_BATCH_MAX:]
            by_store: dict[str, list[str]] = {}
            for store_id, user_id, _ in batch:
                by_store.setdefault(store_id, []).append(user_id)
            try:
                waiting = await database_sync_to_async(
                    shoppers_with_pending, thread_sensitive=False
                )(by_store)
            except Exception as exc:
                # Each handshake fails as it did with a query of its own.
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for store_id, user_id, answer in batch:
                if not answer.done():  # a handshake abandoned meanwhile
                    answer.set_result((store_id, user_id) in waiting)


_checks: "WeakKeyDictionary[asyncio.AbstractEventLoop, PendingCheck]" = WeakKeyDictionary()


def pending_check() -> PendingCheck:
    loop = asyncio.get_running_loop()
    check = _checks.get(loop)
    if check is None:
        check = _checks[loop] = PendingCheck()
    return check
