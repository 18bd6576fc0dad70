import pytest


@pytest.fixture
def no_coalescing(settings):
    """For tests of the per-event path: every event of a task is sent on its own, in order."""
    settings.OUTBOX_COALESCING = False
