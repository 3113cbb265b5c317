"""Store scoping, written once: every store-owned viewset inherits it."""

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from stores.auth import store_of
from stores.models import Store


class StoreScopedMixin:
    """Rows of the authenticated store only; another store's id is a 404, never the row.

    New rows are created in the authenticated store whatever the payload says.
    """

    request: Any
    store_field = "store"

    @property
    def store(self) -> Store:
        return store_of(self.request)

    def get_queryset(self) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset()  # type: ignore[misc]
        return queryset.filter(**{self.store_field: self.store})

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        serializer.save(**{self.store_field: self.store})
