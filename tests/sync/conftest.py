import pytest

from providers_app.selectors import webhook_cache_clear
from tests.factories import make_provider
from tests.sync.payloads import TRELLO_CALLBACK


@pytest.fixture(autouse=True)
def _fresh_webhook_cache():
    from django.core.cache import cache

    from providers_app import breakers, ratelimit
    from providers_app.adapters import clear_cache
    from providers_app.http import clear_sessions

    cache.clear()  # the drain wake-up flag lives in the cache
    webhook_cache_clear()
    clear_cache()
    clear_sessions()
    breakers.reset_memory()
    ratelimit.reset_memory()
    yield
    webhook_cache_clear()
    clear_cache()
    clear_sessions()


@pytest.fixture
def providers(db):
    """One account of each type, set up as the example payloads expect."""
    return {
        "clickup": make_provider("clickup", webhook_id="7fa3ec74-69a8-4530-a251-8a13730bd204"),
        "trello": make_provider("trello", callback_url=TRELLO_CALLBACK),
        "todoist": make_provider("todoist", user_id="2671355"),
    }
