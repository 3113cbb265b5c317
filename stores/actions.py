"""Store and shopper operations: plain functions, no HTTP."""

from typing import Any

from django.db import transaction

from stores.models import Shopper, Store, StoreApiKey

SHOPPER_FIELDS = ("email", "phone", "first_name", "locale", "timezone", "segment")


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
    return StoreApiKey.objects.filter(store=store, name=key_name, revoked=False).update(
        revoked=True
    )


def do_upsert_shopper(
    store: Store, external_id: str, profile: dict[str, Any] | None = None
) -> Shopper:
    """Find or create the shopper, updating the contact fields the caller sent.

    Blank values never overwrite known ones: an event without an email must not erase it.
    """
    updates = {k: v for k, v in (profile or {}).items() if k in SHOPPER_FIELDS and v}
    shopper, created = Shopper.objects.get_or_create(
        store=store, external_id=external_id, defaults=updates
    )
    if not created:
        changed = {k: v for k, v in updates.items() if getattr(shopper, k) != v}
        if changed:
            for field, value in changed.items():
                setattr(shopper, field, value)
            shopper.save(update_fields=[*changed, "updated_at"])
    return shopper
