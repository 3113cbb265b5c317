"""``?format=csv`` (or ``Accept: text/csv``) on the analytics endpoints: the same figures
as the JSON, one table (tracking.csv_export)."""

from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import BaseRenderer

from tracking.csv_export import render_csv, table_of


class AnalyticsCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        response = (renderer_context or {}).get("response")
        if response is not None and response.status_code >= 400:
            # An error keeps its shape, flattened: what and why, one line each.
            error = (data or {}).get("error", {})
            rows = [["error", error.get("message", "")]]
            rows += [
                [field, "; ".join(map(str, msgs))]
                for field, msgs in error.get("fields", {}).items()
            ]
            return render_csv(rows).encode()
        if response is not None:
            view = renderer_context.get("view") if renderer_context else None
            name = getattr(view, "csv_name", "analytics")
            response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return render_csv(table_of(data)).encode()
