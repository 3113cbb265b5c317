from django.db.models import QuerySet
from rest_framework import mixins, viewsets

from stores.api.scoping import StoreScopedMixin
from stores.api.serializers import ShopperSerializer, StoreSerializer
from stores.auth import store_of
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


class ShopperViewSet(StoreScopedMixin, viewsets.ModelViewSet):
    """Shoppers: contact details, channel preferences and opt-outs."""

    serializer_class = ShopperSerializer
    queryset = Shopper.objects.all()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
