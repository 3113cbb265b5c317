import pytest


@pytest.fixture(autouse=True)
def daytime_store(db, shop):
    """No quiet hours: whether an intervention is queued must not depend on the hour."""
    shop.store.quiet_hours_start = None
    shop.store.quiet_hours_end = None
    shop.store.save()
    return shop
