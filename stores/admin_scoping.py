"""The admin's tenant boundary: a staff user reaches a store's rows only through a
``StoreMembership``, and its role says what they may do with them. Superusers are global.

Every admin (and inline) of a model with a path to ``Store`` subclasses one of the classes
below and declares ``store_path``, the lookup from its model to the store ("pk" for
``Store`` itself), and ``managing_role``, the weakest role that may add, change, delete
and run actions. Reading needs any membership in the object's store.

For non-superusers the membership *is* the permission: Django's per-model permissions are
not consulted, so a marketer needs ``is_staff`` and a membership, no groups. Everything the
admin shows or accepts goes through the scoped querysets here: changelists, change, delete
and history pages (another store's object is a 404, the same as a missing one),
autocomplete, list filters, foreign-key choices and actions.

``tests/stores/test_admin_isolation.py`` walks ``admin.site._registry`` and fails for any
admin of a store-owned model that does not use these classes. See docs/operations.md,
"Admin access".
"""

from collections import deque
from typing import Any, ClassVar
from uuid import UUID

from django.contrib import admin
from django.contrib.admin.options import BaseModelAdmin
from django.contrib.admin.utils import get_fields_from_path
from django.core import checks
from django.db import models
from django.db.models.fields.related import RelatedField
from django.http import Http404, HttpRequest

from stores import audit
from stores.models import Store, StoreMembership, StoreRole

# Deep enough for TemplateVersion -> template -> store and DeliveryAttempt -> intervention ->
# store; a longer path would be a model that should carry its own store.
MAX_STORE_PATH_LENGTH = 3


def store_path_to(model: type[models.Model]) -> str | None:
    """The shortest lookup from ``model`` to its store over forward foreign keys: "pk" for
    ``Store``, "store", "template__store"…, or None when the model does not belong to one."""
    if issubclass(model, Store):
        return "pk"
    frontier: deque[tuple[type[models.Model], list[str]]] = deque([(model, [])])
    while frontier:
        current, hops = frontier.popleft()
        if len(hops) == MAX_STORE_PATH_LENGTH:
            continue
        for field in current._meta.concrete_fields:
            if not (field.many_to_one or field.one_to_one) or field.related_model is None:
                continue
            related = field.related_model
            assert isinstance(related, type)
            if issubclass(related, Store):
                return "__".join([*hops, field.name])
            frontier.append((related, [*hops, field.name]))
    return None


def store_id_of(instance: models.Model, store_path: str) -> Any:
    if store_path == "pk":
        return instance.pk
    *hops, last = store_path.split("__")
    owner: Any = instance
    for hop in hops:
        owner = getattr(owner, hop)
        if owner is None:
            return None
    return getattr(owner, owner._meta.get_field(last).attname)


def store_roles(request: HttpRequest) -> dict[UUID, StoreRole]:
    """The signed-in user's role per store, read once per request: the admin asks for
    permissions many times while rendering one page."""
    cached: dict[UUID, StoreRole] | None = getattr(request, "_admin_store_roles", None)
    if cached is None:
        memberships = StoreMembership.objects.filter(user__pk=request.user.pk or 0)
        cached = {
            store_id: StoreRole(role)
            for store_id, role in memberships.values_list("store_id", "role")
        }
        setattr(request, "_admin_store_roles", cached)  # noqa: B010 (HttpRequest declares no such attribute)
    return cached


def audit_before(request: HttpRequest) -> dict[Any, dict[str, Any]]:
    """Snapshots of the objects this request opened, by primary key, for the audit diff."""
    if not hasattr(request, "_audit_before"):
        setattr(request, "_audit_before", {})  # noqa: B010 (HttpRequest declares no such attribute)
    before: dict[Any, dict[str, Any]] = getattr(request, "_audit_before")  # noqa: B009
    return before


def store_ids_granting(request: HttpRequest, needed: StoreRole) -> list[UUID]:
    return [store_id for store_id, role in store_roles(request).items() if role.grants(needed)]


def may(request: HttpRequest, needed: StoreRole, store_id: Any = None) -> bool:
    """Whether the user holds ``needed`` in that store, or in some store when none is given
    (a changelist or an add page, before any object is chosen)."""
    roles = store_roles(request)
    if store_id is None:
        return any(role.grants(needed) for role in roles.values())
    role = roles.get(store_id)
    return role is not None and role.grants(needed)


class StoreScoping(BaseModelAdmin):
    """What admins and inlines share: their rows and their choices stop at the user's stores."""

    store_path: ClassVar[str] = "store"
    managing_role: ClassVar[StoreRole] = StoreRole.MARKETER

    def scope(self, queryset: models.QuerySet[Any], store_ids: list[UUID]) -> models.QuerySet[Any]:
        return queryset.filter(**{f"{self.store_path}__in": store_ids})

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return self.scope(queryset, list(store_roles(request)))

    def get_field_queryset(
        self, db: str | None, db_field: "RelatedField[Any, Any]", request: HttpRequest
    ) -> "models.QuerySet[Any] | None":
        # Foreign-key and many-to-many choices: only objects of stores the user manages,
        # so a saved form can neither show nor link another store's rows.
        queryset = super().get_field_queryset(db, db_field, request)
        related = db_field.related_model
        if request.user.is_superuser or not isinstance(related, type):
            return queryset
        path = store_path_to(related)
        if path is None:
            return queryset
        if queryset is None:
            queryset = related._default_manager.using(db).all()
        managed = store_ids_granting(request, self.managing_role)
        return queryset.filter(**{f"{path}__in": managed})

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        try:
            reaches_store = get_fields_from_path(self.model, self.store_path)[-1]
        except Exception:  # any bad lookup is the same configuration error
            reaches_store = None
        if self.store_path != "pk" and getattr(reaches_store, "related_model", None) is not Store:
            errors.append(
                checks.Error(
                    f"store_path {self.store_path!r} does not lead from "
                    f"{self.model._meta.label} to stores.Store.",
                    obj=type(self),
                    id="stores.E001",
                )
            )
        return errors


