"""Interventions reach the right rooms, survive reconnects, and acks / tracking land in
the database (docs/websocket-protocol.md#delivery)."""

import asyncio
import time
from datetime import timedelta

import pytest
import redis
from channels.db import database_sync_to_async
from channels_redis.pubsub import RedisPubSubLoopLayer
from django.db import connections
from django.db.backends.signals import connection_created
from django.utils import timezone

from interventions.models import Intervention, Status
from notifications.transports.base import OutboundMessage, TransportError
from realtime.redis_clients import sync_redis
from realtime.transport import WebSocketTransport
from tests.realtime.conftest import (
    open_room,
    publish,
    random_user,
    room_url,
    sent_intervention,
)
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def next_of_type(client, frame_type: str, timeout: float = 2.0) -> dict:
    while True:
        frame = await client.receive_json_from(timeout=timeout)
        if frame["type"] == frame_type:
            return frame


async def interventions_before_reply(client, beat_id: str) -> list[str]:
    """The ids of the interventions a client received before the reply to its beat."""
    ids = []
    while True:
        frame = await client.receive_json_from(timeout=2)
        if frame["type"] == "intervention":
            ids.append(frame["payload"]["id"])
        elif frame["payload"].get("reply_to") == beat_id:
            return ids


async def test_intervention_reaches_the_store_room_and_only_its_shopper(storefront, channel_layer):
    store_id = storefront.store.pk
    alice, bob = random_user(), random_user()
    dashboard, _ = await open_room(room_url(store_id))
    alice_tab, _ = await open_room(room_url(store_id, "user", alice))
    bob_tab, _ = await open_room(room_url(store_id, "user", bob))
    intervention = await db(sent_intervention)(storefront.store, alice)

    message_id = await db(publish)(intervention)

    for client in (dashboard, alice_tab):
        frame = await next_of_type(client, "intervention")
        assert frame["messageId"] == message_id
        assert frame["payload"]["id"] == str(intervention.pk)
        assert frame["payload"]["content"]["title"] == "Still there?"
    assert await bob_tab.receive_nothing(timeout=0.3)
    for client in (dashboard, alice_tab, bob_tab):
        await client.disconnect()


# Replay ids are Redis server time: this process's clock must be the real one.
@pytest.mark.real_clock
async def test_reconnecting_client_gets_what_it_missed_in_order_then_live(
    storefront, channel_layer
):
    store_id = storefront.store.pk
    shopper = random_user()
    first = await db(sent_intervention)(storefront.store, shopper)
    seen = await db(publish)(first)
    missed = []
    for _ in range(3):
        missed.append(await db(publish)(await db(sent_intervention)(storefront.store, shopper)))

    client, _ = await open_room(room_url(store_id))
    await client.send_json_to({"type": "resume", "payload": {"after": seen}, "messageId": "r"})
    replayed = [(await next_of_type(client, "intervention"))["messageId"] for _ in missed]
    live = await db(publish)(await db(sent_intervention)(storefront.store, shopper))
    then = await next_of_type(client, "intervention")

    assert replayed == missed
    assert then["messageId"] == live
    await client.disconnect()


async def test_last_message_id_at_connect_replays_the_shoppers_room(storefront, channel_layer):
    shopper = random_user()
    seen = await db(publish)(await db(sent_intervention)(storefront.store, shopper))
    missed = await db(publish)(await db(sent_intervention)(storefront.store, shopper))
    await db(Intervention.objects.filter(provider_message_id=seen).update)(status=Status.DELIVERED)

    client, _ = await open_room(
        room_url(storefront.store.pk, "user", shopper, last_message_id=seen)
    )
    frame = await next_of_type(client, "intervention")

    assert frame["messageId"] == missed
    assert await client.receive_nothing(timeout=0.3)
    await client.disconnect()


@pytest.mark.real_clock
async def test_replay_stops_at_the_replay_window(storefront, channel_layer, settings):
    settings.WS_REPLAY_WINDOW = 1
    shopper = random_user()
    await db(publish)(await db(sent_intervention)(storefront.store, shopper))
    await asyncio.sleep(1.1)
    recent = await db(publish)(await db(sent_intervention)(storefront.store, shopper))

    client, _ = await open_room(room_url(storefront.store.pk, last_message_id="0-0"))
    frame = await next_of_type(client, "intervention")

    assert frame["messageId"] == recent
    assert await client.receive_nothing(timeout=0.3)
    await client.disconnect()


