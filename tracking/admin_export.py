"""The admin's CSV download of the analytics figures (docs/analytics.md, "Export"): the
same tables as the API's ``?format=csv``, for a store the signed-in user may read.

Linked from the stores changelist; the dashboard links here too.
"""

from uuid import UUID

import structlog
from django.http import Http404, HttpRequest, HttpResponse

from stores.admin_scoping import may
from stores.models import Store, StoreRole
from tracking import analytics
from tracking.api.serializers import PerformanceQuerySerializer
from tracking.csv_export import render_csv, table_of

logger = structlog.get_logger(__name__)

REPORTS = {
    "performance": analytics.performance,
    "channels": analytics.channels,
    "campaigns": analytics.campaigns,
    "conversion": analytics.conversion_funnel,
}


def analytics_csv(request: HttpRequest, report: str) -> HttpResponse:
    """``?store=<id>`` plus the API's filters (since, until, campaign, channel, variant,
    interval). Another store's id is a 404, as a missing one."""
    if report not in REPORTS:
        raise Http404
    try:
        store_id = UUID(request.GET.get("store", ""))
    except ValueError:
        return HttpResponse("store: a store id is required.", status=400, content_type="text/plain")
    if not (request.user.is_superuser or may(request, StoreRole.VIEWER, store_id)):
        raise Http404
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise Http404
    query = PerformanceQuerySerializer(
        data={k: v for k, v in request.GET.dict().items() if k != "store"}
    )
    if not query.is_valid():
        field, errors = next(iter(query.errors.items()))
        return HttpResponse(f"{field}: {errors[0]}", status=400, content_type="text/plain")
    params = query.validated_data
    filters = analytics.filters_for(
        store,
        since=params.get("since"),
        until=params.get("until"),
        campaign_id=params.get("campaign"),
        channel=params.get("channel", ""),
        variant=params.get("variant", ""),
    )
    figures = (
        analytics.performance(store, filters, params["interval"])
        if report == "performance"
        else REPORTS[report](store, filters)
    )
    logger.info("analytics_csv_exported", store_id=str(store.pk), report=report)
    response = HttpResponse(render_csv(table_of(figures)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{report}-{store.pk}.csv"'
    return response
