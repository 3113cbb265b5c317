"""The intake API as services use it: events, triggers, and managing interventions."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign
from interventions.models import CartEvent, Intervention, Status
from tests.support.http_provider import REJECTED
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

SAM = {"email": "sam@example.test", "timezone": "UTC"}
CART = {
    "value": "120.00",
    "currency": "EUR",
    "items": [{"sku": "TENT-2", "name": "Tent", "price": "120.00", "quantity": 1}],
}


@pytest.fixture(autouse=True)
def daytime_store(shop):
    shop.store.quiet_hours_start = None
    shop.store.quiet_hours_end = None
    shop.store.save()


def campaign(shop, **fields):
    defaults = {"name": "Abandoned carts", "trigger": "cart_abandoned", "channel": "email"}
    return Campaign.objects.create(store=shop.store, **{**defaults, **fields})


def post_event(shop, type_, **body):
    payload = {"type": type_, "cart_id": "c-1", "user_id": "sam", "user": SAM, **body}
    return shop.client.post("/api/v1/events", payload, format="json")


def test_abandoned_cart_matching_a_campaign_is_sent(shop, provider):
    campaign(shop)

    response = post_event(shop, "cart_abandoned", cart=CART)

    assert response.status_code == 202
    created = response.json()["interventions"]
    assert len(created) == 1
    assert Intervention.objects.get(pk=created[0]["id"]).status == Status.SENT
    assert [m["to"] for m in provider.received] == ["sam@example.test"]


def test_event_without_campaign_is_stored_and_explained(shop):
    response = post_event(shop, "cart_abandoned", cart=CART)

    assert response.status_code == 202
    assert response.json()["interventions"] == []
    assert response.json()["reasons"] == ["no active campaign for cart_abandoned or time_based"]


def test_low_prediction_is_suppressed_with_its_reason(shop):
    campaign(shop, trigger="prediction_high")

    response = post_event(
        shop, "prediction", prediction={"probability": 0.1, "recommended_action": "discount"}
    )

    [outcome] = response.json()["interventions"]
    assert outcome["status"] == "suppressed"
    assert outcome["reasons"][-1] == "suppressed: probability 0.10 below threshold 0.30"


def test_checkout_before_the_delay_cancels_and_nothing_is_sent(shop, provider):
    campaign(shop, delay_minutes=30)
    [scheduled] = post_event(shop, "cart_abandoned", cart=CART).json()["interventions"]
    assert scheduled["status"] == "scheduled"

    response = post_event(shop, "checkout_completed", cart={"value": "120.00"})

    assert response.json()["reasons"] == ["checkout completed: 1 pending intervention(s) cancelled"]
    assert Intervention.objects.get(pk=scheduled["id"]).status == Status.CANCELLED
    assert provider.received == []


def test_checkout_after_a_send_is_attributed_with_revenue(shop, provider):
    campaign(shop)
    [sent] = post_event(shop, "cart_abandoned", cart=CART).json()["interventions"]

    post_event(shop, "checkout_completed", cart={"value": "118.50"})

    conversion = TrackingEvent.objects.get(intervention_id=sent["id"], kind="converted")
    assert str(conversion.revenue) == "118.50"


def test_converted_cart_gets_no_further_intervention(shop):
    campaign(shop)
    post_event(shop, "checkout_completed")

    [outcome] = post_event(shop, "cart_abandoned").json()["interventions"]

    assert outcome["reasons"][-1] == "suppressed: cart already converted"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "cart_exploded"}, "type"),
        ({"prediction": {"probability": 1.5}}, "prediction.probability"),
        ({"cart": {"value": "lots"}}, "cart.value"),
        ({"cart": {"items": [{"sku": "A", "price": -1}]}}, "cart.items.0.price"),
        ({"user": {"timezone": "Mars/Base"}}, "user.timezone"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_events_are_400_naming_the_field(shop, body, field):
    payload = {"type": "cart_abandoned", "cart_id": "c", "user_id": "u", **body}

    response = shop.client.post("/api/v1/events", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_same_idempotency_key_twice_gives_one_intervention(shop, provider):
    body = {"user_id": "sam", "channel": "email", "user": SAM}

    first = shop.client.post(
        "/api/v1/interventions", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    second = shop.client.post(
        "/api/v1/interventions", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Intervention.objects.count() == 1
    assert len(provider.received) == 1


def test_idempotency_key_reused_with_another_body_is_409(shop):
    shop.client.post(
        "/api/v1/interventions", {"user_id": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    response = shop.client.post(
        "/api/v1/interventions", {"user_id": "b"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_idempotency_keys_are_per_store(shop, other_shop):
    for session in (shop, other_shop):
        response = session.client.post(
            "/api/v1/interventions", {"user_id": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        assert response.status_code == 201


def test_a_retried_event_with_the_same_key_is_accepted_once_with_the_first_answer(shop, provider):
    # Given a running campaign and an abandoned-cart event sent with an Idempotency-Key
    campaign(shop)
    payload = {"type": "cart_abandoned", "cart_id": "c-1", "user_id": "sam", "user": SAM,
               "cart": CART}  # fmt: skip
    first = shop.client.post("/api/v1/events", payload, format="json", HTTP_IDEMPOTENCY_KEY="e-1")

    # When the pipeline retries it with the same key
    second = shop.client.post("/api/v1/events", payload, format="json", HTTP_IDEMPOTENCY_KEY="e-1")

    # Then it gets the first answer, and nothing is stored or sent twice
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json() == first.json()
    assert len(first.json()["interventions"]) == 1
    assert CartEvent.objects.filter(store=shop.store).count() == 1
    assert Intervention.objects.count() == 1
    assert len(provider.received) == 1


def test_an_event_key_reused_with_another_body_is_409_and_stores_nothing(shop):
    post = shop.client.post
    post("/api/v1/events", {"type": "cart_updated", "cart_id": "c-1", "user_id": "sam"},
         format="json", HTTP_IDEMPOTENCY_KEY="e-2")  # fmt: skip

    response = post(
        "/api/v1/events",
        {"type": "cart_updated", "cart_id": "c-2", "user_id": "sam"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="e-2",
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert CartEvent.objects.filter(store=shop.store).count() == 1


def test_an_event_time_that_cannot_be_true_is_a_400_and_stores_nothing(shop, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "cart_events": 90}
    now = timezone.now()

    future = post_event(shop, "cart_abandoned", occurred_at=(now + timedelta(days=365)).isoformat())
    stale = post_event(shop, "cart_abandoned", occurred_at=(now - timedelta(days=91)).isoformat())
    recent = post_event(shop, "cart_abandoned", occurred_at=(now - timedelta(days=1)).isoformat())

    assert (future.status_code, stale.status_code, recent.status_code) == (400, 400, 202)
    assert "in the future" in future.json()["error"]["fields"]["occurred_at"][0]
    assert "90 days" in stale.json()["error"]["fields"]["occurred_at"][0]
    assert CartEvent.objects.count() == 1


def test_event_keys_are_per_store_and_events_without_a_key_are_all_kept(shop, other_shop):
    body = {"type": "cart_updated", "cart_id": "c-1", "user_id": "sam"}
    for session in (shop, other_shop):
        response = session.client.post(
            "/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="same"
        )
        assert response.status_code == 202
    shop.client.post("/api/v1/events", body, format="json")
    shop.client.post("/api/v1/events", body, format="json")

    assert CartEvent.objects.filter(store=shop.store).count() == 3


def test_quiet_hours_schedule_an_explicit_sms_for_the_morning(shop):
    shop.store.quiet_hours_start, shop.store.quiet_hours_end = "00:00", "23:59"
    shop.store.save()

    response = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "channel": "sms", "user": {"phone": "+33612345678"}},
        format="json",
    )

    assert response.json()["status"] == "scheduled"
    assert any(r.startswith("quiet hours 00:00-23:59") for r in response.json()["reasons"])


def test_detail_shows_the_full_history(shop, provider):
    created = shop.client.post(
        "/api/v1/interventions", {"user_id": "sam", "channel": "email", "user": SAM}, format="json"
    ).json()

    detail = shop.client.get(f"/api/v1/interventions/{created['id']}").json()

    assert [(h["from_status"], h["to_status"]) for h in detail["history"]] == [
        ("", "queued"),
        ("queued", "sending"),
        ("sending", "sent"),
    ]


def test_cancel_before_send_and_409_after(shop, provider):
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    scheduled = shop.client.post(
        "/api/v1/interventions/schedule",
        {"user_id": "sam", "channel": "email", "user": SAM, "scheduled_at": later},
        format="json",
    ).json()
    sent = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "bo", "channel": "email", "user": {"email": "bo@example.test"}},
        format="json",
    ).json()

    assert shop.client.delete(f"/api/v1/interventions/{scheduled['id']}").status_code == 204
    refused = shop.client.delete(f"/api/v1/interventions/{sent['id']}")
    assert refused.status_code == 409
    assert "sent" in refused.json()["error"]["message"]


def test_schedule_without_a_send_time_is_a_400_naming_it_and_stores_nothing(shop):
    refused = shop.client.post(
        "/api/v1/interventions/schedule",
        {"user_id": "sam", "channel": "email", "user": SAM},
        format="json",
    )

    assert refused.status_code == 400
    assert "scheduled_at" in refused.json()["error"]["fields"]
    assert not Intervention.objects.exists()


def test_patch_reschedules_and_edits_content_before_send(shop):
    later = timezone.now() + timedelta(hours=1)
    created = shop.client.post(
        "/api/v1/interventions/schedule",
        {"user_id": "sam", "channel": "email", "user": SAM, "scheduled_at": later.isoformat()},
        format="json",
    ).json()
    new_time = (later + timedelta(hours=2)).isoformat()

    response = shop.client.patch(
        f"/api/v1/interventions/{created['id']}",
        {"send_at": new_time, "content": {"subject": "Still thinking?"}},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["content"] == {"subject": "Still thinking?"}
    assert response.json()["send_at"].startswith(new_time[:16])


def test_failed_interventions_are_listed_with_reasons_and_retryable(shop, provider):
    provider.scripted = [REJECTED]
    failed = shop.client.post(
        "/api/v1/interventions", {"user_id": "sam", "channel": "email", "user": SAM}, format="json"
    ).json()

    listed = shop.client.get("/api/v1/interventions?status=failed").json()["results"]
    assert [i["id"] for i in listed] == [failed["id"]]
    assert "esp_422" in listed[0]["status_reason"]

    retried = shop.client.post(f"/api/v1/interventions/{failed['id']}/retry")

    assert retried.status_code == 200
    assert Intervention.objects.get(pk=failed["id"]).status == Status.SENT


def test_list_filters_and_cursor_pages(shop):
    for n in range(5):
        shop.client.post(
            "/api/v1/interventions",
            {"user_id": f"u{n % 2}", "cart_id": f"c{n}", "channel": "websocket"},
            format="json",
        )

    page = shop.client.get("/api/v1/interventions?user_id=u0&page_size=2").json()
    rest = shop.client.get(page["next"]).json()

    assert len(page["results"]) == 2
    assert len(rest["results"]) == 1
    assert {i["user_id"] for i in page["results"] + rest["results"]} == {"u0"}
    assert (
        shop.client.get("/api/v1/interventions?cart_id=c3").json()["results"][0]["cart_id"] == "c3"
    )


def test_another_stores_intervention_is_404_on_every_verb(shop, other_shop):
    theirs = other_shop.client.post(
        "/api/v1/interventions", {"user_id": "x", "channel": "websocket"}, format="json"
    ).json()

    assert shop.client.get(f"/api/v1/interventions/{theirs['id']}").status_code == 404
    assert (
        shop.client.patch(
            f"/api/v1/interventions/{theirs['id']}", {"content": {}}, format="json"
        ).status_code
        == 404
    )
    assert shop.client.delete(f"/api/v1/interventions/{theirs['id']}").status_code == 404
    assert shop.client.post(f"/api/v1/interventions/{theirs['id']}/retry").status_code == 404
    assert shop.client.get("/api/v1/interventions").json()["results"] == []


def test_batch_gives_a_result_per_item(shop):
    items = [
        {"user_id": "a", "channel": "websocket"},
        {"user_id": "b", "channel": "carrier-pigeon"},
        {"user_id": "c", "channel": "websocket", "idempotency_key": "b-1"},
        {"user_id": "c", "channel": "websocket", "idempotency_key": "b-1"},
    ]

    response = shop.client.post(
        "/api/v1/interventions/batch", {"interventions": items}, format="json"
    )

    body = response.json()
    assert response.status_code == 207
    assert [r["status"] for r in body["results"]] == [201, 400, 201, 200]
    assert "channel" in body["results"][1]["error"]["fields"]
    assert (body["created"], body["failed"]) == (3, 1)


def test_batch_over_the_maximum_is_refused(shop, settings):
    response = shop.client.post(
        "/api/v1/interventions/batch",
        {"interventions": [{"user_id": "a"}] * (settings.INTERVENTION_BATCH_MAX + 1)},
        format="json",
    )

    assert response.status_code == 400
    assert "interventions" in response.json()["error"]["fields"]


def test_campaigns_api_is_store_scoped_and_validated(shop, other_shop):
    created = shop.client.post(
        "/api/v1/campaigns",
        {"name": "VIP", "trigger": "cart_abandoned", "channel": "sms", "segments": ["vip"]},
        format="json",
    )
    bad = shop.client.post(
        "/api/v1/campaigns",
        {
            "name": "x",
            "trigger": "cart_abandoned",
            "channel": "sms",
            "min_probability": 0.8,
            "max_probability": 0.2,
        },
        format="json",
    )

    assert created.status_code == 201
    assert bad.status_code == 400
    assert "min_probability" in bad.json()["error"]["fields"]
    assert other_shop.client.get(f"/api/v1/campaigns/{created.json()['id']}").status_code == 404
    patched = shop.client.patch(
        f"/api/v1/campaigns/{created.json()['id']}", {"is_active": False}, format="json"
    )
    assert patched.json()["is_active"] is False


def test_push_tokens_arriving_with_an_event_make_push_reachable(shop):
    Campaign.objects.create(store=shop.store, name="Push", trigger="cart_abandoned", channel="push")

    [outcome] = post_event(shop, "cart_abandoned", user={"push_tokens": ["fcm-token-1"]}).json()[
        "interventions"
    ]

    assert outcome["channel"] == "push"
    assert outcome["status"] in ("sent", "queued")


def test_batch_decides_each_item_like_a_single_trigger(shop, provider):
    from notifications.models import Suppression

    Suppression.objects.create(
        store=shop.store, channel="email", address="gone@example.test", reason="bounce"
    )
    items = [
        {
            "user_id": "a",
            "cart_id": "ca",
            "channel": "email",
            "user": {"email": "a@example.test"},
            "cart": CART,
        },
        {"user_id": "b", "channel": "email", "user": {"email": "gone@example.test"}},
        {
            "user_id": "a",
            "cart_id": "ca2",
            "channel": "sms",
            "user": {"phone": "+33612345678"},
            # Without a template this is the content: Twilio is not sent an empty body.
            "personalization": {"body": "Your cart is waiting"},
        },
        {"user_id": "c", "channel": "auto"},
    ]

    body = shop.client.post(
        "/api/v1/interventions/batch", {"interventions": items}, format="json"
    ).json()

    stored = [Intervention.objects.get(pk=r["intervention"]["id"]) for r in body["results"]]
    assert [(i.channel, i.status) for i in stored] == [
        ("email", "sent"),
        ("email", "suppressed"),
        ("sms", "sent"),
        ("websocket", "sent"),
    ]
    shopper_a = Intervention.objects.filter(shopper__external_id="a").first().shopper
    assert (shopper_a.email, shopper_a.phone) == ("a@example.test", "+33612345678")
    assert sorted(m["to"] for m in provider.received) == ["+33612345678", "a@example.test"]
    assert body["results"][0]["intervention"]["cart_id"] == "ca"


def test_batch_idempotency_keys_against_earlier_requests_and_within_the_batch(shop):
    shop.client.post(
        "/api/v1/interventions", {"user_id": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    items = [
        {"user_id": "a", "idempotency_key": "k1"},
        {"user_id": "z", "idempotency_key": "k1"},
        {"user_id": "b", "idempotency_key": "k2"},
        {"user_id": "b", "idempotency_key": "k2"},
    ]

    body = shop.client.post(
        "/api/v1/interventions/batch", {"interventions": items}, format="json"
    ).json()

    assert [r["status"] for r in body["results"]] == [200, 409, 201, 200]
    assert body["results"][2]["intervention"]["id"] == body["results"][3]["intervention"]["id"]
    assert Intervention.objects.count() == 2


@pytest.mark.parametrize(
    ("request_args", "field"),
    [
        (("get", "/api/v1/interventions?created_after=1769-02-15T17:50:58-22:42"), "created_after"),
        (
            (
                "post",
                "/api/v1/interventions",
                {"user_id": "a", "scheduled_at": "0001-01-01T00:00:00Z"},
            ),
            "scheduled_at",
        ),
    ],
)
def test_datetimes_the_database_cannot_hold_are_400_not_500(shop, request_args, field):
    method, path, *body = request_args

    response = getattr(shop.client, method)(path, *body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_unknown_or_unpublished_template_is_400_and_stores_nothing(shop):
    from templates.models import Template

    Template.objects.create(store=shop.store, key="draft", name="Never published")

    unknown = shop.client.post(
        "/api/v1/interventions", {"user_id": "a", "template": "nope"}, format="json"
    )
    draft = shop.client.post(
        "/api/v1/interventions", {"user_id": "a", "template": "draft"}, format="json"
    )
    batch = shop.client.post(
        "/api/v1/interventions/batch",
        {"interventions": [{"user_id": "a", "template": "nope"}, {"user_id": "b"}]},
        format="json",
    ).json()
    campaign = shop.client.post(
        "/api/v1/campaigns",
        {"name": "x", "trigger": "cart_abandoned", "channel": "email", "template_key": "nope"},
        format="json",
    )

    assert (unknown.status_code, draft.status_code, campaign.status_code) == (400, 400, 400)
    assert "template" in unknown.json()["error"]["fields"]
    assert "published" in draft.json()["error"]["message"]
    assert "template_key" in campaign.json()["error"]["fields"]
    assert [r["status"] for r in batch["results"]] == [400, 201]
    assert "template" in batch["results"][0]["error"]["fields"]
    assert Intervention.objects.count() == 1
    assert not Campaign.objects.exists()


def test_put_replaces_send_time_and_content_before_the_send(shop, other_shop):
    later = timezone.now() + timedelta(hours=1)
    created = shop.client.post(
        "/api/v1/interventions/schedule",
        {"user_id": "sam", "channel": "email", "user": SAM, "scheduled_at": later.isoformat()},
        format="json",
    ).json()
    body = {
        "send_at": (later + timedelta(hours=2)).isoformat(),
        "content": {"email": {"subject": "New", "text": "Come back"}},
        "personalization": {"first_name": "Sam"},
    }

    replaced = shop.client.put(f"/api/v1/interventions/{created['id']}", body, format="json")
    partial = shop.client.put(
        f"/api/v1/interventions/{created['id']}", {"send_at": body["send_at"]}, format="json"
    )
    theirs = other_shop.client.put(f"/api/v1/interventions/{created['id']}", body, format="json")

    assert replaced.status_code == 200, replaced.content
    stored = Intervention.objects.get(pk=created["id"])
    assert stored.content == body["content"]
    assert stored.send_at == later + timedelta(hours=2)
    assert partial.status_code == 400
    assert "content" in partial.json()["error"]["fields"]
    assert theirs.status_code == 404


def test_an_event_reads_the_shoppers_devices_and_suppressions_once(shop):
    """Choosing the campaign and deciding its send read the same facts: they were read
    twice per event (issue 12)."""
    campaign(shop, channel="all")

    with CaptureQueriesContext(connection) as statements:
        response = post_event(shop, "cart_abandoned", cart=CART)

    assert response.status_code == 202
    assert len(response.json()["interventions"]) == 1
    reads = [s["sql"] for s in statements.captured_queries if s["sql"].startswith("SELECT")]
    assert len([sql for sql in reads if 'FROM "notifications_device"' in sql]) == 1
    # Suppressions once more at send time: a STOP may arrive between decision and send.
    assert len([sql for sql in reads if 'FROM "notifications_suppression"' in sql]) == 2
