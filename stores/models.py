"""Stores (the tenants), their API keys, and their shoppers.

Every other store-owned row carries a ``store`` foreign key; the API reaches rows
only through the authenticated store (``stores.api.StoreScopedMixin``), the admin only
through the signed-in user's memberships (``stores.admin_scoping``).
"""

import functools
import uuid
import zoneinfo
from datetime import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager

CHANNEL_CHOICES = [("websocket", "WebSocket"), ("email", "Email"), ("sms", "SMS"), ("push", "Push")]
CHANNELS = tuple(value for value, _ in CHANNEL_CHOICES)


@functools.cache
def iana_timezones() -> frozenset[str]:
    """The zone names, read once per process: ``zoneinfo.available_timezones()`` walks
    the tz database's directory tree on every call, ~30 ms, which was most of the
    validation of a batch item with a profile (issue 12). The database only changes
    with a package upgrade, which restarts the process."""
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in iana_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone name (e.g. 'Europe/Paris').")


def default_fallback_chain() -> list[str]:
    return ["websocket", "push", "email", "sms"]


def default_channel_caps() -> dict[str, int]:
    # At most this many interventions per shopper per channel per day.
    return {"email": 3, "sms": 1, "push": 3, "websocket": 10}


class AttributionModel(models.TextChoices):
    """How an order is credited to the interventions that touched the shopper
    (tracking.attribution, docs/analytics.md)."""

    LAST_TOUCH = "last_touch", "Last touch"
    FIRST_TOUCH = "first_touch", "First touch"
    LINEAR = "linear", "Linear"
    ANY_EXPOSURE = "any_exposure", "Any exposure (experiments)"


class Store(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text="Storefront origins allowed to open WebSocket connections, e.g. https://shop.example.",
    )
    probability_threshold = models.FloatField(
        default=0.3,
        help_text="Intervene when the predicted probability of conversion is below this.",
    )
    quiet_hours_start = models.TimeField(null=True, blank=True, default=time(21, 0))
    quiet_hours_end = models.TimeField(null=True, blank=True, default=time(8, 0))
    frequency_cap_per_hour = models.PositiveIntegerField(
        default=1, help_text="At most this many interventions per shopper per hour, all channels."
    )
    channel_caps_per_day = models.JSONField(default=default_channel_caps, blank=True)
    fallback_chain = models.JSONField(
        default=default_fallback_chain,
        blank=True,
        help_text="Channel order for 'auto' and for falling back after a permanent failure.",
    )
    max_websocket_connections = models.PositiveIntegerField(default=10_000)
    cart_url_template = models.CharField(
        max_length=500,
        blank=True,
        help_text="Where recovery links send the shopper, e.g. https://shop.example/cart?id={cart_id}.",
    )
    attribution_model = models.CharField(
        max_length=16, choices=AttributionModel.choices, default=AttributionModel.LAST_TOUCH
    )
    attribution_window_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="An order this long after a send can be credited to it; empty: "
        "ATTRIBUTION_WINDOW_HOURS (72). A campaign's own window wins for its sends.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class StoreApiKeyManager(APIKeyManager):
    def get_usable_keys(self) -> models.QuerySet["StoreApiKey"]:
        # Every authenticated request needs the store: one query, not two.
        return super().get_usable_keys().select_related("store")


class StoreApiKey(AbstractAPIKey):
    """Hashed (only the prefix is stored in clear), revocable, one store's."""

    objects = StoreApiKeyManager()  # type: ignore[misc]
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="api_keys")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        ordering = ("-created",)


class Shopper(models.Model):
    """A store's customer, known by the store's own user id."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="shoppers")
    external_id = models.CharField(max_length=200, help_text="The store's user id.")
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    locale = models.CharField(max_length=16, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2.")
    timezone = models.CharField(max_length=64, blank=True, validators=[validate_timezone])
    segment = models.CharField(max_length=64, blank=True)
    channel_preferences = models.JSONField(
        default=list, blank=True, help_text="Preferred channels, most preferred first."
    )
    opted_out_channels = models.JSONField(default=list, blank=True)
    # Set by an erasure (interventions.actions.privacy): the row stays, emptied of personal
    # data, so the interventions that point at it keep the store's counts right.
    erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "external_id"], name="unique_shopper_per_store"
            )
        ]

    def __str__(self) -> str:
        return self.external_id


class ErasureRecord(models.Model):
    """Proof that a shopper was erased, holding nothing personal about them.

    ``shopper_hash`` is the SHA-256 of ``<store id>:<user id>``: a store asked whether a
    user was erased can compute it and look, while the record alone names no one.
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="erasures")
    shopper_hash = models.CharField(max_length=64, db_index=True)
    erased_at = models.DateTimeField()
    erased_by = models.CharField(max_length=200, help_text="The API key or admin user that asked.")
    counts = models.JSONField(default=dict, blank=True, help_text="Rows erased, per kind.")

    class Meta:
        ordering = ["-erased_at", "-id"]

    def __str__(self) -> str:
        return f"erasure {self.shopper_hash[:12]}… at {self.erased_at:%Y-%m-%d %H:%M}"


class StoreRole(models.TextChoices):
    """What a staff user may do with one store's data in the admin, weakest first."""

    VIEWER = "viewer", "Viewer (read only)"
    MARKETER = "marketer", "Marketer (campaigns, templates, interventions, shoppers)"
    OWNER = "owner", "Owner (also API keys, store settings and memberships)"

    def grants(self, needed: "StoreRole") -> bool:
        return ROLE_STRENGTH[self] >= ROLE_STRENGTH[needed]


ROLE_STRENGTH = {StoreRole.VIEWER: 0, StoreRole.MARKETER: 1, StoreRole.OWNER: 2}


class StoreMembership(models.Model):
    """A staff user's access to one store in the admin; superusers need none."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="store_memberships"
    )
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=StoreRole.choices, default=StoreRole.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["store", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "store"], name="unique_membership_per_store")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.store} ({self.role})"


class AuditEntry(models.Model):
    """One change to a store's configuration (its settings, API keys, templates, campaigns),
    by whom, when, and each field before and after (docs/operations.md#audit-log).

    Written by ``stores.audit.do_record_audit`` from the admin and the API, in the
    transaction of the change. Rows outlive the object they describe (a deleted campaign
    or key keeps its trail), so the object is named by type, id and text, not a foreign key.
    """

    store = models.ForeignKey(
        Store, on_delete=models.CASCADE, related_name="audit_entries", null=True, blank=True
    )
    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=200, help_text="A user's name or 'api key: <name>'.")
    action = models.CharField(max_length=32)  # added | changed | deleted | launch | publish ...
    object_type = models.CharField(max_length=100)  # app_label.model
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, blank=True)  # {field: [before, after]}

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["store", "-at"]),
            models.Index(fields=["object_type", "object_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_repr} by {self.actor}"
