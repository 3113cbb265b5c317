"""Campaigns that existed before the lifecycle keep doing what they did."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("campaigns", "0001_initial")]
AFTER = [("campaigns", "0002_lifecycle_variants_exposures")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def back_to_the_latest_migrations():
    """Later tests need the whole schema, not the one this test stopped at."""
    yield
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_active_campaigns_become_running_and_inactive_ones_drafts(shop):
    old = migrate(BEFORE)
    Campaign = old.get_model("campaigns", "Campaign")
    for name, active in (("live", True), ("off", False)):
        Campaign.objects.create(
            store_id=shop.store.pk,
            name=name,
            is_active=active,
            trigger="cart_abandoned",
            channel="email",
        )

    new = migrate(AFTER)

    statuses = dict(new.get_model("campaigns", "Campaign").objects.values_list("name", "status"))
    assert statuses == {"live": "running", "off": "draft"}
