"""Admin login lockout (django-axes): after ADMIN_LOGIN_FAILURE_LIMIT failures from one
address, logins from it are refused for ADMIN_LOGIN_COOLOFF_MINUTES, answered 429."""

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.errors import error_body


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        # A login without a request (the test client's login(), a shell) comes from no
        # address and cannot be guessed at over HTTP; axes would refuse it outright.
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    # Every attempt during the lockout restarts the cool-off (axes' default), so the whole
    # cool-off is what this caller has to wait from now.
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = JsonResponse(
        error_body(
            "locked_out",
            f"Too many failed logins from this address; try again in {seconds // 60} minutes.",
        ),
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response
