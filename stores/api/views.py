from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from interventions.actions import do_erase_shopper, shopper_export
from notifications.actions import do_set_opted_out_channels
from stores import audit
from stores.api.scoping import StoreScopedMixin
from stores.api.serializers import ShopperSerializer, StoreSerializer
from stores.api_keys import announce_access_changed
from stores.auth import actor_of, store_of
from stores.models import Shopper, Store


class StoreViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """The authenticated store's own settings (a key sees exactly one store)."""

    serializer_class = StoreSerializer
    queryset = Store.objects.all()
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Store]:
        return self.queryset.filter(pk=store_of(self.request).pk)

    @transaction.atomic
    def perform_update(self, serializer: serializers.BaseSerializer[Store]) -> None:
        assert serializer.instance is not None
        before = audit.snapshot(Store.objects.select_for_update().get(pk=serializer.instance.pk))
        store = serializer.save()
        audit.do_record_changed(store, actor_of(self.request), before)
        # The processes remember each key's store for a few seconds (stores/api_keys.py).
        announce_access_changed()


class ShopperViewSet(StoreScopedMixin, viewsets.ModelViewSet):
    """Shoppers: contact details, channel preferences and opt-outs; DELETE erases one
    (docs/operations.md#data-protection) and /export returns all that is held about them."""

    serializer_class = ShopperSerializer
    # An erased shopper's row stays for the store's counts, but is nobody: a 404.
    queryset = Shopper.objects.filter(erased_at=None)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    # Opt-outs change only through notifications' actions (counted and logged like a
    # STOP or an unsubscribe); the rest of the profile is saved as sent.
    def perform_create(self, serializer: serializers.BaseSerializer[Shopper]) -> None:
        opted_out = serializer.validated_data.pop("opted_out_channels", None)
        shopper = serializer.save(store=self.store)
        if opted_out is not None:
            do_set_opted_out_channels(shopper, opted_out, reason="api")

    def perform_update(self, serializer: serializers.BaseSerializer[Shopper]) -> None:
        opted_out = serializer.validated_data.pop("opted_out_channels", None)
        shopper = serializer.save()
        if opted_out is not None:
            do_set_opted_out_channels(shopper, opted_out, reason="api")

    def perform_destroy(self, instance: Shopper) -> None:
        api_key = self.request.auth
        do_erase_shopper(instance, erased_by=f"api_key:{api_key.prefix} ({api_key.name})")

    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: Any = None) -> Response:
        return Response(shopper_export(self.get_object()))
