from django.contrib import admin

from notifications.models import Device, Suppression


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["__str__", "store", "shopper", "platform", "active", "updated_at"]
    list_filter = ["store", "platform", "active"]
    search_fields = ["token", "shopper__external_id"]
    raw_id_fields = ["shopper"]


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Deleting a row here lets the address receive messages again."""

    list_display = ["address", "channel", "reason", "store", "created_at"]
    list_filter = ["store", "channel", "reason"]
    search_fields = ["address"]
