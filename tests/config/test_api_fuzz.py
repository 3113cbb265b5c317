"""schemathesis against the generated OpenAPI schema, in process: every operation of
/api/v1, with generated parameters and bodies, valid and invalid for the schema, NUL
characters included, some string values swapped for NUL-laden or huge ones, and path
ids pointing at real rows of the caller's store, must never answer a 5xx.

Bounded: EXAMPLES_PER_OPERATION per operation, derandomized (the same requests every
run), one database for the whole run; about a minute (docs/operations.md#bad-input).
"""

from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode

from campaigns.models import Campaign
from interventions.models import Intervention
from notifications.models import Device
from stores.models import Shopper
from templates import actions as template_actions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

EXAMPLES_PER_OPERATION = 12
# Below MAX_REQUEST_BODY_BYTES (a bigger body is a 413 before any parsing): these reach
# the parser, the serializers, the templates and the database.
HUGE = "x" * 200_000
NUL_LADEN = "a\x00b" * 10

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())


def swap_strings(value: Any, replacement: str) -> Any:
    """Every string leaf of a JSON value replaced (keys kept, so the shape still parses)."""
    if isinstance(value, str):
        return replacement
    if isinstance(value, dict):
        return {key: swap_strings(item, replacement) for key, item in value.items()}
    if isinstance(value, list):
        return [swap_strings(item, replacement) for item in value]
    return value


def real_rows(shop) -> dict[str, dict[str, Any]]:
    """Path parameters naming real rows of the caller's store, per path prefix."""
    shop.client.post(
        "/api/v1/campaigns",
        {"name": "Comeback", "trigger": "cart_abandoned", "channel": "sms"},
        format="json",
    )
    template = template_actions.check_create_template(
        shop.store, key="hi", name="Hi", content={"en": {"sms": {"body": "Hi"}}}, publish=True
    )
    sam = {"email": "sam@example.test", "push_tokens": ["token-1"]}
    shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "cart_id": "c-1", "channel": "email", "user": sam},
        format="json",
    )
    intervention = Intervention.objects.get(store=shop.store)
    return {
        "/api/v1/campaigns/": {"id": Campaign.objects.get(store=shop.store).pk},
        "/api/v1/templates/": {"id": template.pk},
        "/api/v1/shoppers/": {"id": Shopper.objects.get(store=shop.store).pk},
        "/api/v1/interventions/": {"id": intervention.pk},
        "/api/v1/track/": {"intervention_id": intervention.pk},
        "/api/v1/stores/": {"id": shop.store.pk},
        "/api/v1/devices/": {"token": Device.objects.get(store=shop.store).token},
    }


def cases_for(operation: Any, rows: dict[str, dict[str, Any]]) -> st.SearchStrategy[Any]:
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    for prefix, parameters in rows.items():
        if operation.path.startswith(prefix) and "{" in operation.path:
            strategies.append(operation.as_strategy(path_parameters=parameters))
    return st.one_of(strategies)


def test_no_generated_request_is_a_server_error(shop, settings):
    settings.API_THROTTLE_RATES = {"api_key": "0", "unauthenticated": "0"}
    rows = real_rows(shop)
    server_errors = []
    answered: dict[int, int] = {}

    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(
            case=cases_for(operation, rows), swap=st.sampled_from(["", NUL_LADEN, HUGE])
        )
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
        def call(case: Any, swap: str) -> None:
            if swap:
                case.body = swap_strings(case.body, swap)
                case.query = swap_strings(case.query, swap)
            case.headers = {**(case.headers or {}), "Authorization": f"Api-Key {shop.api_key}"}
            response = case.call()
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                server_errors.append((case.as_curl_command(), response.text[:500]))

        call()

    print("answers by status:", dict(sorted(answered.items())))
    assert server_errors == []
    assert sum(count for status, count in answered.items() if status < 300) > 50
