from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from notifications import actions
from notifications.api.serializers import DeviceRegistrationSerializer, DeviceSerializer
from notifications.models import Device
from stores.api.scoping import StoreScopedMixin


class DeviceViewSet(StoreScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Push device tokens. Registering a known token re-activates it (and moves it to
    this shopper); deleting deactivates it, so it is never sent to again."""

    serializer_class = DeviceSerializer
    queryset = Device.objects.select_related("shopper")
    lookup_field = "token"
    # FCM tokens contain ':' and '-'; anything but '/' is part of the token.
    lookup_value_regex = "[^/]+"

    @extend_schema(request=DeviceRegistrationSerializer, responses={201: DeviceSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        registration = DeviceRegistrationSerializer(data=request.data)
        registration.is_valid(raise_exception=True)
        device = actions.do_register_device(
            self.store,
            user_id=registration.validated_data["user_id"],
            token=registration.validated_data["token"],
            platform=registration.validated_data.get("platform", ""),
        )
        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        device = self.get_object()
        actions.do_unregister_device(self.store, device.token)
        return Response(status=status.HTTP_204_NO_CONTENT)
