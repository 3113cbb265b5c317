"""docker-compose.yml is production-shaped (Docker is not on CI machines: read the file)."""

import re
from typing import Any

import pytest
import yaml

from tests.support.processes import ROOT


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def required(name: str) -> re.Pattern[str]:
    """Compose's `${NAME:?message}`: no default, refuses to start when unset or empty."""
    return re.compile(r"\$\{" + name + r":\?[^}]*\}")


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("build") == "."
    }


def test_every_app_process_requires_secret_key_and_allowed_hosts(compose):
    services = app_services(compose)

    assert {"migrate", "web", "ws", "worker", "delivery", "beat"} <= set(services)
    for service in services.values():
        environment = service["environment"]
        assert required("SECRET_KEY").fullmatch(environment["SECRET_KEY"])
        assert required("ALLOWED_HOSTS").fullmatch(environment["ALLOWED_HOSTS"])


def test_postgres_and_redis_are_not_published(compose):
    for name in ("postgres", "redis"):
        assert "ports" not in compose["services"][name], name


def test_redis_requires_a_password_that_every_url_carries(compose):
    redis = compose["services"]["redis"]

    assert required("REDIS_PASSWORD").fullmatch(redis["environment"]["REDIS_PASSWORD"])
    assert "--requirepass" in " ".join(redis["command"])
    assert "REDIS_PASSWORD" in " ".join(redis["healthcheck"]["test"])
    for service in app_services(compose).values():
        assert re.fullmatch(
            r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/0",
            service["environment"]["REDIS_URL"],
        )


def test_postgres_password_is_required_not_a_default(compose):
    postgres = compose["services"]["postgres"]

    assert required("POSTGRES_PASSWORD").fullmatch(postgres["environment"]["POSTGRES_PASSWORD"])
    for service in app_services(compose).values():
        assert required("POSTGRES_PASSWORD").search(service["environment"]["DATABASE_URL"])


def test_demo_data_is_seeded_only_in_the_demo_profile(compose):
    seeding = {
        name: service
        for name, service in compose["services"].items()
        if "seed_demo" in str(service.get("command", ""))
    }

    assert seeding, "the demo profile still seeds the demo store"
    for name, service in seeding.items():
        assert service.get("profiles") == ["demo"], name
