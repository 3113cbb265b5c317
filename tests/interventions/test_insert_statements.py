"""The single-row INSERTs the one-statement writes send are the ones Django would."""

import time_machine
from django.db import DEFAULT_DB_ALIAS, models
from django.db.models.sql import InsertQuery
from django.utils import timezone

from interventions.models import DeliveryAttempt, Intervention, InterventionEvent, insert_statement
from outbound import outbox


def comparable(statement):
    sql, params = statement
    # psycopg's JSON wrapper compares by identity: compare what it wraps.
    return sql, [getattr(param, "obj", param) for param in params]


def compiled(obj):
    fields = [f for f in type(obj)._meta.concrete_fields if not isinstance(f, models.AutoField)]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    [(sql, params)] = query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
    return sql, list(params)


def test_a_row_of_each_model_is_inserted_as_djangos_compiler_would(shop):
    """The statement text is compiled once per model and reused (issue 12): a Django
    upgrade that changes the compiled form must not go unnoticed."""
    response = shop.client.post(
        "/api/v1/interventions", {"user_id": "u1", "channel": "websocket"}, format="json"
    )
    intervention = Intervention.objects.get(pk=response.json()["id"])
    now = timezone.now()
    rows = [
        intervention,
        InterventionEvent(
            intervention=intervention, from_status="queued", to_status="sent", at=now
        ),
        DeliveryAttempt(intervention=intervention, channel="websocket", transport="websocket"),
        outbox.status_changed(intervention, "queued", "sent", "published", now),
    ]

    with time_machine.travel(now, tick=False):  # auto_now columns read the clock
        for row in rows:
            assert comparable(insert_statement([row])) == comparable(compiled(row))
