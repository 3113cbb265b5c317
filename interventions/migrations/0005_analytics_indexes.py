"""Indexes for the analytics rollup recounts and the funnel's abandoned carts.

Built CONCURRENTLY on PostgreSQL (no write lock on interventions while the index builds,
which takes minutes at 10 M rows), hence ``atomic = False``; a plain CREATE INDEX on
SQLite (embedded mode), which has neither concurrent builds nor a hot table.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("interventions", "0004_intervention_variant"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="cart",
            index=models.Index(fields=["store", "abandoned_at"], name="cart_store_abandoned"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="intervention",
            index=models.Index(fields=["store", "sent_at"], name="intervention_store_sent"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="intervention",
            index=models.Index(fields=["store", "created_at"], name="intervention_store_created"),
        ),
    ]
