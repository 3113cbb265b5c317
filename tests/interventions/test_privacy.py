"""Data protection: erasing a shopper, exporting their data, pruning rows past retention
(docs/operations.md#data-protection)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from interventions.actions.privacy import shopper_hash
from interventions.models import Intervention, Status
from notifications.actions import do_suppress_address
from notifications.models import Device, Suppression
from notifications.transports.base import get_transport
from outbound.models import OutboxEvent
from realtime.redis_clients import sync_redis
from realtime.replay import store_room, stream_key, user_room
from stores.models import ErasureRecord, Shopper
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "samantha.erase@example.test"
PHONE = "+33612345678"
NAME = "Samantha"
TOKEN = "push-token-of-samantha-0123456789"
SAM = {"email": EMAIL, "phone": PHONE, "first_name": NAME, "push_tokens": [TOKEN]}
CART = {
    "value": "120.00",
    "currency": "EUR",
    "items": [{"sku": "TENT-2", "name": "Tent", "price": "120.00", "quantity": 1}],
}
# Tables holding shopper data; suppressions keep the address on purpose.
TOUCHED_TABLES = (
    "stores_shopper",
    "stores_erasurerecord",
    "interventions_cart",
    "interventions_cartevent",
    "interventions_intervention",
    "interventions_interventionevent",
    "interventions_deliveryattempt",
    "tracking_trackingevent",
    "notifications_device",
    "outbound_outboxevent",
)


@pytest.fixture(autouse=True)
def engine(shop, other_shop, settings):
    """Daytime stores, WebSocket frames through real Redis (this worktree's db, emptied)."""
    for session in (shop, other_shop):
        session.store.quiet_hours_start = session.store.quiet_hours_end = None
        session.store.save()
    settings.NOTIFICATION_TRANSPORTS = {
        **settings.NOTIFICATION_TRANSPORTS,
        "websocket": "realtime.transport.WebSocketTransport",
    }
    get_transport.cache_clear()
    sync_redis.cache_clear()
    for key in sync_redis().scan_iter("ie:ws:*", count=1000):
        sync_redis().delete(key)
    yield
    get_transport.cache_clear()


def post_event(session, type_, user_id="sam", **body):
    payload = {"type": type_, "cart_id": f"cart-{user_id}", "user_id": user_id, **body}
    response = session.client.post("/api/v1/events", payload, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def trigger(session, user_id="sam", **body):
    payload = {"user_id": user_id, "channel": "websocket", **body}
    response = session.client.post("/api/v1/interventions", payload, format="json")
    assert response.status_code in (200, 201, 202), response.json()
    return response.json()


def shopper_with_history(session, provider, user_id="sam", profile=SAM):
    """A shopper who abandoned a cart, was emailed, bought, got a WebSocket message
    naming them, and has one more message scheduled for tomorrow."""
    Campaign.objects.create(
        store=session.store, name="Abandoned", trigger="cart_abandoned", channel="email"
    )
    post_event(session, "cart_abandoned", user_id, user=profile, cart=CART)
    post_event(session, "checkout_completed", user_id, cart={"value": "120.00"})
    trigger(
        session,
        user_id,
        personalization={"title": f"Hi {NAME}", "body": f"Sent to {EMAIL} and {PHONE}"},
    )
    trigger(
        session,
        user_id,
        channel="email",
        scheduled_at=(timezone.now() + timedelta(days=1)).isoformat(),
    )
    do_suppress_address(session.store.pk, "email", profile["email"], reason="bounce")
    return Shopper.objects.get(store=session.store, external_id=user_id)


def rows_mentioning(value: str) -> dict[str, int]:
    """Every text and JSON column of the touched tables that still holds ``value``."""
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_name = ANY(%s) AND data_type IN "
            "('text', 'character varying', 'json', 'jsonb')",
            [list(TOUCHED_TABLES)],
        )
        for table, column in cursor.fetchall():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s',  # noqa: S608 - names from information_schema
                [f"%{value}%"],
            )
            (count,) = cursor.fetchone()
            if count:
                found[f"{table}.{column}"] = count
    return found


