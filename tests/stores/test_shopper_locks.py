"""Events lock the one shopper they are about, not the rest of the store."""

import threading

import pytest
from django.db import connection, transaction

from stores.actions import do_upsert_shopper


@pytest.mark.django_db(transaction=True)
def test_locking_a_shopper_does_not_hold_up_the_other_shoppers_of_the_store(shop):
    """The look-up was ordered by the model's default ordering (by store name), which
    joined stores_store, so FOR UPDATE locked the store's row: every event of a store
    waited for the one before it (and a store edit in the admin waited for them)."""
    for user in ("ann", "bob"):
        do_upsert_shopper(shop.store, user)
    held, release = threading.Event(), threading.Event()

    def hold_ann() -> None:
        try:
            with transaction.atomic():
                do_upsert_shopper(shop.store, "ann", lock=True)
                held.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_ann)
    holder.start()
    assert held.wait(10)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            bob = do_upsert_shopper(shop.store, "bob", lock=True)
    finally:
        release.set()
        holder.join(10)

    assert bob.external_id == "bob"
