"""The analytics bench seed (docs/benchmarks.md, "Analytics at volume"): it drops the
loaded tables' indexes and constraints for speed, so it must put every one of them back
as the migrations made it, and write the rows the dashboards read."""

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from interventions.models import Cart, DeliveryAttempt, Intervention
from tracking.models import Conversion, TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = """
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated
FROM pg_constraint WHERE contype IN ('p', 'u', 'f')
UNION ALL
SELECT indrelid::regclass::text, indexrelid::regclass::text, pg_get_indexdef(indexrelid), true
FROM pg_index
ORDER BY 1, 2, 3
"""


def schema() -> list[tuple[str, str, str, bool]]:
    with connection.cursor() as cursor:
        cursor.execute(SCHEMA)
        return cursor.fetchall()


def test_seed_leaves_every_index_and_constraint_as_the_migrations_made_it() -> None:
    before = schema()
    out = io.StringIO()

    call_command(
        "seed_analytics_bench", interventions=3000, chunk=1000, stores=3, stdout=out,
        stderr=io.StringIO(),
    )  # fmt: skip

    assert schema() == before
    summary = json.loads(out.getvalue())
    assert Intervention.objects.count() == summary["interventions"] == 3000
    # What the analytics and the dashboard read, in roughly the proportions.
    assert Cart.objects.count() == 2000
    assert 4 < TrackingEvent.objects.count() / 3000 < 6
    assert DeliveryAttempt.objects.filter(outcome="permanent_error").exists()
    orders = Conversion.objects.count()
    assert 0.01 < orders / 3000 < 0.04
    assert TrackingEvent.objects.filter(kind="converted").count() == orders
