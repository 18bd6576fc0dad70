import io
import os

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.clients import token_client

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def pytest_sessionstart(session):
    if REQUIRE_SERVICES:
        required = (("PostgreSQL", settings.POSTGRES), ("Redis", settings.REDIS), ("Chromium", settings.BROWSER))
        missing = [name for name, ok in required if not ok]
        if missing:
            raise pytest.UsageError(f"REQUIRE_SERVICES=1 but {' and '.join(missing)} cannot be reached")


def pytest_collection_modifyitems(config, items):
    # Without the services these tests skip, visibly; with REQUIRE_SERVICES=1 the session
    # has already stopped in pytest_sessionstart, so nothing can skip silently in CI.
    available = {"postgres": settings.POSTGRES, "redis": settings.REDIS, "browser": settings.BROWSER}
    variables = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "browser": "CHROMIUM_PATH"}
    for item in items:
        for marker, ok in available.items():
            if item.get_closest_marker(marker) and not ok:
                variable = variables[marker]
                item.add_marker(pytest.mark.skip(reason=f"needs {marker}: {variable} is not reachable"))


@pytest.fixture(autouse=True)
def _no_provider_rows_of_an_earlier_test():
    """Routing's per-process copy of the provider rows (tasks_app.selectors, "Provider rows") must
    not carry providers of an earlier test's database into this one."""
    from tasks_app.selectors import provider_rows

    provider_rows.forget()


@pytest.fixture
def redis_commands(monkeypatch) -> list:
    """The name of every command sent to Redis from now on, by any client layer, connection
    handshakes included (recorded where redis-py writes to the socket)."""
    import redis

    commands = []
    real = redis.connection.AbstractConnection.send_command

    def record(self, *args, **kwargs):
        commands.append(args[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", record)
    return commands


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-123")


@pytest.fixture
def api(user):
    """An API client authenticated with a DRF token, as integrations call us."""
    from rest_framework.authtoken.models import Token

    return token_client(Token.objects.create(user=user).key)


def _client_with_role(username, role):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("create_api_token", username, "--role", role, stdout=out)
    return token_client(out.getvalue().strip())


@pytest.fixture
def operator_api(db):
    """An API client whose token belongs to an operator."""
    return _client_with_role("olga-operator", "operator")


@pytest.fixture
def reader_api(db):
    """An API client with a read-only token."""
    return _client_with_role("rita-reader", "read-only")


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def gateway(monkeypatch):
    """The outbox drain's provider door replaced by a scripted fake (tests/outbox/fakes.py)."""
    from tests.outbox.fakes import FakeGateway

    fake = FakeGateway()
    monkeypatch.setattr("outbox_app.drain._gateway", lambda: fake)
    return fake
