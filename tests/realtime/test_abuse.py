"""A client cannot spoil other clients' acks, hog a store's connections, act on frames it
only watches, or flood the engine with resumes and tracking frames
(docs/websocket-protocol.md#limits-on-what-a-client-may-do)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from interventions.actions import AckRequest
from interventions.models import Status
from realtime.acks import ack_batcher
from realtime.tokens import issue_token
from stores.models import Store
from tests.realtime.conftest import (
    open_room,
    publish,
    random_user,
    refusal_code,
    room_url,
    sent_intervention,
)
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async
POISON = "1712-0\x00"


async def next_of_type(client, frame_type: str, timeout: float = 2.0) -> dict:
    while True:
        frame = await client.receive_json_from(timeout=timeout)
        if frame["type"] == frame_type:
            return frame


async def test_poison_ack_is_a_bad_frame_and_another_stores_ack_still_lands(
    storefront, other_shop, channel_layer
):
    honest_shopper, attacker = random_user(), random_user()
    honest, _ = await open_room(room_url(storefront.store.pk, "user", honest_shopper))
    poisoner, _ = await open_room(room_url(other_shop.store.pk, "user", attacker), origin=None)
    intervention = await db(sent_intervention)(storefront.store, honest_shopper)
    await db(publish)(intervention)
    frame = await next_of_type(honest, "intervention")

    await poisoner.send_json_to({"type": "ack", "payload": {"messageId": POISON}, "messageId": "p"})
    await honest.send_json_to({"type": "ack", "payload": {"messageId": frame["messageId"]}})
    refusal = await next_of_type(poisoner, "error")
    await asyncio.sleep(0.4)

    assert (refusal["payload"]["code"], refusal["payload"]["messageId"]) == ("invalid_field", "p")
    await db(intervention.refresh_from_db)()
    assert intervention.status == Status.DELIVERED
    for client in (honest, poisoner):
        await client.disconnect()


async def test_ack_the_database_refuses_fails_alone_in_its_batch(storefront, other_shop):
    shopper = random_user()
    intervention = await db(sent_intervention)(storefront.store, shopper)
    message_id = await db(publish)(intervention)
    unknown: list[AckRequest] = []

    async def on_unknown(ack: AckRequest) -> None:
        unknown.append(ack)

    batcher = ack_batcher()
    # Both acks go into one batch window, as they would from two connections of a process.
    batcher.submit(
        AckRequest(str(other_shop.store.pk), "attacker", "", POISON, timezone.now()), on_unknown
    )
    batcher.submit(
        AckRequest(
            str(storefront.store.pk), shopper, str(intervention.pk), message_id, timezone.now()
        ),
        on_unknown,
    )
    await asyncio.sleep(0.5)

    await db(intervention.refresh_from_db)()
    assert intervention.status == Status.DELIVERED
    assert unknown == []


async def test_one_shopper_cannot_take_the_stores_whole_connection_limit(
    storefront, channel_layer, settings
):
    settings.WS_MAX_CONNECTIONS_PER_USER = 2
    await db(Store.objects.filter(pk=storefront.store.pk).update)(max_websocket_connections=4)
    hog = random_user()
    tabs = [await open_room(room_url(storefront.store.pk, "user", hog)) for _ in range(2)]

    hogs_third = await refusal_code(room_url(storefront.store.pk, "user", hog))
    someone_else, _ = await open_room(room_url(storefront.store.pk, "user", random_user()))
    dashboard, _ = await open_room(room_url(storefront.store.pk))

    assert hogs_third == 4429
    await tabs[0][0].disconnect()
    reopened, _ = await open_room(room_url(storefront.store.pk, "user", hog))
    for client in (tabs[1][0], someone_else, dashboard, reopened):
        await client.disconnect()


async def test_one_store_token_cannot_take_the_stores_whole_connection_limit(
    storefront, channel_layer, settings
):
    settings.WS_MAX_CONNECTIONS_PER_STORE_TOKEN = 2
    await db(Store.objects.filter(pk=storefront.store.pk).update)(max_websocket_connections=4)
    leaked = room_url(storefront.store.pk)
    tabs = [await open_room(leaked) for _ in range(2)]

    leaked_third = await refusal_code(leaked)
    # Another token (tokens issued in the same second with the same ttl are identical).
    own_token, _ = issue_token(str(storefront.store.pk), "store", ttl=1234)
    other_dashboard, _ = await open_room(room_url(storefront.store.pk, token=own_token))
    shopper, _ = await open_room(room_url(storefront.store.pk, "user", random_user()))

    assert leaked_third == 4429
    await tabs[0][0].disconnect()
    reopened, _ = await open_room(leaked)
    for client in (tabs[1][0], other_dashboard, shopper, reopened):
        await client.disconnect()


async def test_store_connection_can_watch_but_not_ack_or_track(storefront, channel_layer):
    shopper = random_user()
    dashboard, _ = await open_room(room_url(storefront.store.pk))
    intervention = await db(sent_intervention)(storefront.store, shopper)
    message_id = await db(publish)(intervention)
    watched = await next_of_type(dashboard, "intervention")

    await dashboard.send_json_to(
        {"type": "ack", "payload": {"messageId": message_id}, "messageId": "a"}
    )
    ack_refused = await next_of_type(dashboard, "error")
    await dashboard.send_json_to(
        {
            "type": "tracking",
            "payload": {"intervention_id": str(intervention.pk), "event": "clicked"},
            "messageId": "t",
        }
    )
    tracking_refused = await next_of_type(dashboard, "error")
    await asyncio.sleep(0.3)

    assert watched["messageId"] == message_id
    assert [
        (e["payload"]["code"], e["payload"]["messageId"]) for e in (ack_refused, tracking_refused)
    ] == [
        ("read_only", "a"),
        ("read_only", "t"),
    ]
    await db(intervention.refresh_from_db)()
    assert intervention.status == Status.SENT
    assert await db(TrackingEvent.objects.filter(intervention=intervention).count)() == 0
    await dashboard.disconnect()


# Replay ids are Redis server time: this process's clock must be the real one.
@pytest.mark.real_clock
async def test_repeated_resumes_send_each_missed_frame_once(storefront, channel_layer, settings):
    settings.WS_RESUMES_PER_SECOND = 1_000_000.0
    shopper = random_user()
    missed = [
        await db(publish)(await db(sent_intervention)(storefront.store, shopper)) for _ in range(2)
    ]
    client, _ = await open_room(room_url(storefront.store.pk))

    for n in range(5):
        await client.send_json_to(
            {"type": "resume", "payload": {"after": "0-0"}, "messageId": f"r{n}"}
        )
    replayed = [(await next_of_type(client, "intervention"))["messageId"] for _ in missed]

    assert replayed == missed
    assert await client.receive_nothing(timeout=0.5)
    await client.disconnect()


# Replay ids are Redis server time: this process's clock must be the real one.
@pytest.mark.real_clock
async def test_resumes_beyond_the_rate_limit_are_refused(storefront, channel_layer, settings):
    settings.WS_RESUMES_PER_SECOND = 1 / 60
    shopper = random_user()
    missed = await db(publish)(await db(sent_intervention)(storefront.store, shopper))
    client, _ = await open_room(room_url(storefront.store.pk))

    await client.send_json_to({"type": "resume", "payload": {"after": "0-0"}, "messageId": "r1"})
    await client.send_json_to({"type": "resume", "payload": {"after": "0-0"}, "messageId": "r2"})
    replayed = await next_of_type(client, "intervention")
    refused = await next_of_type(client, "error")

    assert replayed["messageId"] == missed
    assert (refused["payload"]["code"], refused["payload"]["messageId"]) == ("rate_limited", "r2")
    await client.disconnect()


def tracking(intervention_id: str, event: str, message_id: str = "") -> dict:
    return {
        "type": "tracking",
        "payload": {"intervention_id": intervention_id, "event": event},
        "messageId": message_id,
    }


def recorded_kinds(intervention) -> list[str]:
    return list(
        TrackingEvent.objects.filter(intervention=intervention).values_list("kind", flat=True)
    )


async def test_repeated_tracking_event_counts_once(storefront, channel_layer):
    shopper = random_user()
    intervention = await db(sent_intervention)(storefront.store, shopper)
    client, _ = await open_room(room_url(storefront.store.pk, "user", shopper))
    await next_of_type(client, "intervention")

    await client.send_json_to(tracking(str(intervention.pk), "displayed"))
    for _ in range(10):
        await client.send_json_to(tracking(str(intervention.pk), "clicked"))
    await asyncio.sleep(0.5)

    assert sorted(await db(recorded_kinds)(intervention)) == ["clicked", "displayed"]
    await client.disconnect()


async def test_tracking_frames_beyond_the_rate_limit_are_refused(
    storefront, channel_layer, settings
):
    settings.WS_TRACKING_PER_SECOND = 1 / 60
    settings.WS_TRACKING_BURST = 2
    shopper = random_user()
    intervention = await db(sent_intervention)(storefront.store, shopper)
    client, _ = await open_room(room_url(storefront.store.pk, "user", shopper))
    await next_of_type(client, "intervention")

    for n, event in enumerate(("displayed", "clicked", "dismissed")):
        await client.send_json_to(tracking(str(intervention.pk), event, f"t{n}"))
    refused = await next_of_type(client, "error")
    await asyncio.sleep(0.3)

    assert (refused["payload"]["code"], refused["payload"]["messageId"]) == ("rate_limited", "t2")
    assert await db(recorded_kinds)(intervention) == ["displayed", "clicked"]
    await client.disconnect()