class StoreScopedAdmin(StoreScoping, admin.ModelAdmin):
    # Which of this admin's saves and deletions go to the audit log (stores/audit.py):
    # "added", "changed", "deleted". An admin whose saves go through actions that record
    # their own entries (campaigns) lists only what bypasses them.
    audited: ClassVar[frozenset[str]] = frozenset()

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        # Django answers a missing object with a redirect and a "doesn't exist" message;
        # another store's object must not be told apart from a missing one, and a 404 is
        # the plain answer for both.
        found = super().get_object(request, object_id, from_field)
        if found is None and not request.user.is_superuser:
            raise Http404(f"No {self.opts.verbose_name} with this id.")
        if found is not None and "changed" in self.audited:
            # Before the form writes its values into the instance.
            audit_before(request)[found.pk] = audit.snapshot(found)
        return found

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if "added" in self.audited:
            audit.do_record_added(obj, request.user.get_username())
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if "changed" in self.audited:
            # Read back: save_model may go through actions that change more than the form.
            saved = type(obj)._default_manager.filter(pk=obj.pk).first() or obj
            before = audit_before(request).get(obj.pk, {})
            audit.do_record_changed(saved, request.user.get_username(), before)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        # Django calls this before it deletes, while the rows can still be read.
        if "deleted" in self.audited:
            for obj in queryset:
                audit.do_record_deleted(obj, request.user.get_username())
        return super().log_deletions(request, queryset)

    def has_module_permission(self, request: HttpRequest) -> bool:
        if request.user.is_superuser:
            return super().has_module_permission(request)
        return bool(store_roles(request))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return may(request, StoreRole.VIEWER, self._store_id(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        if request.user.is_superuser:
            return super().has_add_permission(request)
        return may(request, self.managing_role)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_change_permission(request, obj)
        return may(request, self.managing_role, self._store_id(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_delete_permission(request, obj)
        return may(request, self.managing_role, self._store_id(obj))

    def _store_id(self, obj: Any) -> Any:
        return None if obj is None else store_id_of(obj, self.store_path)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Every action here writes; a user who manages no store gets none offered.
        if not request.user.is_superuser and not may(request, self.managing_role):
            return {}
        return super().get_actions(request)

    def response_action(
        self, request: HttpRequest, queryset: models.QuerySet[Any], *args: Any, **kwargs: Any
    ) -> Any:
        # The selected ids come from the POST and are filtered against this queryset, so a
        # crafted POST naming another store's ids selects nothing. Narrowing to the stores
        # the user manages also keeps a viewer's rows out of a marketer's bulk action.
        if not request.user.is_superuser:
            queryset = self.scope(queryset, store_ids_granting(request, self.managing_role))
        return super().response_action(request, queryset, *args, **kwargs)

    def get_list_filter(self, request: HttpRequest) -> Any:
        # A related filter lists every row of the related table (every store's name, say);
        # RelatedOnlyFieldListFilter lists only values present in the scoped changelist.
        filters = super().get_list_filter(request)
        if request.user.is_superuser:
            return filters
        return [
            (entry, admin.RelatedOnlyFieldListFilter)
            if isinstance(entry, str) and get_fields_from_path(self.model, entry)[-1].is_relation
            else entry
            for entry in filters
        ]


class StoreScopedTabularInline(StoreScoping, admin.TabularInline):
    """Permissions follow the role in the parent's store; a parent without one (a user)
    asks for the role in any store."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_view_permission(request, obj)
        return may(request, StoreRole.VIEWER, self._parent_store_id(obj))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_add_permission(request, obj)
        return may(request, self.managing_role, self._parent_store_id(obj))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_change_permission(request, obj)
        return may(request, self.managing_role, self._parent_store_id(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if request.user.is_superuser:
            return super().has_delete_permission(request, obj)
        return may(request, self.managing_role, self._parent_store_id(obj))

    def _parent_store_id(self, parent: Any) -> Any:
        parent_path = None if parent is None else store_path_to(type(parent))
        return None if parent_path is None else store_id_of(parent, parent_path)


def readable_stores(request: HttpRequest) -> models.QuerySet[Store]:
    """The stores whose figures the user may read (the admin dashboard): every store for a
    superuser, else those of their memberships, whatever the role."""
    if request.user.is_superuser:
        return Store.objects.all()
    return Store.objects.filter(pk__in=list(store_roles(request)))
