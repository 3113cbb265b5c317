"""Who may connect, and what keeps a connection alive (docs/websocket-protocol.md)."""

import asyncio
import time

import channels.consumer
import pytest
from channels.db import database_sync_to_async
from django.core import signing

from realtime import registry
from realtime.tokens import SALT, issue_token
from stores.models import Store
from tests.realtime.conftest import communicator, open_room, random_user, refusal_code, room_url

pytestmark = pytest.mark.django_db(transaction=True)


async def test_store_room_greets_with_its_config(storefront, channel_layer):
    client, config = await open_room(room_url(storefront.store.pk))

    assert config["payload"]["room"] == "store"
    assert config["payload"]["heartbeat_seconds"] > 0
    assert set(config) == {"type", "payload", "timestamp", "messageId"}
    await client.disconnect()


async def test_bad_tokens_are_refused_with_documented_codes(storefront, other_shop, channel_layer):
    store_id = storefront.store.pk
    expired = signing.dumps(
        {"s": str(store_id), "c": "store", "u": "", "e": int(time.time()) - 5}, salt=SALT
    )
    other_store, _ = issue_token(str(other_shop.store.pk), "store")
    alice, _ = issue_token(str(store_id), "user", "alice")

    codes = {
        "missing": await refusal_code(f"/ws/store/{store_id}/"),
        "forged": await refusal_code(room_url(store_id, token="abc:def")),
        "expired": await refusal_code(room_url(store_id, token=expired)),
        "other store": await refusal_code(room_url(store_id, token=other_store)),
        "other user": await refusal_code(room_url(store_id, "user", "bob", token=alice)),
        "user token on store room": await refusal_code(room_url(store_id, token=alice)),
    }

    assert codes == {
        "missing": 4401,
        "forged": 4401,
        "expired": 4401,
        "other store": 4403,
        "other user": 4403,
        "user token on store room": 4403,
    }


async def test_origin_not_allowed_by_the_store_is_refused(storefront, channel_layer):
    code = await refusal_code(room_url(storefront.store.pk), origin="https://evil.example")

    assert code == 4403


async def test_pages_served_by_the_engine_itself_may_connect(storefront, channel_layer):
    client = communicator(room_url(storefront.store.pk), origin="http://engine.test:8000")
    client.scope["headers"].append((b"host", b"engine.test:8000"))

    connected, _ = await client.connect()
    greeting = await client.receive_json_from(timeout=2)

    assert connected
    assert greeting["type"] == "config"
    await client.disconnect()


async def test_connections_beyond_the_store_limit_are_refused(storefront, channel_layer):
    await database_sync_to_async(Store.objects.filter(pk=storefront.store.pk).update)(
        max_websocket_connections=2
    )
    first, _ = await open_room(room_url(storefront.store.pk))
    second, _ = await open_room(room_url(storefront.store.pk, "user", "u-1"))

    code = await refusal_code(room_url(storefront.store.pk))

    assert code == 4429
    await first.disconnect()
    third, _ = await open_room(room_url(storefront.store.pk))
    await second.disconnect()
    await third.disconnect()


async def test_registry_knows_who_is_connected_and_where(storefront, channel_layer):
    user_id = random_user()
    store_id = str(storefront.store.pk)
    client, _ = await open_room(room_url(store_id, "user", user_id))

    connected = await database_sync_to_async(registry.is_connected)(store_id, user_id)
    listing = await database_sync_to_async(registry.connections)(store_id)

    assert connected is True
    assert [(c["scope"], c["user_id"]) for c in listing] == [("user", user_id)]
    assert listing[0]["instance"] == registry.INSTANCE
    await client.disconnect()
    assert await database_sync_to_async(registry.is_connected)(store_id, user_id) is False


async def test_server_sends_heartbeats_and_answers_the_clients(storefront, channel_layer, settings):
    settings.WS_HEARTBEAT_SECONDS = 0.2
    client, _ = await open_room(room_url(storefront.store.pk))

    server_beat = await client.receive_json_from(timeout=2)
    await client.send_json_to(
        {"type": "heartbeat", "payload": {}, "timestamp": "", "messageId": "c-1"}
    )
    reply = await client.receive_json_from(timeout=2)
    while reply["payload"].get("reply_to") != "c-1":
        reply = await client.receive_json_from(timeout=2)

    assert server_beat["type"] == "heartbeat"
    assert reply["type"] == "heartbeat"
    await client.disconnect()


