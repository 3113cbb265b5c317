from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from interventions import actions
from interventions.models import Cart, CartEvent, DeliveryAttempt, Intervention, InterventionEvent
from stores.admin_scoping import StoreScopedAdmin, StoreScopedTabularInline


class InterventionEventInline(StoreScopedTabularInline):
    model = InterventionEvent
    store_path = "intervention__store"
    extra = 0
    can_delete = False
    readonly_fields = fields = ("at", "from_status", "to_status", "reason")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryAttemptInline(StoreScopedTabularInline):
    model = DeliveryAttempt
    store_path = "intervention__store"
    extra = 0
    can_delete = False
    readonly_fields = fields = (
        "started_at",
        "finished_at",
        "channel",
        "transport",
        "outcome",
        "error",
        "provider_message_id",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Intervention)
class InterventionAdmin(StoreScopedAdmin):
    list_display = [
        "id",
        "store",
        "shopper",
        "channel",
        "status",
        "status_reason",
        "send_at",
        "created_at",
    ]
    list_filter = ["status", "channel", "origin", "store"]
    search_fields = [
        "id",
        "shopper__external_id",
        "cart__external_id",
        "idempotency_key",
        "provider_message_id",
    ]
    date_hierarchy = "created_at"
    list_select_related = ["store", "shopper"]
    readonly_fields = [
        "id",
        "store",
        "shopper",
        "cart",
        "campaign",
        "origin",
        "requested_channel",
        "channel",
        "fallback_channels",
        "status",
        "status_reason",
        "decision_reasons",
        "decision",
        "template_key",
        "template_version",
        "personalization",
        "content",
        "send_at",
        "expires_at",
        "attempts",
        "provider_message_id",
        "idempotency_key",
        "sent_at",
        "delivered_at",
        "created_at",
        "updated_at",
    ]
    exclude = ["request_fingerprint", "queued_at"]
    inlines = [InterventionEventInline, DeliveryAttemptInline]
    actions = ["retry_failed", "cancel_unsent"]

    @admin.display(description="Why")
    def decision_reasons(self, obj: Intervention) -> str:
        return format_html_join(
            "", "<div>{}</div>", ((r,) for r in obj.decision.get("reasons", []))
        )

    @admin.action(description="Retry the selected failed interventions")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Intervention]) -> None:
        retried = 0
        for intervention in queryset.filter(status="failed"):
            actions.do_retry_failed(intervention, f"retry requested in the admin by {request.user}")
            retried += 1
        self.message_user(request, f"{retried} intervention(s) queued again.", messages.SUCCESS)

    @admin.action(description="Cancel the selected unsent interventions")
    def cancel_unsent(self, request: HttpRequest, queryset: QuerySet[Intervention]) -> None:
        cancelled = 0
        for intervention in queryset:
            try:
                actions.do_cancel_intervention(
                    intervention, f"cancelled in the admin by {request.user}"
                )
                cancelled += 1
            except actions.InterventionConflict:
                continue
        self.message_user(request, f"{cancelled} intervention(s) cancelled.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Cart)
class CartAdmin(StoreScopedAdmin):
    list_display = [
        "external_id",
        "store",
        "shopper",
        "value",
        "currency",
        "probability",
        "abandoned_at",
        "converted_at",
    ]
    list_filter = ["store"]
    search_fields = ["external_id", "shopper__external_id"]


@admin.register(CartEvent)
class CartEventAdmin(StoreScopedAdmin):
    list_display = ["type", "store", "cart", "user_id", "occurred_at", "received_at"]
    list_filter = ["type", "store"]
    search_fields = ["cart__external_id", "user_id"]
    readonly_fields = ["store", "type", "cart", "user_id", "payload", "occurred_at", "received_at"]
