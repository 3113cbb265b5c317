"""Events in bulk (POST /api/v1/events/batch): stored at once, decided by a worker in chunks.

Celery runs eagerly here (tests/conftest.py), so the ``decisioning`` task of a batch runs
when the intake commits, through the real task and action code.
"""

import re

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign
from interventions.actions import do_sweep_stuck
from interventions.models import CartEvent, Intervention, Status
from realtime import registry
from stores.actions import do_create_store
from tests.conftest import StoreSession

pytestmark = pytest.mark.django_db(transaction=True)

CART = {"value": "120.00", "currency": "EUR", "items": [{"sku": "TENT-2", "price": "120.00"}]}


def daytime_store(name: str) -> StoreSession:
    """No quiet hours (the outcome must not depend on when the test runs), one send an
    hour per shopper, and an email campaign for abandoned carts and for high predictions."""
    store, key = do_create_store(name=name, timezone="UTC")
    store.quiet_hours_start = store.quiet_hours_end = None
    store.frequency_cap_per_hour = 1
    store.save()
    for trigger in ("cart_abandoned", "prediction_high"):
        Campaign.objects.create(store=store, name=trigger, trigger=trigger, channel="email")
    return StoreSession(store, key)


def abandoned(user: str, cart: str, **body) -> dict:
    profile = {"email": f"{user}@example.test", "timezone": "UTC"}
    return {"type": "cart_abandoned", "user_id": user, "cart_id": cart, "user": profile,
            "cart": CART, **body}  # fmt: skip


# Each line is a rule the decision applies: a send, the hourly cap on a second cart of the
# same shopper, no address, a prediction below the threshold, a converted cart, no trigger.
EVENTS = [
    abandoned("ana", "ana-1"),
    abandoned("ana", "ana-2"),
    {"type": "cart_abandoned", "user_id": "bo", "cart_id": "bo-1", "cart": CART},
    {
        "type": "prediction",
        "user_id": "cy",
        "cart_id": "cy-1",
        "user": {"email": "cy@example.test"},
        "prediction": {"probability": 0.1, "recommended_action": "discount"},
    },
    {"type": "checkout_completed", "user_id": "di", "cart_id": "di-1", "cart": CART},
    abandoned("di", "di-1"),
    {"type": "cart_updated", "user_id": "ed", "cart_id": "ed-1", "cart": CART},
    abandoned("fay", "fay-1"),
]


def outcomes(store) -> list[tuple]:
    """What a shopper would notice, clock readings in the reasons masked."""
    return sorted(
        (
            i.shopper.external_id,
            i.cart.external_id,
            i.campaign.name,
            i.status,
            i.channel,
            [re.sub(r"\d\d:\d\d", "HH:MM", reason) for reason in i.decision["reasons"]],
        )
        for i in Intervention.objects.filter(store=store).select_related(
            "shopper", "cart", "campaign"
        )
    )


def post_batch(session: StoreSession, events: list[dict], key: str = ""):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return session.client.post("/api/v1/events/batch", {"events": events}, format="json",
                               **headers)  # fmt: skip


def test_a_batch_is_decided_as_the_same_events_sent_one_by_one(provider):
    # Given two stores set up alike
    one_by_one, in_bulk = daytime_store("One by one"), daytime_store("In bulk")

    # When one gets the events one POST each and the other gets them in one batch
    for event in EVENTS:
        assert one_by_one.client.post("/api/v1/events", event, format="json").status_code == 202
    answer = post_batch(in_bulk, EVENTS)

    # Then every event is accepted, and the batch decided the same interventions
    assert answer.status_code == 207
    assert [r["status"] for r in answer.json()["results"]] == [202] * len(EVENTS)
    expected = outcomes(one_by_one.store)
    assert [(user, status) for user, _, _, status, _, _ in expected] == [
        ("ana", Status.SENT),
        ("ana", Status.SUPPRESSED),
        ("bo", Status.SUPPRESSED),
        ("cy", Status.SUPPRESSED),
        ("di", Status.SUPPRESSED),
        ("fay", Status.SENT),
    ]
    assert outcomes(in_bulk.store) == expected
    assert sorted(m["to"] for m in provider.received) == [
        "ana@example.test", "ana@example.test", "fay@example.test", "fay@example.test"
    ]  # fmt: skip
    assert not CartEvent.objects.filter(decision_pending=True).exists()


def test_the_statements_a_batch_costs_do_not_grow_with_its_size():
    # Given a campaign that schedules its sends (so no delivery runs within the request)
    shop = daytime_store("Acme")
    Campaign.objects.filter(store=shop.store).update(delay_minutes=30)

    def statements(count: int, run: str) -> int:
        events = [abandoned(f"{run}-{n}", f"{run}-cart-{n}") for n in range(count)]
        with CaptureQueriesContext(connection) as queries:
            assert post_batch(shop, events).json()["accepted"] == count
        return len(queries)

    # When a batch of 5 and one of 60 are accepted and decided
    few, many = statements(5, "few"), statements(60, "many")

    # Then both were decided, at the same number of statements
    assert Intervention.objects.filter(status=Status.SCHEDULED).count() == 65
    assert many == few