async def test_ack_marks_the_intervention_delivered_with_its_time(storefront, channel_layer):
    shopper = random_user()
    client, _ = await open_room(room_url(storefront.store.pk, "user", shopper))
    intervention = await db(sent_intervention)(storefront.store, shopper)
    await db(publish)(intervention)
    frame = await next_of_type(client, "intervention")
    before = timezone.now()

    await client.send_json_to({"type": "ack", "payload": {"messageId": frame["messageId"]}})
    await asyncio.sleep(0.3)

    await db(intervention.refresh_from_db)()
    assert intervention.status == Status.DELIVERED
    assert before <= intervention.delivered_at <= timezone.now()
    kinds = await db(lambda: list(intervention.tracking_events.values_list("kind", flat=True)))()
    assert kinds == ["delivered"]
    await client.disconnect()


async def test_ack_that_beats_the_pipelines_bookkeeping_still_lands(storefront, channel_layer):
    shopper = random_user()
    client, _ = await open_room(room_url(storefront.store.pk, "user", shopper))
    intervention = await db(sent_intervention)(storefront.store, shopper, status=Status.SENDING)
    await db(publish)(intervention)
    frame = await next_of_type(client, "intervention")

    await client.send_json_to({"type": "ack", "payload": {"messageId": frame["messageId"]}})
    await asyncio.sleep(0.1)
    await db(Intervention.objects.filter(pk=intervention.pk).update)(status=Status.SENT)
    await asyncio.sleep(0.8)

    await db(intervention.refresh_from_db)()
    assert intervention.status == Status.DELIVERED
    await client.disconnect()


async def test_ack_from_another_store_does_nothing(storefront, other_shop, channel_layer):
    shopper = random_user()
    intervention = await db(sent_intervention)(storefront.store, shopper)
    message_id = await db(publish)(intervention)
    rival, _ = await open_room(room_url(other_shop.store.pk, "user", shopper), origin=None)

    await rival.send_json_to({"type": "ack", "payload": {"messageId": message_id}})
    error = await next_of_type(rival, "error")

    await db(intervention.refresh_from_db)()
    assert intervention.status == Status.SENT
    assert error["payload"]["code"] == "unknown_message"
    await rival.disconnect()


async def test_tracking_events_are_recorded_on_the_intervention(storefront, channel_layer):
    shopper = random_user()
    intervention = await db(sent_intervention)(storefront.store, shopper)
    client, _ = await open_room(room_url(storefront.store.pk, "user", shopper))
    await next_of_type(client, "intervention")  # sent while offline: resent on connect

    for event in ("displayed", "clicked"):
        await client.send_json_to(
            {
                "type": "tracking",
                "payload": {"intervention_id": str(intervention.pk), "event": event},
            }
        )
    await asyncio.sleep(0.3)

    events = await db(
        lambda: list(
            TrackingEvent.objects.filter(intervention=intervention).values_list("kind", "source")
        )
    )()
    assert events == [("displayed", "websocket"), ("clicked", "websocket")]
    await client.disconnect()


async def test_shopper_cannot_track_another_shoppers_intervention(storefront, channel_layer):
    theirs = await db(sent_intervention)(storefront.store, random_user())
    client, _ = await open_room(room_url(storefront.store.pk, "user", random_user()))

    await client.send_json_to(
        {"type": "tracking", "payload": {"intervention_id": str(theirs.pk), "event": "clicked"}}
    )
    error = await next_of_type(client, "error")

    assert error["payload"]["code"] == "unknown_intervention"
    assert await db(TrackingEvent.objects.filter(intervention=theirs).count)() == 0
    await client.disconnect()


