"""/events takes an Idempotency-Key (issue 12).

Safe on a large cart-event table: the three columns have constant defaults (a catalog-only
change in PostgreSQL 11+, no rewrite), and the partial unique index is built
CONCURRENTLY, outside a transaction, so inserts are not blocked while it builds.
"""

from django.db import migrations, models


UNIQUE = models.UniqueConstraint(
    condition=models.Q(("idempotency_key", ""), _negated=True),
    fields=("store", "idempotency_key"),
    name="unique_event_idempotency_key_per_store",
)


def add_unique_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":  # embedded mode: SQLite, no rows
        schema_editor.add_constraint(apps.get_model("interventions", "CartEvent"), UNIQUE)
        return
    schema_editor.execute(
        'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "unique_event_idempotency_key_per_store" '
        'ON "interventions_cartevent" ("store_id", "idempotency_key") '
        "WHERE NOT (\"idempotency_key\" = '')"
    )


def drop_unique_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.remove_constraint(apps.get_model("interventions", "CartEvent"), UNIQUE)
        return
    schema_editor.execute(
        'DROP INDEX CONCURRENTLY IF EXISTS "unique_event_idempotency_key_per_store"'
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("interventions", "0005_analytics_indexes")]

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
            state_operations=[migrations.AddConstraint(model_name="cartevent", constraint=UNIQUE)],
            database_operations=[migrations.RunPython(add_unique_index, drop_unique_index)],
        ),
    ]
