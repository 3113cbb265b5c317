"""One price per message and channel (CHANNEL_COST_*), read by the analytics' cost per
conversion and the campaign budgets' cost caps alike; the budgets' former names still work
where the new one is unset, with a warning."""

import os
import subprocess
import sys

from tests.support.processes import ROOT

PRINT_COSTS = (
    "import django; django.setup(); from django.conf import settings; "
    "from django.core.management import call_command; "
    "print(settings.CHANNEL_COSTS['email'], settings.CHANNEL_COSTS['sms']); call_command('check')"
)


def start_django(**env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": "sqlite:///:memory:",
        "DEBUG": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_COSTS],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_former_budget_price_is_read_where_the_channel_price_is_unset_with_a_warning():
    result = start_django(
        CAMPAIGN_COST_SMS="0.07", CAMPAIGN_COST_EMAIL="0.5", CHANNEL_COST_EMAIL="0.002"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["0.002", "0.07"]
    assert "CAMPAIGN_COST_SMS is deprecated: set CHANNEL_COST_SMS instead" in result.stderr
    assert "config.W001" in result.stderr


def test_no_warning_with_the_channel_prices_only():
    result = start_django(CHANNEL_COST_SMS="0.07")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["0.001", "0.07"]
    assert "W001" not in result.stderr
