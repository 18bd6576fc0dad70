"""Settings of the Celery workers the integration tests start: the real settings, with the
outbox's provider door replaced by tests/integration/fake_provider.py."""

from archangel.settings import *  # noqa: F403

OUTBOX_GATEWAY = "tests.integration.fake_provider"