def status_counts(store):
    return sorted(Intervention.objects.filter(store=store).values_list("channel", "status"))


def test_erasure_leaves_no_personal_data_and_keeps_the_counts(shop, provider):
    shopper = shopper_with_history(shop, provider)
    for value in (EMAIL, PHONE, NAME, TOKEN):
        assert rows_mentioning(value), value
    assert OutboxEvent.objects.filter(type="conversion.recorded", data__user_id="sam").exists()
    before = status_counts(shop.store)
    assert ("websocket", Status.SENT) in before
    assert ("email", Status.SCHEDULED) in before

    response = shop.client.delete(f"/api/v1/shoppers/{shopper.pk}")

    assert response.status_code == 204
    for value in (EMAIL, PHONE, NAME, TOKEN):
        assert rows_mentioning(value) == {}, value
    # The order still goes out to subscribers, without the store's id of the shopper.
    [order_event] = OutboxEvent.objects.filter(type="conversion.recorded")
    assert order_event.data["user_id"] != "sam"
    assert order_event.data["value"] == "120.00"
    # Same interventions, channels and campaign; only the scheduled one is now cancelled.
    after = status_counts(shop.store)
    assert len(after) == len(before)
    assert after == sorted(
        (channel, Status.CANCELLED if status == Status.SCHEDULED else status)
        for channel, status in before
    )
    assert Intervention.objects.filter(store=shop.store, campaign__name="Abandoned").count() == 1
    [conversion] = TrackingEvent.objects.filter(store=shop.store, kind="converted")
    assert str(conversion.revenue) == "120.00"
    assert all(
        i.content == {} and i.personalization == {} and "erased_at" in i.decision
        for i in Intervention.objects.filter(store=shop.store)
    )
    assert not Device.objects.filter(store=shop.store).exists()
    # Kept so the address is never contacted again.
    assert Suppression.objects.filter(store=shop.store, address=EMAIL).exists()


def test_erased_shopper_is_gone_from_the_api_and_the_erasure_is_recorded(shop, provider):
    shopper = shopper_with_history(shop, provider)

    shop.client.delete(f"/api/v1/shoppers/{shopper.pk}")

    assert shop.client.get(f"/api/v1/shoppers/{shopper.pk}").status_code == 404
    assert shop.client.delete(f"/api/v1/shoppers/{shopper.pk}").status_code == 404
    assert shop.client.get("/api/v1/shoppers").json() == []
    [record] = ErasureRecord.objects.filter(store=shop.store)
    assert record.shopper_hash == shopper_hash(shop.store.pk, "sam")
    assert record.erased_by.startswith("api_key:")
    assert record.counts["interventions"] == 3
    assert record.counts["interventions_cancelled"] == 1
    assert record.counts["cart_events"] == 2
    assert record.counts["devices"] == 1


# Replay ids are Redis server time: this process's clock must be the real one.
@pytest.mark.real_clock
def test_erasure_clears_the_shoppers_replay_frames(shop, other_shop, provider):
    shopper_with_history(shop, provider)
    trigger(shop, "bob", personalization={"title": "Hi Bob"})
    redis = sync_redis()
    sam_room = stream_key(user_room(str(shop.store.pk), "sam"))
    store_stream = stream_key(store_room(str(shop.store.pk)))
    assert redis.xlen(sam_room) == 1
    assert redis.xlen(store_stream) == 2

    shop.client.delete(f"/api/v1/shoppers/{Shopper.objects.get(external_id='sam').pk}")

    assert not redis.exists(sam_room)
    [(_, fields)] = redis.xrange(store_stream)
    assert b"Hi Bob" in fields[b"payload"]


