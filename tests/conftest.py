from datetime import datetime

import pytest
import time_machine
from rest_framework.test import APIClient

from stores.actions import do_create_store
from stores.models import Store


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--wall-clock",
        default=None,
        help="Run in-process tests as if the wall clock read this ISO 8601 instant (the clock "
        "keeps ticking from there). make test runs the suite again at a quiet-hours time: CI "
        "runs at any hour, so no test may depend on when it runs.",
    )


@pytest.fixture(autouse=True)
def wall_clock(request: pytest.FixtureRequest):
    """Move this process's wall clock to ``--wall-clock``.

    Tests marked ``slow`` start other processes, which keep the real clock: a test whose
    outcome depends on the hour there must set the store up so it does not (no quiet hours).
    Tests marked ``real_clock`` compare this process's clock with Redis's (replay stream
    ids are Redis server time), so they keep the real clock too.
    """
    instant = request.config.getoption("--wall-clock")
    keeps_real_clock = request.node.get_closest_marker("slow") or request.node.get_closest_marker(
        "real_clock"
    )
    if not instant or keeps_real_clock:
        yield
        return
    with time_machine.travel(datetime.fromisoformat(instant), tick=True):
        yield


@pytest.fixture(autouse=True)
def verify_api_keys_every_time(settings):
    """In-process tests edit their store between requests with a plain ``save()``, which
    a real deployment does through the admin or the API (both announce it): keys are
    verified in PostgreSQL on each request unless a test turns the memory on itself
    (tests/stores/test_api_keys.py). Servers started by slow tests keep the default."""
    from stores.api_keys import VERIFIED

    settings.API_KEY_CACHE_SECONDS = 0
    yield
    VERIFIED.clear()


class StoreSession:
    """A store and an API client authenticated with its key."""

    def __init__(self, store: Store, api_key: str):
        self.store = store
        self.api_key = api_key
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")


@pytest.fixture
def shop(db) -> StoreSession:
    store, key = do_create_store(name="Acme Outdoor", timezone="Europe/Paris")
    return StoreSession(store, key)


@pytest.fixture
def other_shop(db) -> StoreSession:
    store, key = do_create_store(name="Rival Goods", timezone="America/New_York")
    return StoreSession(store, key)


@pytest.fixture
def provider(settings):
    """Email and SMS go through the real anymail (Postmark) and Twilio transports to a
    stub provider speaking their wire APIs over real HTTP; returns it for assertions."""
    from notifications.transports.base import get_transport
    from tests.support.http_provider import StubProvider

    stub = StubProvider().start()
    environment = stub.environment()
    settings.EMAIL_ESP = "postmark"
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "POSTMARK_API_URL": environment["POSTMARK_API_URL"],
        "POSTMARK_SERVER_TOKEN": environment["POSTMARK_SERVER_TOKEN"],
    }
    for name in ("TWILIO_API_BASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                 "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID"):  # fmt: skip
        setattr(settings, name, environment[name])
    # As before the real transports were used here: these tests are not about the
    # shared per-second limit (tests/notifications covers it).
    settings.NOTIFICATION_RATE_LIMITS = {**settings.NOTIFICATION_RATE_LIMITS, "email": 0, "sms": 0}
    settings.NOTIFICATION_TRANSPORTS = {
        **settings.NOTIFICATION_TRANSPORTS,
        "email": environment["EMAIL_TRANSPORT"],
        "sms": environment["SMS_TRANSPORT"],
    }
    get_transport.cache_clear()
    yield stub
    get_transport.cache_clear()
    stub.stop()


@pytest.fixture(autouse=True)
def tasks_run_inline(request):
    """Celery tasks run in-process unless a test starts a real worker (``real_worker`` marker)."""
    from config.celery import app

    if request.node.get_closest_marker("real_worker"):
        yield
        return
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings):
    """Close the psycopg pool before pytest-django renames the database to test_*.

    A pool opened by an early query keeps connecting to the configured database, so
    without this the suite (and its flushes) would run against the real one, and
    servers started by tests on the test database would find no tables.
    """
    from django.db import connections

    for connection in connections.all():
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


@pytest.fixture(scope="session", autouse=True)
def close_pool_before_dropping_the_test_database(django_db_setup, django_db_blocker):
    """PostgreSQL refuses to drop a database with sessions on it. The pool keeps idle
    connections open, and threads that served ASGI requests or consumers in-process may
    still hold one; end them all before pytest-django drops the test database."""
    yield
    import psycopg
    from django.db import connection, connections

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
        for each in connections.all():
            each.close()
            close_pool = getattr(each, "close_pool", None)
            if close_pool is not None:
                close_pool()
        if connection.vendor != "postgresql":
            return
        params = connection.get_connection_params()
        params.pop("pool", None)
        params.update(dbname="postgres", autocommit=True)
        with psycopg.connect(**params) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
