from django.contrib import admin

from campaigns.models import Campaign
from stores.admin_scoping import StoreScopedAdmin


@admin.register(Campaign)
class CampaignAdmin(StoreScopedAdmin):
    list_display = ["name", "store", "is_active", "trigger", "channel", "delay_minutes", "priority"]
    list_filter = ["store", "is_active", "trigger", "channel"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["store", "name", "is_active", "priority"]}),
        (
            "When and how",
            {"fields": ["trigger", "delay_minutes", "channel", "template_key", "discount_percent"]},
        ),
        (
            "Conditions (empty means any)",
            {
                "fields": [
                    "min_cart_value",
                    "max_cart_value",
                    "segments",
                    "min_probability",
                    "max_probability",
                ]
            },
        ),
    ]
