from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from campaigns.api import CampaignViewSet
from config import observability
from interventions.api.views import EventBatchView, EventView, InterventionViewSet
from notifications import views as notification_views
from notifications.api.views import DeviceViewSet
from outbound.api import WebhookEndpointViewSet
from realtime import views as realtime
from stores.api.views import ShopperViewSet, StoreViewSet
from templates.api.views import TemplateViewSet
from tracking import admin_export as tracking_admin_export
from tracking import views as tracking_views
from tracking.api import views as tracking_api

router = DefaultRouter()
# Services call /api/v1/interventions and /api/v1/interventions/ alike; neither redirects.
router.trailing_slash = "/?"
router.include_root_view = False
router.register("stores", StoreViewSet, basename="store")
router.register("shoppers", ShopperViewSet, basename="shopper")
router.register("interventions", InterventionViewSet, basename="intervention")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("devices", DeviceViewSet, basename="device")
router.register("templates", TemplateViewSet, basename="template")
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")

urlpatterns = [
    path("health", observability.liveness, name="health"),
    path("health/ready", observability.readiness, name="health-ready"),
    path("metrics", observability.metrics, name="metrics"),
    path(
        "admin/analytics/<str:report>.csv",
        admin.site.admin_view(tracking_admin_export.analytics_csv),
        name="admin-analytics-csv",
    ),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/events", EventView.as_view(), name="events"),
    path("api/v1/events/batch", EventBatchView.as_view(), name="events-batch"),
    # Provider webhooks and the one-click unsubscribe (docs/notifications.md).
    path(
        "webhooks/anymail/<str:esp>/tracking/",
        notification_views.anymail_tracking,
        name="anymail-tracking",
    ),
    path("webhooks/twilio/inbound/", notification_views.twilio_inbound, name="twilio-inbound"),
    path("webhooks/twilio/status/", notification_views.twilio_status, name="twilio-status"),
    path("unsubscribe/<str:token>", notification_views.unsubscribe, name="unsubscribe"),
    path("r/<str:token>", tracking_views.recover, name="recover"),
    path("o/<str:token>.gif", tracking_views.open_pixel, name="open-pixel"),
    path("api/v1/track/<uuid:intervention_id>", tracking_api.TrackView.as_view(), name="track"),
    path("api/v1/conversions", tracking_api.ConversionView.as_view(), name="conversions"),
    path(
        "api/v1/analytics/performance",
        tracking_api.PerformanceView.as_view(),
        name="analytics-performance",
    ),
    path(
        "api/v1/analytics/channels", tracking_api.ChannelsView.as_view(), name="analytics-channels"
    ),
    path(
        "api/v1/analytics/conversion",
        tracking_api.ConversionFunnelView.as_view(),
        name="analytics-conversion",
    ),
    path("api/v1/realtime/tokens", realtime.RealtimeTokenView.as_view(), name="realtime-tokens"),
    path(
        "api/v1/realtime/connections",
        realtime.RealtimeConnectionsView.as_view(),
        name="realtime-connections",
    ),
    path("demo/storefront/", realtime.demo_storefront, name="demo-storefront"),
    path("demo/storefront/abandon-cart", realtime.demo_abandon_cart, name="demo-abandon-cart"),
    path("api/v1/", include(router.urls)),
]

handler400 = "config.errors.bad_request"
handler403 = "config.errors.permission_denied"
handler404 = "config.errors.page_not_found"
handler500 = "config.errors.server_error"
