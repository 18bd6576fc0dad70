"""Circuit breakers: shared through Redis, tripped only by failures that say the provider is unwell."""

import pytest

from providers_app import breakers
from providers_app.adapters.base import NotFound, RateLimited, TransientError, ValidationFailed
from providers_app.health import unavailable_provider_ids
from providers_app.models import Provider
from tests.factories import make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def fail_max(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_FAIL_MAX": 3, "BREAKER_RESET_SECONDS": 30}


def _fail(provider, n, error=None):
    for _ in range(n):
        breakers.record_failure(provider, error or TransientError("503", status_code=503))


@pytest.mark.redis
def test_retryable_failures_open_the_breaker_and_mark_the_provider_down(fail_max):
    provider = make_provider("trello")
    _fail(provider, 2)
    assert breakers.state(provider)["state"] == "closed"
    _fail(provider, 1)
    state = breakers.state(provider)
    assert state["state"] == "open" and 28 < state["retry_in_seconds"] <= 30  # pybreaker keeps whole seconds
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.DOWN
    assert 28 < breakers.wait_seconds(provider) <= 30
    assert provider.pk in unavailable_provider_ids()


@pytest.mark.redis
def test_not_found_rate_limited_and_validation_errors_never_trip_it(fail_max):
    provider = make_provider("clickup")
    for error in (NotFound("404", status_code=404), RateLimited("429", retry_after=5), ValidationFailed("400")):
        _fail(provider, 10, error)
    assert breakers.state(provider)["state"] == "closed"
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.ACTIVE
    assert breakers.last_error(provider)["code"] == "validation"


@pytest.mark.redis
def test_the_state_is_shared_by_two_breaker_instances_as_by_two_processes(fail_max):
    provider = make_provider("todoist")
    _fail(provider, 3)
    breakers.reset_memory()  # a new process: no breaker built yet, only Redis knows
    assert breakers.breaker_for(provider).current_state == "open"
    assert provider.pk in unavailable_provider_ids()


@pytest.mark.redis
def test_after_the_reset_timeout_one_probe_goes_and_its_success_closes_the_breaker(fail_max, settings):
    provider = make_provider("trello")
    _fail(provider, 3)
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_RESET_SECONDS": 0}
    breakers.reset_memory()
    assert breakers.wait_seconds(provider) == 0.0  # the probe
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.DEGRADED
    assert breakers.wait_seconds(provider) == 1.0  # a second caller waits for the probe's result
    breakers.record_success(provider)
    assert breakers.state(provider)["state"] == "closed"
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.ACTIVE
    assert breakers.wait_seconds(provider) == 0.0


@pytest.mark.redis
def test_a_failed_probe_opens_it_again(fail_max, settings):
    provider = make_provider("clickup")
    _fail(provider, 3)
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_RESET_SECONDS": 0}
    breakers.reset_memory()
    assert breakers.wait_seconds(provider) == 0.0
    _fail(provider, 1)
    assert breakers.breaker_for(provider).current_state == "open"


@pytest.mark.redis
def test_an_operator_disabled_provider_stays_disabled(fail_max):
    provider = make_provider("clickup")
    Provider.objects.filter(pk=provider.pk).update(health_status=Provider.Health.DISABLED)
    _fail(provider, 3)
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.DISABLED


def test_without_redis_the_breaker_lives_in_process_memory(fail_max, settings):
    settings.REDIS_URL = ""
    provider = make_provider("todoist")
    _fail(provider, 3)
    assert breakers.state(provider)["state"] == "open"
    assert provider.pk in unavailable_provider_ids()
    other = make_provider("trello")
    assert other.pk not in unavailable_provider_ids()


@pytest.mark.redis
def test_an_open_breaker_past_its_reset_time_lets_routing_send_work_that_probes_it(fail_max, settings):
    provider = make_provider("clickup")
    _fail(provider, 3)
    assert provider.pk in unavailable_provider_ids()
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_RESET_SECONDS": 0}
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.DOWN  # still marked down ...
    assert provider.pk not in unavailable_provider_ids()  # ... but a new call may probe it


@pytest.mark.redis
def test_a_provider_marked_down_by_an_event_stays_unavailable_until_a_call_succeeds(fail_max):
    provider = make_provider("trello")
    Provider.objects.filter(pk=provider.pk).update(health_status=Provider.Health.DOWN)
    assert provider.pk in unavailable_provider_ids()
    provider.refresh_from_db()
    breakers.record_success(provider)
    provider.refresh_from_db()
    assert provider.health_status == Provider.Health.ACTIVE
    assert provider.pk not in unavailable_provider_ids()


@pytest.mark.redis
def test_when_redis_goes_away_the_breaker_fails_open_without_a_traceback_per_call(fail_max, settings, caplog):
    from providers_app.redis_client import _client

    provider = make_provider("clickup")
    breakers.breaker_for(provider)  # built on Redis
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # ... which then goes away
    _client.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            _fail(provider, 5)
            breakers.record_success(provider)
        assert "Traceback" not in caplog.text and "RedisError" not in caplog.text
    finally:
        _client.cache_clear()
