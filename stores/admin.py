import json
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import models
from django.db.models.fields.related import RelatedField
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from rest_framework_api_key.admin import APIKeyModelAdmin

from interventions.actions import do_erase_shopper
from stores import audit
from stores.admin_scoping import StoreScopedAdmin, StoreScopedTabularInline, store_ids_granting
from stores.api_keys import announce_access_changed
from stores.models import AuditEntry, Shopper, Store, StoreApiKey, StoreMembership, StoreRole

User = get_user_model()


class MembershipOfStoreInline(StoreScopedTabularInline):
    model = StoreMembership
    managing_role = StoreRole.OWNER
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0

    def get_field_queryset(
        self, db: str | None, db_field: "RelatedField[Any, Any]", request: HttpRequest
    ) -> "models.QuerySet[Any] | None":
        # Listing every account would show other tenants' staff to an owner: owners pick
        # among people already in one of their stores, and a superuser gives a new user
        # their first membership.
        queryset = super().get_field_queryset(db, db_field, request)
        if db_field.name != "user" or request.user.is_superuser:
            return queryset
        owned = store_ids_granting(request, StoreRole.OWNER)
        return User._default_manager.filter(store_memberships__store__in=owned).distinct()


class MembershipOfUserInline(StoreScopedTabularInline):
    model = StoreMembership
    managing_role = StoreRole.OWNER
    fields = ["store", "role", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[StoreMembership]:
        # A user is no store's object, so the inline cannot take the role from its parent:
        # show only the memberships this user may edit, in the stores they own.
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return self.scope(queryset, store_ids_granting(request, StoreRole.OWNER))


class AuditsMembershipEdits(admin.ModelAdmin):
    """Who gave whom which role in a store is the first question after an incident, so
    the membership rows edited inline are audited like the page's own object."""

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not StoreMembership:
            super().save_formset(request, form, formset, change)
            return
        actor = request.user.get_username()
        # The forms have already written their values into the instances: the database
        # still holds what was there before.
        before = {
            membership.pk: audit.snapshot(membership)
            for membership in StoreMembership.objects.filter(
                pk__in=[f.instance.pk for f in formset.initial_forms if f.instance.pk]
            )
        }
        for deleted in formset.deleted_forms:
            if deleted.instance.pk in before:
                audit.do_record_audit(
                    deleted.instance, actor, "deleted", audit.diff(before[deleted.instance.pk], {})
                )
        super().save_formset(request, form, formset, change)
        for membership in formset.new_objects:
            audit.do_record_added(membership, actor)
        for membership, _fields in formset.changed_objects:
            audit.do_record_changed(membership, actor, before.get(membership.pk, {}))


class AnnouncesAccessChanges(admin.ModelAdmin):
    """A key revoked or a store edited here takes effect at once in every web process,
    which otherwise remember verified keys and their store for a few seconds
    (stores/api_keys.py)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        announce_access_changed()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        announce_access_changed()

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)
        announce_access_changed()


@admin.register(Store)
class StoreAdmin(AuditsMembershipEdits, AnnouncesAccessChanges, StoreScopedAdmin):
    store_path = "pk"
    managing_role = StoreRole.OWNER
    audited = frozenset({"added", "changed", "deleted"})
    list_display = [
        "name",
        "id",
        "timezone",
        "probability_threshold",
        "frequency_cap_per_hour",
        "analytics_csv",
    ]
    search_fields = ["name", "id"]
    inlines = [MembershipOfStoreInline]

    @admin.display(description="Analytics (last 30 days)")
    def analytics_csv(self, store: Store) -> str:
        links = [
            (
                report,
                f"{reverse('admin-analytics-csv', args=[report])}?{urlencode({'store': str(store.pk)})}",
            )
            for report in ("performance", "channels", "campaigns", "conversion")
        ]
        return format_html_join(
            " · ", '<a href="{}">{} CSV</a>', ((url, name) for name, url in links)
        )

    # Creating or deleting a tenant is an operator's job, not a store owner's.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)


# type: ignore: APIKeyModelAdmin types save_model's obj as AbstractAPIKey, ours as Any.
@admin.register(StoreApiKey)
class StoreApiKeyAdmin(AnnouncesAccessChanges, StoreScopedAdmin, APIKeyModelAdmin):  # type: ignore[misc]
    managing_role = StoreRole.OWNER
    audited = frozenset({"added", "changed", "deleted"})
    list_display = (*APIKeyModelAdmin.list_display, "store")  # type: ignore[assignment]
    list_filter = (*APIKeyModelAdmin.list_filter, "store")  # type: ignore[assignment]


@admin.register(Shopper)
class ShopperAdmin(StoreScopedAdmin):
    list_display = ["external_id", "store", "email", "phone", "segment", "timezone"]
    list_filter = ["store", "segment"]
    search_fields = ["external_id", "email", "phone"]

    # Deleting a shopper erases them, as the API does (docs/operations.md, "Data
    # protection"): a plain delete would cascade to their interventions, changing every
    # count, and leave their details in cart-event payloads and rendered messages.
    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        return super().get_queryset(request).filter(erased_at__isnull=True)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        do_erase_shopper(obj, erased_by=f"admin: {request.user.get_username()}")

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        for shopper in queryset:
            do_erase_shopper(shopper, erased_by=f"admin: {request.user.get_username()}")


@admin.register(AuditEntry)
class AuditEntryAdmin(StoreScopedAdmin):
    """Read-only for everyone, superusers included: the log is evidence. Members see their
    stores' entries; entries of no store (none today) only superusers see."""

    list_display = ["at", "store", "actor", "action", "object_type", "object_repr"]
    list_filter = ["store", "action", "object_type"]
    search_fields = ["actor", "object_id", "object_repr"]
    date_hierarchy = "at"
    readonly_fields = [
        "at", "store", "actor", "action", "object_type", "object_id", "object_repr",
        "changes_table",
    ]  # fmt: skip
    exclude = ["changes"]

    @admin.display(description="Changes")
    def changes_table(self, entry: AuditEntry) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (field, json.dumps(values[0]), json.dumps(values[1]))
                for field, values in sorted(entry.changes.items())
            ),
        )
        return format_html(
            "<table><tr><th>Field</th><th>Before</th><th>After</th></tr>{}</table>", rows
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(AuditsMembershipEdits, DjangoUserAdmin):
    inlines = [*DjangoUserAdmin.inlines, MembershipOfUserInline]
