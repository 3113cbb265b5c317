import pytest

from interventions.models import Intervention, Status
from tests.support.http_provider import REJECTED

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def marketer(client, django_user_model):
    user = django_user_model.objects.create_superuser("marketer", "m@example.test", "pw")
    client.force_login(user)
    return client


def test_admin_shows_why_and_retries_failed(marketer, shop, provider):
    # Quiet hours would hold the retried email until morning: this test is about the retry.
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    provider.scripted = [REJECTED]
    failed = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "channel": "email", "user": {"email": "s@example.test"}},
        format="json",
    ).json()

    page = marketer.get(f"/admin/interventions/intervention/{failed['id']}/change/")
    assert page.status_code == 200
    assert "explicit trigger" in page.content.decode()

    marketer.post(
        "/admin/interventions/intervention/",
        {"action": "retry_failed", "_selected_action": [failed["id"]]},
    )

    assert Intervention.objects.get(pk=failed["id"]).status == Status.SENT
