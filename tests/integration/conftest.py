"""Shared fixtures of the integration tests."""

import pytest

from providers_app.sandbox import SandboxServer


@pytest.fixture
def sandbox(settings):
    """The provider sandbox on a free loopback port, with the plain-http and private-address
    guards opened for it (as the demo's settings do)."""
    settings.ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS = True
    settings.ARCHANGEL_PLAIN_HTTP_HOSTS = ["127.0.0.1"]
    server = SandboxServer().start()
    yield server
    server.stop()
