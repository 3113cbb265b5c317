"""What `make test` and `make run` rely on: the service probe and the embedded mode."""

import json
import subprocess
import sys

import pytest
import requests

from tests.support.processes import ROOT, free_port, running, wait_for

pytestmark = pytest.mark.slow


def test_make_test_names_the_missing_service_and_how_to_start_it():
    closed = free_port()
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": f"redis://127.0.0.1:{closed}/0"}

    result = subprocess.run(
        [sys.executable, "-m", "config.services", "require"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert result.returncode == 1
    assert "Redis" in result.stderr
    assert "redis-server" in result.stderr
    assert "PostgreSQL" not in result.stderr


def test_embedded_mode_serves_the_product_on_sqlite_without_redis(tmp_path):
    port = free_port()
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "ENGINE_EMBEDDED": "1",
        "ALLOW_DEV_SECRET_KEY": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'engine.sqlite3'}",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "DEMO_STOREFRONT_ENABLED": "1",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    seeded = subprocess.run(
        [*manage, "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    demo = json.loads(seeded.stdout.strip().splitlines()[-1])
    daphne = [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "config.asgi:application",
    ]

    with running(daphne, env, tmp_path / "web.log"):
        base = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return requests.get(f"{base}/health/ready", timeout=2)
            except requests.RequestException:  # refused, or too slow while starting
                return None

        assert wait_for(ready, timeout=30).json()["checks"]["database"] == "ok"
        auth = {"Authorization": f"Api-Key {demo['api_key']}"}
        # The demo store has quiet hours and this server keeps the real clock: without
        # this the email would be scheduled for the morning whenever CI runs at night.
        requests.patch(
            f"{base}/api/v1/stores/{demo['store_id']}",
            json={"quiet_hours_start": None, "quiet_hours_end": None},
            headers=auth,
            timeout=10,
        ).raise_for_status()
        created = requests.post(
            f"{base}/api/v1/interventions",
            json={"user_id": "sam", "channel": "email", "user": {"email": "sam@example.test"}},
            headers=auth,
            timeout=10,
        )
        assert created.status_code == 201
        detail = requests.get(
            f"{base}/api/v1/interventions/{created.json()['id']}",
            headers=auth,
            timeout=10,
        ).json()
        dashboard = logged_in_admin(base, demo["marketer_user"], demo["marketer_password"])

    # Tasks run in-process: the (logged) email went out within the request.
    assert detail["status"] == "sent"
    # The admin's dashboard works on SQLite too, over the seeded demo history.
    assert dashboard.status_code == 200
    assert '<script id="dashboard-figures" type="application/json">' in dashboard.text
    assert "Cart reminder email" in dashboard.text


def logged_in_admin(base: str, username: str, password: str) -> requests.Response:
    session = requests.Session()
    session.get(f"{base}/admin/login/", timeout=10).raise_for_status()
    return session.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": f"{base}/admin/login/"},
        timeout=30,
    )