async def test_client_frames_are_answered_without_a_hop_to_the_database_thread(
    storefront, channel_layer, monkeypatch
):
    """Channels closes stale database connections in the shared sync thread before every
    message a consumer handles; for heartbeats and acks that thread hop cost more CPU than
    the frame (issue 12). Database work keeps its housekeeping around each call."""
    client, _ = await open_room(room_url(storefront.store.pk))
    housekeeping = []

    async def close_old_connections_in_the_sync_thread() -> None:
        housekeeping.append(1)

    # Channels' testing communicator makes the housekeeping itself a no-op; count the hops.
    monkeypatch.setattr(
        channels.consumer, "aclose_old_connections", close_old_connections_in_the_sync_thread
    )

    for index in range(3):
        await client.send_json_to(
            {"type": "heartbeat", "payload": {}, "timestamp": "", "messageId": f"c-{index}"}
        )
        reply = await client.receive_json_from(timeout=2)
        while reply["payload"].get("reply_to") != f"c-{index}":
            reply = await client.receive_json_from(timeout=2)

    assert housekeeping == []
    await client.disconnect()


async def test_silent_connection_is_closed_after_the_idle_timeout(
    storefront, channel_layer, settings
):
    settings.WS_HEARTBEAT_SECONDS = 0.1
    settings.WS_IDLE_TIMEOUT_SECONDS = 0.3
    client, _ = await open_room(room_url(storefront.store.pk))

    closing = None
    deadline = asyncio.get_running_loop().time() + 3
    while asyncio.get_running_loop().time() < deadline:
        output = await client.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            closing = output
            break

    assert closing is not None
    assert closing["code"] == 4408
    await client.disconnect()


def live_gauge(body: str) -> float:
    for line in body.splitlines():
        if line.startswith('engine_websocket_connections{room="store"}'):
            return float(line.split()[-1])
    return 0.0


async def test_live_connections_are_a_metrics_gauge(storefront, channel_layer, async_client):
    before = live_gauge((await async_client.get("/metrics")).content.decode())
    client, _ = await open_room(room_url(storefront.store.pk))

    during = live_gauge((await async_client.get("/metrics")).content.decode())
    await client.disconnect()
    after = live_gauge((await async_client.get("/metrics")).content.decode())

    assert (during - before, after - before) == (1.0, 0.0)


async def test_store_can_list_its_live_connections(storefront, other_shop, channel_layer):
    user_id = random_user()
    client, _ = await open_room(room_url(storefront.store.pk, "user", user_id))

    mine = await database_sync_to_async(storefront.client.get)("/api/v1/realtime/connections")
    theirs = await database_sync_to_async(other_shop.client.get)("/api/v1/realtime/connections")

    assert mine.status_code == 200
    assert [(c["scope"], c["user_id"], c["instance"]) for c in mine.json()] == [
        ("user", user_id, registry.INSTANCE)
    ]
    assert theirs.json() == []
    await client.disconnect()


async def test_heartbeats_refresh_the_connections_last_activity(
    storefront, channel_layer, settings
):
    settings.WS_HEARTBEAT_SECONDS = 0.2
    store_id = str(storefront.store.pk)
    client, _ = await open_room(room_url(store_id))
    first = (await database_sync_to_async(registry.connections)(store_id))[0]

    await asyncio.sleep(1.6)
    later = (await database_sync_to_async(registry.connections)(store_id))[0]

    assert later["last_seen"] > first["last_seen"]
    assert later["connected_at"] == first["connected_at"]
    await client.disconnect()


async def test_frames_sent_by_a_refused_client_do_nothing(storefront, channel_layer):
    from tests.realtime.conftest import sent_intervention
    from tracking.models import TrackingEvent

    intervention = await database_sync_to_async(sent_intervention)(storefront.store, "victim")
    client = communicator(f"/ws/store/{storefront.store.pk}/?token=forged")
    await client.connect()
    await client.send_json_to(
        {
            "type": "tracking",
            "payload": {"intervention_id": str(intervention.pk), "event": "clicked"},
        }
    )
    closing = await client.receive_output(timeout=2)
    await asyncio.sleep(0.2)

    assert closing["code"] == 4401
    assert await client.receive_nothing(timeout=0.2)
    assert await database_sync_to_async(TrackingEvent.objects.count)() == 0
    await client.disconnect()
