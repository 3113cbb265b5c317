"""Push through the real firebase-admin SDK, FCM and Google's token endpoint stubbed."""

import json

import pytest
import responses

from interventions.models import Intervention, Status
from notifications.models import Device
from notifications.transports.base import OutboundMessage, TransportError, get_transport
from stores.actions import do_upsert_shopper
from tests.notifications.conftest import FCM_SEND
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def fcm_error(status, fcm_code, grpc_status):
    return {
        "error": {
            "code": status,
            "message": fcm_code,
            "status": grpc_status,
            "details": [{"@type": FCM_ERROR_TYPE, "errorCode": fcm_code}],
        }
    }


def fcm_answers(http, by_token, headers=None):
    """FCM's answer per token: "ok", "unregistered" or "quota"."""

    def reply(request):
        token = json.loads(request.body)["message"]["token"]
        outcome = by_token.get(token, "ok")
        if outcome == "unregistered":
            return 404, {}, json.dumps(fcm_error(404, "UNREGISTERED", "NOT_FOUND"))
        if outcome == "quota":
            body = fcm_error(429, "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED")
            return 429, {"Retry-After": "30"}, json.dumps(body)
        return 200, {}, json.dumps({"name": f"projects/engine-test/messages/{token}-id"})

    http.add_callback(responses.POST, FCM_SEND, callback=reply)


def register(shop, user_id, token):
    response = shop.client.post(
        "/api/v1/devices",
        {"user_id": user_id, "token": token, "platform": "android"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response


def push(store_id, tokens):
    return OutboundMessage(
        intervention_id="i-1",
        store_id=str(store_id),
        channel="push",
        recipient=tokens,
        content={"title": "Your cart", "body": "Still thinking?", "data": {"cart": "c-1"}},
    )


def test_push_reaches_fcm_as_the_sdk_sends_it(shop, http):
    fcm_answers(http, {})

    message_id = get_transport("push").send(push(shop.store.pk, ["tok-a"]))

    fcm_call = next(c for c in http.calls if c.request.url == FCM_SEND)
    sent = json.loads(fcm_call.request.body)["message"]
    assert message_id == "projects/engine-test/messages/tok-a-id"
    assert fcm_call.request.headers["Authorization"] == "Bearer ya29.test"
    assert sent["token"] == "tok-a"
    assert sent["notification"] == {"title": "Your cart", "body": "Still thinking?"}
    assert sent["data"] == {"cart": "c-1", "intervention_id": "i-1"}


def test_unregistered_tokens_are_deactivated_and_the_rest_still_sent(shop, http):
    register(shop, "sam", "tok-live")
    register(shop, "sam", "tok-dead")
    fcm_answers(http, {"tok-dead": "unregistered"})

    message_id = get_transport("push").send(push(shop.store.pk, ["tok-live", "tok-dead"]))

    assert message_id.endswith("tok-live-id")
    assert set(Device.objects.filter(active=True).values_list("token", flat=True)) == {"tok-live"}


def test_only_dead_tokens_is_a_permanent_failure(shop, http):
    register(shop, "sam", "tok-dead")
    fcm_answers(http, {"tok-dead": "unregistered"})

    with pytest.raises(TransportError) as failed:
        get_transport("push").send(push(shop.store.pk, ["tok-dead"]))

    assert failed.value.permanent
    assert not Device.objects.get(token="tok-dead").active


def test_quota_exceeded_is_retried_after_fcms_delay(shop, http):
    fcm_answers(http, {"tok-a": "quota"})

    with pytest.raises(TransportError) as failed:
        get_transport("push").send(push(shop.store.pk, ["tok-a"]))

    assert not failed.value.permanent
    assert failed.value.retry_after == 30.0
    assert failed.value.reason == "fcm_quota"


def test_devices_are_registered_listed_and_deleted_per_store(shop, other_shop):
    register(shop, "sam", "fcm:token-1")
    register(shop, "sam", "fcm:token-1")  # re-registering is harmless

    listed = shop.client.get("/api/v1/devices").json()
    foreign = other_shop.client.delete("/api/v1/devices/fcm:token-1")
    deleted = shop.client.delete("/api/v1/devices/fcm:token-1")

    assert [(d["token"], d["user_id"], d["active"]) for d in listed] == [
        ("fcm:token-1", "sam", True)
    ]
    assert foreign.status_code == 404
    assert deleted.status_code == 204
    assert not Device.objects.get(token="fcm:token-1").active


def test_device_registration_rejects_unknown_fields(shop):
    response = shop.client.post(
        "/api/v1/devices", {"user_id": "sam", "token": "t", "platfrom": "ios"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"platfrom": ["Unknown field."]}


def test_event_to_fcm_to_delivery_report_marks_delivered(shop, http):
    """End to end: device registered → trigger → rendered push at FCM → delivery reported."""
    fcm_answers(http, {})
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    do_upsert_shopper(shop.store, "sam", {"first_name": "Zoé", "timezone": "UTC"})
    register(shop, "sam", "tok-a")
    shop.client.post(
        "/api/v1/templates",
        {
            "key": "reminder",
            "name": "Reminder",
            "content": {
                "en": {
                    "push": {
                        "title": "{{ shopper.first_name }}, still there?",
                        "body": "{{ cart.item_count }} items wait",
                        "data": {"url": "{{ cart.recovery_url }}"},
                    }
                }
            },
            "publish": True,
        },
        format="json",
    )

    response = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "channel": "push", "template": "reminder"},
        format="json",
    )

    intervention = Intervention.objects.get(pk=response.json()["id"])
    fcm_call = next(c for c in http.calls if c.request.url == FCM_SEND)
    sent = json.loads(fcm_call.request.body)["message"]
    assert sent["notification"]["title"] == "Zoé, still there?"
    assert sent["data"]["intervention_id"] == str(intervention.pk)
    assert intervention.status == Status.SENT

    # FCM has no delivery webhook: the app reports receipt through the tracking API.
    from interventions.actions import do_mark_delivered

    do_mark_delivered(intervention, source="push")
    intervention.refresh_from_db()
    assert intervention.status == Status.DELIVERED
    assert TrackingEvent.objects.filter(intervention=intervention, kind="delivered").exists()
