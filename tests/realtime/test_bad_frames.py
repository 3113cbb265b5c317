"""Bad frames get an error frame naming the problem; the connection goes on."""

import json

import pytest

from tests.realtime.conftest import open_room, room_url

pytestmark = pytest.mark.django_db(transaction=True)


async def test_each_bad_frame_gets_an_error_and_the_connection_survives(
    storefront, channel_layer, settings
):
    settings.WS_MAX_MESSAGE_BYTES = 256
    client, _ = await open_room(room_url(storefront.store.pk))
    bad_frames = [
        "not json",
        json.dumps(["a", "list"]),
        json.dumps({"payload": {}}),
        json.dumps({"type": "subscribe", "payload": {}, "messageId": "m-1"}),
        json.dumps({"type": "ack", "payload": {}}),
        json.dumps({"type": "tracking", "payload": {"intervention_id": "x", "event": "liked"}}),
        json.dumps({"type": "resume", "payload": {"after": "yesterday"}}),
        json.dumps({"type": "heartbeat", "payload": {"padding": "x" * 300}}),
    ]

    codes = []
    for text in bad_frames:
        await client.send_to(text_data=text)
        frame = await client.receive_json_from(timeout=2)
        assert frame["type"] == "error"
        codes.append(frame["payload"]["code"])
    await client.send_json_to({"type": "heartbeat", "payload": {}, "messageId": "still-here"})
    alive = await client.receive_json_from(timeout=2)

    assert codes == [
        "invalid_json",
        "invalid_frame",
        "missing_field",
        "unknown_type",
        "missing_field",
        "invalid_field",
        "invalid_field",
        "too_large",
    ]
    assert alive["payload"]["reply_to"] == "still-here"
    await client.disconnect()


async def test_error_names_the_frame_it_answers(storefront, channel_layer):
    client, _ = await open_room(room_url(storefront.store.pk))

    await client.send_json_to({"type": "nope", "payload": {}, "messageId": "m-42"})
    frame = await client.receive_json_from(timeout=2)

    assert frame["payload"]["messageId"] == "m-42"
    assert "nope" in frame["payload"]["message"]
    await client.disconnect()
