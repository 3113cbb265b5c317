from django.contrib import admin

from notifications.models import Device, Suppression
from stores.admin_scoping import StoreScopedAdmin
from stores.models import StoreRole


@admin.register(Device)
class DeviceAdmin(StoreScopedAdmin):
    list_display = ["__str__", "store", "shopper", "platform", "active", "updated_at"]
    list_filter = ["store", "platform", "active"]
    search_fields = ["token", "shopper__external_id"]
    raw_id_fields = ["shopper"]


@admin.register(Suppression)
class SuppressionAdmin(StoreScopedAdmin):
    """Deleting a row here lets the address receive messages again."""

    # Re-opening an address that bounced or complained is a compliance decision.
    managing_role = StoreRole.OWNER

    list_display = ["address", "channel", "reason", "store", "created_at"]
    list_filter = ["store", "channel", "reason"]
    search_fields = ["address"]
