"""The public development SECRET_KEY never reaches production unnoticed."""

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tests.support.processes import ROOT

START_DJANGO = "import django; django.setup(); print('started')"
STRONG_KEY = "k3y-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"


def start_django(**env: str) -> subprocess.CompletedProcess[str]:
    # Only what a production process would have: no DEBUG, no opt-in inherited from pytest.
    base = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": "sqlite:///:memory:",
        "DEBUG": "0",
    }
    return subprocess.run(
        [sys.executable, "-c", START_DJANGO],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_it_refuses_to_start_without_secret_key_when_debug_is_off():
    result = start_django()

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr


def test_it_starts_with_a_secret_key_from_the_environment():
    result = start_django(SECRET_KEY=STRONG_KEY)

    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_debug_runs_keep_the_development_key():
    result = start_django(DEBUG="1")

    assert result.returncode == 0, result.stderr


def test_check_deploy_rejects_the_development_key(settings):
    settings.SECRET_KEY = settings.DEV_SECRET_KEY

    with pytest.raises(SystemCheckError, match=r"config\.E001"):
        call_command("check", deploy=True)


def test_check_deploy_rejects_a_short_key(settings):
    settings.SECRET_KEY = "change-me"

    with pytest.raises(SystemCheckError, match=r"config\.E002"):
        call_command("check", deploy=True)


def test_check_deploy_accepts_a_strong_key(settings, capsys):
    settings.SECRET_KEY = STRONG_KEY

    call_command("check", deploy=True)

    # Other deploy warnings (HSTS, SSL redirect) may remain; none is about the key.
    assert "config.E00" not in capsys.readouterr().err