def test_another_stores_shopper_is_a_404_and_untouched(shop, other_shop, provider):
    theirs = shopper_with_history(other_shop, provider)
    held = rows_mentioning(EMAIL)

    response = shop.client.delete(f"/api/v1/shoppers/{theirs.pk}")

    assert response.status_code == 404
    assert shop.client.get(f"/api/v1/shoppers/{theirs.pk}/export").status_code == 404
    assert rows_mentioning(EMAIL) == held
    assert not ErasureRecord.objects.exists()
    assert other_shop.client.get(f"/api/v1/shoppers/{theirs.pk}").json()["email"] == EMAIL


def test_erasing_one_shopper_leaves_another_shoppers_data(shop, provider):
    shopper = shopper_with_history(shop, provider)
    other = {"email": "bob@example.test", "first_name": "Bob"}
    post_event(shop, "cart_updated", "bob", user=other, cart=CART)

    shop.client.delete(f"/api/v1/shoppers/{shopper.pk}")

    bob = shop.client.get("/api/v1/shoppers").json()
    assert [(s["user_id"], s["email"]) for s in bob] == [("bob", "bob@example.test")]
    assert "interventions_cartevent.payload" in rows_mentioning("bob@example.test")


def test_export_holds_everything_about_the_shopper(shop, provider):
    shopper = shopper_with_history(shop, provider)
    post_event(shop, "cart_updated", "bob", user={"email": "bob@example.test"}, cart=CART)

    response = shop.client.get(f"/api/v1/shoppers/{shopper.pk}/export")

    assert response.status_code == 200
    export = response.json()
    assert export["profile"]["user_id"] == "sam"
    assert (export["profile"]["email"], export["profile"]["phone"]) == (EMAIL, PHONE)
    assert [(c["id"], c["conversion_value"]) for c in export["carts"]] == [("cart-sam", "120.00")]
    assert sorted(e["type"] for e in export["events"]) == ["cart_abandoned", "checkout_completed"]
    assert all(
        e["payload"]["user"]["email"] == EMAIL for e in export["events"] if "user" in e["payload"]
    )
    by_channel = {(i["channel"], i["status"]): i for i in export["interventions"]}
    assert by_channel[("websocket", "sent")]["content"]["title"] == f"Hi {NAME}"
    assert [h["to"] for h in by_channel[("email", "scheduled")]["history"]] == ["scheduled"]
    emailed = by_channel[("email", "sent")]
    assert [a["outcome"] for a in emailed["attempts"]] == ["succeeded"]
    assert emailed["campaign"] == "Abandoned"
    conversions = [t for t in export["tracking"] if t["kind"] == "converted"]
    assert [(t["intervention_id"], t["revenue"]) for t in conversions] == [
        (emailed["id"], "120.00")
    ]
    assert [d["token"] for d in export["devices"]] == [TOKEN]
    assert [(s["channel"], s["address"]) for s in export["suppressions"]] == [("email", EMAIL)]
    assert "bob@example.test" not in response.content.decode()


def test_deleting_a_shopper_in_the_admin_erases_them_as_the_api_does(
    shop, provider, client, django_user_model
):
    shopper = shopper_with_history(shop, provider)
    before = status_counts(shop.store)
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.test", "pw"))

    response = client.post(f"/admin/stores/shopper/{shopper.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    for value in (EMAIL, PHONE, NAME, TOKEN):
        assert rows_mentioning(value) == {}, value
    # The order still goes out to subscribers, without the store's id of the shopper.
    [order_event] = OutboxEvent.objects.filter(type="conversion.recorded")
    assert order_event.data["user_id"] != "sam"
    assert order_event.data["value"] == "120.00"
    assert len(status_counts(shop.store)) == len(before)  # not cascaded away
    [record] = ErasureRecord.objects.filter(store=shop.store)
    assert record.erased_by == "admin: root"
    assert client.get(f"/admin/stores/shopper/{shopper.pk}/change/").status_code in (302, 404)
