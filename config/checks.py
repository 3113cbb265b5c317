"""Deployment checks for the settings this project owns (`manage.py check --deploy`)."""

import os
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured

from stores.api.throttling import parse_rate

# Django's own security.W009 asks for the same length; ours is an error, not a warning,
# because the key signs WebSocket tokens and shopper links, not only sessions.
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5


@register(Tags.security, deploy=True)
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    key = settings.SECRET_KEY
    if key == settings.DEV_SECRET_KEY:
        return [
            Error(
                "SECRET_KEY is the public development key: anyone can forge WebSocket "
                "tokens, unsubscribe and recovery links.",
                hint="Set SECRET_KEY to a long random value in the environment.",
                id="config.E001",
            )
        ]
    if len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS:
        return [
            Error(
                f"SECRET_KEY is too weak: use at least {MIN_SECRET_KEY_LENGTH} characters "
                f"with at least {MIN_SECRET_KEY_UNIQUE_CHARACTERS} different ones.",
                hint="python -c 'import secrets; print(secrets.token_urlsafe(50))'",
                id="config.E002",
            )
        ]
    return []


@register()
def check_api_rates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # A malformed rate would otherwise fail every API request with a 500.
    problems: list[CheckMessage] = []
    for scope, rate in settings.API_THROTTLE_RATES.items():
        try:
            parse_rate(rate)
        except ImproperlyConfigured as exc:
            problems.append(Error(f"API_THROTTLE_RATES[{scope!r}]: {exc}", id="config.E003"))
    return problems


@register()
def check_deprecated_cost_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    # Still read (where CHANNEL_COST_* is unset), so nothing breaks; but two names for one
    # price is how a budget and the analytics end up disagreeing.
    return [
        checks.Warning(
            f"{old} is deprecated: set CHANNEL_COST_{channel.upper()} instead "
            "(one price per message for analytics and budgets).",
            id="config.W001",
        )
        for channel, old in settings.DEPRECATED_CHANNEL_COST_NAMES.items()
        if old in os.environ
    ]
