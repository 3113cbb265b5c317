"""/events takes an Idempotency-Key (issue 12).

Safe on a large cart-event table: the three columns have constant defaults (a catalog-only
change in PostgreSQL 11+, no rewrite), and the partial unique index is built
CONCURRENTLY, outside a transaction, so inserts are not blocked while it builds.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("interventions", "0004_intervention_variant")]

    operations = [
        migrations.AddField(
            model_name="cartevent",
            name="idempotency_key",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="cartevent",
            name="request_fingerprint",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="cartevent",
            name="answer",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(
                    model_name="cartevent",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("idempotency_key", ""), _negated=True),
                        fields=("store", "idempotency_key"),
                        name="unique_event_idempotency_key_per_store",
                    ),
                )
            ],
            database_operations=[
                migrations.RunSQL(
                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "
                    '"unique_event_idempotency_key_per_store" ON "interventions_cartevent" '
                    '("store_id", "idempotency_key") WHERE NOT ("idempotency_key" = \'\')',
                    reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS "
                    '"unique_event_idempotency_key_per_store"',
                )
            ],
        ),
    ]