def test_a_retried_batch_stores_and_decides_nothing_twice(provider):
    # Given a batch sent with an Idempotency-Key, one item carrying its own key
    shop = daytime_store("Acme")
    events = [abandoned("ana", "ana-1"), abandoned("bo", "bo-1", idempotency_key="bo-event")]
    first = post_batch(shop, events, key="batch-7").json()

    # When the pipeline retries it, and then reuses the item's key with another body
    again = post_batch(shop, events, key="batch-7").json()
    changed = post_batch(shop, [abandoned("bo", "bo-2", idempotency_key="bo-event")]).json()

    # Then the retry gets the first events back and nothing is stored or sent twice
    assert [r["status"] for r in first["results"]] == [202, 202]
    assert [r["status"] for r in again["results"]] == [200, 200]
    assert [r["event"] for r in again["results"]] == [r["event"] for r in first["results"]]
    assert changed["results"][0]["status"] == 409
    assert CartEvent.objects.filter(store=shop.store).count() == 2
    assert Intervention.objects.filter(store=shop.store).count() == 2
    assert len(provider.received) == 2


def test_keys_and_campaigns_are_per_store(provider):
    # Given a store with a campaign and one without
    answering, silent = daytime_store("Acme"), daytime_store("Rival")
    Campaign.objects.filter(store=silent.store).delete()

    # When both send a batch under the same key
    for session in (answering, silent):
        assert post_batch(session, [abandoned("ana", "ana-1")], key="same").json()["accepted"] == 1

    # Then each store keeps its event, and only the store with a campaign intervenes
    assert CartEvent.objects.filter(idempotency_key="same:0").count() == 2
    assert Intervention.objects.filter(store=answering.store).count() == 1
    assert not Intervention.objects.filter(store=silent.store).exists()


def test_a_chunk_that_fails_midway_is_decided_later_exactly_once(provider):
    # Given a decisioning worker whose transaction dies while storing the interventions
    # (PostgreSQL refuses the insert, as when the worker's connection is lost)
    shop = daytime_store("Acme")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'worker lost'; END $$;"
            "CREATE TRIGGER refuse BEFORE INSERT ON interventions_intervention "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse()"
        )
    try:
        answer = post_batch(shop, [abandoned("ana", "ana-1"), abandoned("bo", "bo-1")]).json()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER refuse ON interventions_intervention; DROP FUNCTION refuse()"
            )

    # Then the events are kept, undecided, and nothing went out
    assert answer["accepted"] == 2
    assert CartEvent.objects.filter(decision_pending=True).count() == 2
    assert not Intervention.objects.exists()

    # When the sweeper runs, twice
    first, second = do_sweep_stuck(undecided_after=0), do_sweep_stuck(undecided_after=0)

    # Then the events are decided and sent once
    assert (first["redecided"], second["redecided"]) == (2, 0)
    assert Intervention.objects.filter(status=Status.SENT).count() == 2
    assert sorted(m["to"] for m in provider.received) == ["ana@example.test", "bo@example.test"]


def test_a_shopper_on_the_site_gets_the_on_site_message_from_a_batch():
    # Given a campaign on any channel, and one of two shoppers connected right now
    shop = daytime_store("Acme")
    Campaign.objects.filter(store=shop.store).update(channel="all", delay_minutes=30)
    async_to_sync(registry.register)(str(shop.store.pk), "user", "ana", "live-ana", limit=10)

    # When both abandon a cart in one batch
    post_batch(shop, [abandoned("ana", "ana-1"), abandoned("bo", "bo-1")])

    # Then the connected one is answered on the site and the other by email
    channels = dict(Intervention.objects.values_list("shopper__external_id", "channel"))
    assert channels == {"ana": "websocket", "bo": "email"}


def test_campaign_budgets_hold_across_a_batch(provider):
    # Given two campaigns with room for two sends each
    shop = daytime_store("Acme")
    shop.store.frequency_cap_per_hour = 0
    shop.store.save()
    Campaign.objects.filter(store=shop.store).update(budget_sends_total=2)
    prediction = {"probability": 0.9, "recommended_action": "reminder"}
    events = [
        *(abandoned(f"a{n}", f"a{n}-cart") for n in range(3)),
        *({**abandoned(f"p{n}", f"p{n}-cart"), "type": "prediction", "prediction": prediction}
          for n in range(3)),
    ]  # fmt: skip

    # When a batch brings three events for each
    post_batch(shop, events)

    # Then each campaign sends twice and refuses the third for its budget
    for campaign in Campaign.objects.filter(store=shop.store):
        statuses = sorted(campaign.interventions.values_list("status", "status_reason"))
        assert [status for status, _ in statuses] == ["sent", "sent", "suppressed"]
        assert statuses[-1][1] == "suppressed: budget_exhausted:sends_total"
