"""The keep-alive clock: heartbeats and idle closes for every connection of a process
(docs/websocket-protocol.md#keep-alive, realtime/keepalive.py)."""

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from realtime import registry
from tests.realtime.conftest import open_room, random_user, room_url

pytestmark = pytest.mark.django_db(transaction=True)

BEAT = {"type": "heartbeat", "payload": {}, "timestamp": "", "messageId": "still-here"}


def drained(client: WebsocketCommunicator) -> list[dict[str, Any]]:
    """What the server sent so far, without waiting (a receive that times out would
    cancel the connection)."""
    outputs = []
    while not client.output_queue.empty():
        outputs.append(client.output_queue.get_nowait())
    return outputs


def close_codes(outputs: list[dict[str, Any]]) -> list[int]:
    return [int(o["code"]) for o in outputs if o["type"] == "websocket.close"]


async def keep_talking(client: WebsocketCommunicator, seconds: float) -> list[dict[str, Any]]:
    """A storefront that sends a heartbeat every 0.2 s for ``seconds``; what it received."""
    outputs: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await client.send_json_to(BEAT)
        await asyncio.sleep(0.2)
        outputs += drained(client)
    return outputs


async def test_a_stalled_event_loop_does_not_close_clients_that_spoke_during_the_stall(
    storefront, channel_layer, settings
):
    # given a 1 s idle timeout, a storefront that keeps talking and one that went silent
    settings.WS_HEARTBEAT_SECONDS = 0.2
    settings.WS_IDLE_TIMEOUT_SECONDS = 1.0
    store_id = str(storefront.store.pk)
    talking, _ = await open_room(room_url(store_id, "user", random_user()))
    silent, _ = await open_room(room_url(store_id, "user", random_user()))
    await keep_talking(talking, 0.4)

    # when the server's event loop is blocked for longer than the idle timeout, and the
    # talking storefront's heartbeat arrives during the block (read only once it ends)
    time.sleep(1.5)  # the stall under test: nothing else runs meanwhile
    await talking.send_json_to(BEAT)
    after_the_stall = await keep_talking(talking, 4.0)

    # then the storefront that spoke is answered and stays connected, and the silent
    # one is still closed for its silence, with the documented code
    assert close_codes(after_the_stall) == []
    assert any(o["type"] == "websocket.send" for o in after_the_stall)
    assert close_codes(drained(silent)) == [4408]
    await talking.disconnect()
    await silent.disconnect()


async def test_a_connection_silent_past_the_timeout_is_closed_on_a_loop_that_never_stalled(
    storefront, channel_layer, settings
):
    settings.WS_HEARTBEAT_SECONDS = 0.2
    settings.WS_IDLE_TIMEOUT_SECONDS = 0.6
    store_id = str(storefront.store.pk)
    talking, _ = await open_room(room_url(store_id, "user", random_user()))
    silent, _ = await open_room(room_url(store_id, "user", random_user()))

    heard = await keep_talking(talking, 2.5)

    assert close_codes(heard) == []
    assert close_codes(drained(silent)) == [4408]
    await talking.disconnect()
    await silent.disconnect()


def keep_alive_tasks() -> int:
    """Tasks running the engine's own real-time code (not Channels' or daphne's)."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if "/realtime/" in getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "")
    )


async def test_timers_do_not_grow_with_the_connections(storefront, channel_layer):
    store_id = str(storefront.store.pk)
    first, _ = await open_room(room_url(store_id, "user", random_user()))
    await asyncio.sleep(0.1)  # the handshake's batched lookups finish
    with_one = keep_alive_tasks()

    others = [(await open_room(room_url(store_id, "user", random_user())))[0] for _ in range(20)]
    await asyncio.sleep(0.1)
    with_twenty_one = keep_alive_tasks()

    assert with_one >= 1  # the clock itself
    assert with_twenty_one == with_one
    for client in [first, *others]:
        await client.disconnect()


async def test_a_talking_shopper_stays_connected_in_the_registry_past_its_stale_window(
    storefront, channel_layer, settings
):
    # given registry entries that go stale 0.8 s after their last refresh
    settings.WS_HEARTBEAT_SECONDS = 0.2
    settings.WS_IDLE_TIMEOUT_SECONDS = 0.6
    store_id, user_id = str(storefront.store.pk), random_user()
    client, _ = await open_room(room_url(store_id, "user", user_id))

    # when the shopper's page stays open twice that long
    await keep_talking(client, 1.6)

    # then every process still sees the shopper connected (pipeline channel `auto`)
    assert await database_sync_to_async(registry.is_connected)(store_id, user_id) is True
    listed = await database_sync_to_async(registry.connections)(store_id)
    assert [entry["user_id"] for entry in listed] == [user_id]
    await client.disconnect()
