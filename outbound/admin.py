"""Subscriber endpoints in the admin, store-scoped; the secret is shown once, on the page
right after the endpoint is created."""

from collections import defaultdict
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from outbound import actions
from outbound.models import WebhookDelivery, WebhookEndpoint
from stores.admin_scoping import StoreScopedAdmin
from stores.models import StoreRole


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ["store", "url", "description", "event_types", "enabled"]

    def clean_url(self) -> str:
        try:
            return actions.check_url(self.cleaned_data["url"])
        except actions.EndpointInvalid as error:
            raise ValidationError(str(error)) from error

    def clean_event_types(self) -> list[str]:
        try:
            return actions.check_event_types(self.cleaned_data["event_types"] or [])
        except actions.EndpointInvalid as error:
            raise ValidationError(str(error)) from error


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(StoreScopedAdmin):
    # Where a store's data goes is the owner's call.
    managing_role = StoreRole.OWNER
    form = WebhookEndpointForm
    list_display = ["url", "store", "enabled", "consecutive_failures", "last_success_at"]
    list_filter = ["store", "enabled"]
    readonly_fields = [
        "disabled_reason",
        "consecutive_failures",
        "last_error",
        "last_failure_at",
        "last_success_at",
        "next_attempt_at",
    ]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            actions.do_update_endpoint(
                WebhookEndpoint.objects.get(pk=obj.pk),
                {name: form.cleaned_data[name] for name in form.changed_data if name != "store"},
            )
            return
        created = actions.do_create_endpoint(
            obj.store, obj.url, obj.description, obj.event_types or []
        )
        obj.pk, obj.secret = created.pk, created.secret
        messages.warning(
            request,
            f"Signing secret for {created.url}: {created.secret} — copy it now, it is not "
            "shown again.",
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(StoreScopedAdmin):
    store_path = "endpoint__store"
    # Sending a store's events out again is the owner's call, as its endpoints are.
    managing_role = StoreRole.OWNER
    actions = ["replay"]
    list_display = ["event", "endpoint", "status", "attempts", "last_status_code", "delivered_at"]
    list_filter = ["status"]
    list_select_related = ["event", "endpoint"]
    readonly_fields = [
        "endpoint",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "last_attempt_at",
        "delivered_at",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Send the selected events again (same webhook-id)")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        # The API's replay by ids, per endpoint; the queryset is already narrowed to the
        # stores this user owns (StoreScopedAdmin.response_action).
        chosen: dict[Any, list[str]] = defaultdict(list)
        endpoints = {}
        for delivery in queryset.select_related("endpoint", "event"):
            endpoints[delivery.endpoint_id] = delivery.endpoint
            chosen[delivery.endpoint_id].append(delivery.event.webhook_id)
        queued = sum(
            actions.do_replay(endpoints[endpoint_id], webhook_ids=webhook_ids)
            for endpoint_id, webhook_ids in chosen.items()
        )
        disabled = sorted(endpoint.url for endpoint in endpoints.values() if not endpoint.enabled)
        self.message_user(
            request,
            f"{queued} event(s) queued to be sent again, in order, with their original "
            "webhook-id."
            + (f" Disabled, so held until re-enabled: {', '.join(disabled)}." if disabled else ""),
            messages.SUCCESS,
        )
