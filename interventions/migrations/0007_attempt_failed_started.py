"""A partial index on the failed delivery attempts' start, for the delivery-failure
rollups' recount (tracking.rollups): a few days of failures without scanning the table.
Built CONCURRENTLY on PostgreSQL like 0005's indexes (the same operation, imported rather
than copied), so the attempts table stays writable while it builds."""

from importlib import import_module

from django.db import migrations, models

AddIndexConcurrentlyOnPostgres = import_module(
    "interventions.migrations.0005_analytics_indexes"
).AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("interventions", "0006_cart_event_idempotency_key"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="deliveryattempt",
            index=models.Index(
                condition=models.Q(outcome="worker_lost")
                | models.Q(outcome="transient_error")
                | models.Q(outcome="permanent_error"),
                fields=["started_at"],
                name="attempt_failed_started",
            ),
        ),
    ]
