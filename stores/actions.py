"""Store and shopper operations: plain functions, no HTTP."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from stores.api_keys import announce_access_changed
from stores.models import Shopper, Store, StoreApiKey, StoreMembership, StoreRole

SHOPPER_FIELDS = ("email", "phone", "first_name", "locale", "country", "timezone", "segment")


@transaction.atomic
def do_create_store(name: str, timezone: str = "UTC", **settings: Any) -> tuple[Store, str]:
    """Create a store and its first API key; the key is returned once and stored hashed."""
    store = Store(name=name, timezone=timezone, **settings)
    store.full_clean()
    store.save()
    key = do_issue_api_key(store, key_name="default")
    return store, key


def do_issue_api_key(store: Store, key_name: str) -> str:
    _, key = StoreApiKey.objects.create_key(store=store, name=key_name)
    return key


def do_revoke_api_keys(store: Store, key_name: str) -> int:
    revoked = StoreApiKey.objects.filter(store=store, name=key_name, revoked=False).update(
        revoked=True
    )
    announce_access_changed()  # web processes remember verified keys for a few seconds
    return revoked


def do_grant_store_membership(user: Any, store: Store, role: StoreRole) -> StoreMembership:
    """Give a staff user ``role`` in ``store`` in the admin, replacing any role they had there."""
    membership, _ = StoreMembership.objects.update_or_create(
        user=user, store=store, defaults={"role": role}
    )
    return membership


def do_upsert_shopper(
    store: Store, external_id: str, profile: dict[str, Any] | None = None, lock: bool = False
) -> Shopper:
    """Find or create the shopper, updating the contact fields the caller sent.

    Blank values never overwrite known ones: an event without an email must not erase it.
    This runs for every event and trigger, so the common case, a known shopper whose
    details did not change, is one SELECT (``FOR UPDATE`` with ``lock``); a new shopper
    is an INSERT ... ON CONFLICT, safe against a concurrent first event.
    """
    updates = {k: v for k, v in (profile or {}).items() if k in SHOPPER_FIELDS and v}
    # Unordered: (store, external_id) is unique, and the model's default ordering (by
    # store, i.e. by the store's name) joined stores_store into every look-up, so
    # ``FOR UPDATE`` locked the store's row too and serialized all of a store's events.
    shoppers = (Shopper.objects.select_for_update() if lock else Shopper.objects.all()).order_by()
    shopper = next(iter(shoppers.filter(store=store, external_id=external_id)[:1]), None)
    if shopper is None:
        row = Shopper(store=store, external_id=external_id, updated_at=timezone.now(), **updates)
        Shopper.objects.bulk_create(
            [row],
            update_conflicts=True,
            unique_fields=["store", "external_id"],
            update_fields=[*updates, "updated_at"],
        )
        return shoppers.get(store=store, external_id=external_id)
    changed = {k: v for k, v in updates.items() if getattr(shopper, k) != v}
    if changed:
        for field, value in changed.items():
            setattr(shopper, field, value)
        shopper.save(update_fields=[*changed, "updated_at"])
    return shopper