async def test_offline_shopper_gets_unacked_interventions_on_connect(storefront, channel_layer):
    shopper = random_user()
    now = timezone.now()
    older = await db(sent_intervention)(
        storefront.store, shopper, sent_at=now - timedelta(minutes=5)
    )
    logged = await db(sent_intervention)(storefront.store, shopper, sent_at=now)
    logged_id = await db(publish)(logged)
    await db(sent_intervention)(storefront.store, shopper, expires_at=now - timedelta(seconds=1))
    await db(sent_intervention)(storefront.store, shopper, status=Status.DELIVERED)
    await db(sent_intervention)(storefront.store, random_user())

    client, _ = await open_room(room_url(storefront.store.pk, "user", shopper))
    frames = [await next_of_type(client, "intervention") for _ in range(2)]

    assert [f["payload"]["id"] for f in frames] == [str(older.pk), str(logged.pk)]
    assert frames[1]["messageId"] == logged_id
    assert await client.receive_nothing(timeout=0.3)
    await client.disconnect()


@pytest.fixture
def statements():
    """The SQL every thread runs while the test holds the list (the consumers query from
    executor threads, each with its own connection, which CaptureQueriesContext misses)."""
    ran: list[str] = []

    def record(execute, sql, params, many, context):
        ran.append(sql)
        return execute(sql, params, many, context)

    def watch(sender, connection, **kwargs):
        if record not in connection.execute_wrappers:
            connection.execute_wrappers.append(record)

    connection_created.connect(watch)
    yield ran
    connection_created.disconnect(watch)
    for each in connections.all():
        if record in each.execute_wrappers:
            each.execute_wrappers.remove(record)


async def test_a_connect_storm_asks_postgres_once_whether_anything_waits(
    storefront, channel_layer, statements
):
    # given a store whose rules an earlier connection already loaded, and 20 shoppers of
    # whom one has an intervention waiting
    store = storefront.store
    warm, _ = await open_room(room_url(store.pk, "user", random_user()))
    await warm.disconnect()
    shoppers = [random_user() for _ in range(20)]
    waiting = await db(sent_intervention)(store, shoppers[7])
    statements.clear()

    # when they all connect at once (a reply to a beat: the connect handler has finished)
    clients = [
        client
        for client, _ in await asyncio.gather(
            *(open_room(room_url(store.pk, "user", shopper)) for shopper in shoppers)
        )
    ]
    for client in clients:
        await client.send_json_to(
            {"type": "heartbeat", "payload": {}, "timestamp": "", "messageId": "c-1"}
        )
    received = [await interventions_before_reply(client, "c-1") for client in clients]

    # then the one with something waiting gets it, and the other 19 cost no query of their
    # own: a storm of reconnecting storefronts is a statement or two, not one per handshake
    assert received == [[str(waiting.pk)] if s == shoppers[7] else [] for s in shoppers]
    asked = [sql for sql in statements if "interventions_intervention" in sql]
    assert len(asked) <= 4, asked
    for client in clients:
        await client.disconnect()


def test_transport_reports_a_transient_error_when_redis_is_down(settings, storefront):
    settings.REDIS_URL = "redis://127.0.0.1:18199/0"
    sync_redis.cache_clear()
    message = OutboundMessage(
        intervention_id="i-1",
        store_id=str(storefront.store.pk),
        channel="websocket",
        recipient="u-1",
        content={"title": "Hi"},
    )

    started = time.monotonic()
    with pytest.raises(TransportError) as failure:
        WebSocketTransport().send(message)

    assert failure.value.permanent is False
    assert failure.value.reason == "redis_unreachable"
    assert isinstance(failure.value.__cause__, redis.RedisError)
    assert time.monotonic() - started < 5


async def test_a_frame_is_published_from_a_thread_without_the_layers_event_loop_hop(
    storefront, channel_layer, monkeypatch
):
    """Request threads and Celery workers publish with one Redis pipeline. The layer's own
    ``group_send`` from a thread costs an event loop hop per room, and from a worker a new
    loop, pub/sub connection and receiver task per call; a settings change (socket
    timeouts, hosts written as dicts) once turned the fast path off silently."""
    alice = random_user()
    tab, _ = await open_room(room_url(storefront.store.pk, "user", alice))
    layer_sends: list[str] = []

    async def counted_group_send(self, group, message):
        layer_sends.append(group)

    # RedisPubSubChannelLayer hands each call to a per-event-loop layer.
    monkeypatch.setattr(RedisPubSubLoopLayer, "group_send", counted_group_send)
    intervention = await db(sent_intervention)(storefront.store, alice)

    message_id = await db(publish)(intervention)

    frame = await next_of_type(tab, "intervention")
    assert frame["messageId"] == message_id
    assert layer_sends == []
    await tab.disconnect()
