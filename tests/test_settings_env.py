"""Start-up refuses bad configuration with a message naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_ENV": "production",
    "DJANGO_SECRET_KEY": "x7!kQ2#pL9@vR4$mN8^bT1&cW6*zY3(hJ5)dF0_gS-aE+uI=oP",
    "ALLOWED_HOSTS": "archangel.example.com",
    "ARCHANGEL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
}


def run_manage(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "DEBUG"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "archangel.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://h:notaport/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/abc"}, "REDIS_URL"),
        ({"DATABASE_URL": "postgres://h:5432"}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite://:memory:"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://h:5432/db", "DATABASE_PREPARE_THRESHOLD": "-1"}, "DATABASE_PREPARE_THRESHOLD"),
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV"),
        ({"ARCHANGEL_ENCRYPTION_KEYS": "short"}, "ARCHANGEL_ENCRYPTION_KEYS"),
        ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT"),
        ({"ARCHANGEL_THROTTLE_RATE": "lots"}, "ARCHANGEL_THROTTLE_RATE"),
        ({"ARCHANGEL_SCORE_WEIGHT_URGENCY": "-0.1"}, "ARCHANGEL_SCORE_WEIGHT_URGENCY"),
        ({"ARCHANGEL_SCORE_WEIGHT_FRESHNESS": "0.5"}, "ARCHANGEL_SCORE_WEIGHT_FRESHNESS=0.5"),
        ({"ARCHANGEL_PROVIDER_DOWN_POLICY": "panic"}, "ARCHANGEL_PROVIDER_DOWN_POLICY"),
        ({"PROVIDER_READ_TIMEOUT": "0"}, "PROVIDER_READ_TIMEOUT"),
        ({"PROVIDER_RATE_LIMIT_MARGIN_PERCENT": "100"}, "PROVIDER_RATE_LIMIT_MARGIN_PERCENT"),
        ({"ARCHANGEL_PLAN_EMAIL_HOUR": "24"}, "ARCHANGEL_PLAN_EMAIL_HOUR"),
        ({"DJANGO_ENV": "production"}, "DJANGO_SECRET_KEY"),
        ({**PRODUCTION, "DJANGO_SECRET_KEY": "too-short"}, "DJANGO_SECRET_KEY"),
        ({**PRODUCTION, "ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({**PRODUCTION, "ARCHANGEL_ENCRYPTION_KEYS": ""}, "ARCHANGEL_ENCRYPTION_KEYS"),
        ({**PRODUCTION, "DEBUG": "true"}, "DEBUG"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env, named):
    result = run_manage("check", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.strip().splitlines()[-1]


def test_production_settings_pass_the_deploy_checks_with_zero_warnings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout
