"""One error shape for every 4xx and 5xx: {"error": {"code", "message", "fields"}}."""

from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from prometheus_client import Counter
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = structlog.get_logger(__name__)

DATABASE_UNAVAILABLE = Counter(
    "engine_database_unavailable_total",
    "Requests that could not reach PostgreSQL (or found the pool empty): answered 503, or,"
    " for the open pixel, served without recording the open.",
)
# Long enough for a pool to reconnect after PostgreSQL returns (docs/operations.md).
DATABASE_RETRY_AFTER_SECONDS = 5


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def flatten_field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"cart.items.0.price": ["..."]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = prefix if key == "non_field_errors" and prefix else key
            path = f"{prefix}.{name}" if prefix and name != prefix else str(name)
            flat.update(flatten_field_errors(value, path))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            if item:
                flat.update(
                    flatten_field_errors(item, f"{prefix}.{index}" if prefix else str(index))
                )
        return flat
    return {prefix or "non_field_errors": [str(detail)]}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        # Actions validate with Django's ValidationError; the API answers it like its own.
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body(
                "too_large",
                f"The request body is larger than the limit of {limit} bytes "
                f"({limit / 1024 / 1024:.1f} MiB).",
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_field_errors(exc.detail)
        first = next(iter(fields.items()), ("", ["Invalid input."]))
        message = f"{first[0]}: {first[1][0]}" if first[0] else first[1][0]
        return Response(error_body("invalid", message, fields), status=status.HTTP_400_BAD_REQUEST)

    if isinstance(exc, exceptions.APIException):
        response = exception_handler(exc, context)
        assert response is not None
        code = exc.get_codes()
        code_name = code if isinstance(code, str) else exc.default_code
        if isinstance(exc, exceptions.ParseError):
            code_name = "malformed_request"
        response.data = error_body(str(code_name), str(exc.detail))
        return response

    if isinstance(exc, OperationalError | InterfaceError):
        # PostgreSQL down, restarting, or the pool empty for DATABASE_POOL_TIMEOUT: the
        # caller should retry (with an Idempotency-Key where the endpoint takes one).
        # Programming errors are DatabaseError's other subclasses: still 500s.
        DATABASE_UNAVAILABLE.inc()
        logger.warning(
            "database_unavailable", view=type(context.get("view")).__name__, error=str(exc)
        )
        response = Response(
            error_body("database_unavailable", "The database is unavailable; retry shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response

    logger.error("unhandled_api_error", view=type(context.get("view")).__name__, exc_info=exc)
    return Response(
        error_body("internal_error", "An unexpected error occurred; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def database_unavailable_response() -> HttpResponse:
    response = _json_error(
        503, "database_unavailable", "The database is unavailable; retry shortly."
    )
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """The admin, webhooks and links answer a PostgreSQL outage as the API does: 503 with
    ``Retry-After``, not a 500. A provider retries a webhook on a 5xx either way, but a
    500 pages whoever is on call for a bug, and an outage is not one; the API's own views
    answer first, through ``api_exception_handler``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        DATABASE_UNAVAILABLE.inc()
        logger.warning("database_unavailable", path=request.path, error=str(exception))
        return database_unavailable_response()


def _json_error(status_code: int, code: str, message: str) -> HttpResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _json_error(400, "bad_request", "The request could not be understood.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _json_error(403, "permission_denied", "You do not have permission to do this.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _json_error(404, "not_found", f"Nothing at {request.path}.")


def server_error(request: HttpRequest) -> HttpResponse:
    return _json_error(500, "internal_error", "An unexpected error occurred; it has been logged.")
