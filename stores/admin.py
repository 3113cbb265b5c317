from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from stores.models import Shopper, Store, StoreApiKey


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "timezone", "probability_threshold", "frequency_cap_per_hour"]
    search_fields = ["name", "id"]


@admin.register(StoreApiKey)
class StoreApiKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "store")  # type: ignore[assignment]
    list_filter = (*APIKeyModelAdmin.list_filter, "store")  # type: ignore[assignment]


@admin.register(Shopper)
class ShopperAdmin(admin.ModelAdmin):
    list_display = ["external_id", "store", "email", "phone", "segment", "timezone"]
    list_filter = ["store", "segment"]
    search_fields = ["external_id", "email", "phone"]
