"""The /metrics page: domain metrics, the outbox gauges, who may read it, and multiprocess mode."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from archangel import metrics
from outbox_app.models import OutboxEvent
from outbox_app.services import EventSpec, outbox_enqueue_many
from providers_app.models import Provider
from tests.processes import free_port, run_python
from tests.test_settings_env import PRODUCTION, run_manage
from tests.test_settings_env import test_a_bad_value_stops_start_up_naming_the_variable as assert_start_up_refuses

PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7"]
TOKEN = "m" * 40


def scrape(client, **extra) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.django_db
def test_domain_metrics_appear_on_the_metrics_page_after_the_helpers_are_called(client):
    before = scrape(client)
    metrics.observe_provider_call("trello", "create", "ok", 0.3)
    metrics.observe_provider_call("trello", "create", "server_error", 1.2)
    metrics.count_rate_limit_wait("clickup", seconds=12.5)
    metrics.count_webhook("todoist", "bad_signature")
    metrics.count_tasks_created("api", 3)
    metrics.count_tasks_deduplicated(2)
    metrics.count_tasks_routed("clickup", 4)
    metrics.observe_routing_seconds(0.004)
    metrics.observe_plan_seconds(1.5)
    metrics.set_breaker_state("Trello main", "open")
    with pytest.raises(TimeoutError), metrics.time_provider_call("todoist", "update"):
        raise TimeoutError
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    trello_ok = {"provider_type": "trello", "operation": "create", "outcome": "ok"}
    assert delta("archangel_provider_call_seconds_count", **trello_ok) == 1
    assert delta("archangel_provider_call_seconds_sum", **trello_ok) == pytest.approx(0.3)
    assert delta("archangel_provider_call_seconds_bucket", **trello_ok, le="0.5") == 1
    assert delta("archangel_provider_call_seconds_bucket", **trello_ok, le="0.25") == 0
    assert delta("archangel_provider_call_seconds_count", **{**trello_ok, "outcome": "server_error"}) == 1
    assert (
        delta("archangel_provider_call_seconds_count", provider_type="todoist", operation="update", outcome="error")
        == 1
    )
    assert delta("archangel_rate_limit_waits_total", provider_type="clickup") == 1
    assert delta("archangel_rate_limit_wait_seconds_total", provider_type="clickup") == 12.5
    assert delta("archangel_webhooks_total", provider_type="todoist", result="bad_signature") == 1
    assert delta("archangel_tasks_created_total", source="api") == 3
    assert delta("archangel_tasks_deduplicated_total") == 2
    assert delta("archangel_tasks_routed_total", provider_type="clickup") == 4
    assert delta("archangel_routing_decision_seconds_count") == 1
    assert delta("archangel_plan_generation_seconds_sum") == 1.5
    assert value(after, "archangel_breaker_state", provider="Trello main") == 2
    metrics.set_breaker_state("Trello main", "half-open")
    assert value(scrape(client), "archangel_breaker_state", provider="Trello main") == 1


@pytest.mark.django_db
def test_label_values_outside_the_fixed_lists_are_counted_as_other_never_as_given(client):
    token = "0123456789abcdef0123456789abcdef01234567"
    before = scrape(client)
    metrics.count_webhook(token, "made-up")
    metrics.observe_provider_call("trello", token, "weird", 0.1)
    metrics.count_tasks_created(token)
    after = scrape(client)
    assert (
        value(after, "archangel_webhooks_total", provider_type="other", result="other")
        - value(before, "archangel_webhooks_total", provider_type="other", result="other")
        == 1
    )
    assert value(
        after, "archangel_provider_call_seconds_count", provider_type="trello", operation="other", outcome="error"
    ) == (
        value(
            before, "archangel_provider_call_seconds_count", provider_type="trello", operation="other", outcome="error"
        )
        + 1
    )
    assert (
        value(after, "archangel_tasks_created_total", source="other")
        == value(before, "archangel_tasks_created_total", source="other") + 1
    )
    assert token not in client.get("/metrics").content.decode()


def test_the_provider_type_label_list_matches_the_provider_model():
    assert set(Provider.Type.values) == metrics.PROVIDER_TYPES


def test_an_unknown_breaker_state_is_not_recorded():
    metrics.set_breaker_state("ClickUp", "exploded")
    assert metrics.BREAKER_STATE.labels("ClickUp")._value.get() == 0


@pytest.mark.django_db
def test_the_outbox_collector_reports_the_backlog_from_real_rows(client):
    with transaction.atomic():
        rows = outbox_enqueue_many(
            events=[
                EventSpec(
                    provider_id=None, aggregate_id=uuid.uuid4(), aggregate_version=1, operation="create", payload={}
                )
                for _ in range(5)
            ]
        )
    ids = [row.id for row in rows]
    OutboxEvent.objects.filter(id=ids[0]).update(status=OutboxEvent.Status.DEAD)
    OutboxEvent.objects.filter(id=ids[1]).update(status=OutboxEvent.Status.FAILED)
    OutboxEvent.objects.filter(id=ids[2]).update(status=OutboxEvent.Status.DELIVERED)
    OutboxEvent.objects.filter(id=ids[3]).update(created_at=timezone.now() - timedelta(seconds=600))

    samples = scrape(client)
    assert value(samples, "archangel_outbox_events", status="pending") == 2
    assert value(samples, "archangel_outbox_events", status="failed") == 1
    assert value(samples, "archangel_outbox_events", status="processing") == 0
    assert value(samples, "archangel_outbox_events", status="dead") == 1
    assert value(samples, "archangel_outbox_backlog") == 3
    assert value(samples, "archangel_outbox_dead_letters") == 1
    assert 600 <= value(samples, "archangel_outbox_oldest_pending_age_seconds") < 660
    assert value(samples, "archangel_outbox_collector_up") == 1


@pytest.mark.django_db
def test_an_empty_outbox_reports_zero_age(client):
    samples = scrape(client)
    assert value(samples, "archangel_outbox_backlog") == 0
    assert value(samples, "archangel_outbox_oldest_pending_age_seconds") == 0


@pytest.mark.django_db
def test_a_database_error_costs_the_outbox_gauges_not_the_scrape(client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr("outbox_app.selectors.outbox_backlog", broken)
    samples = scrape(client)
    assert value(samples, "archangel_outbox_collector_up") == 0
    assert ("archangel_outbox_backlog", frozenset()) not in samples
    assert any(name == "django_http_requests_before_middlewares_total" for name, _ in samples)


# --- Who may read /metrics -------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"REMOTE_ADDR": "10.1.2.3"}, 200),
        ({"REMOTE_ADDR": "172.20.0.5"}, 200),
        ({"REMOTE_ADDR": "127.0.0.1"}, 200),
        ({"REMOTE_ADDR": "::ffff:192.168.1.9"}, 200),
        ({"REMOTE_ADDR": "203.0.113.9"}, 403),
        ({"REMOTE_ADDR": "172.32.0.1"}, 403),
        ({"REMOTE_ADDR": "not-an-address"}, 403),
        # Through the TLS proxy every request comes from a private address: a forwarded one is external.
        ({"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, 403),
        ({"REMOTE_ADDR": "10.1.2.3", "HTTP_FORWARDED": "for=203.0.113.9"}, 403),
        ({"REMOTE_ADDR": "10.1.2.3", "HTTP_X_REAL_IP": "203.0.113.9"}, 403),
        ({"REMOTE_ADDR": "203.0.113.9", "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}, 200),
        ({"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "1.2.3.4", "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}, 200),
        ({"REMOTE_ADDR": "203.0.113.9", "HTTP_AUTHORIZATION": "Bearer wrong-token"}, 403),
        ({"REMOTE_ADDR": "203.0.113.9", "HTTP_AUTHORIZATION": f"Token {TOKEN}"}, 403),
    ],
)
def test_production_like_settings_allow_private_networks_and_the_token_only(client, settings, extra, status):
    settings.METRICS_ALLOWED_NETWORKS = PRIVATE
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", **extra)
    assert response.status_code == status
    if status == 403:
        assert response["Content-Type"] == "text/plain"
        assert b"archangel_" not in response.content


@pytest.mark.django_db
def test_an_empty_network_list_leaves_only_the_token(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_development_leaves_metrics_open_and_only_get_is_served(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert client.post("/metrics").status_code == 405


def test_production_restricts_metrics_to_private_networks_by_default():
    result = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.METRICS_ALLOWED_NETWORKS)", **PRODUCTION
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(PRIVATE)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,internal"}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
        ({"CELERY_METRICS_PORT": "-1"}, "CELERY_METRICS_PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ],
)
def test_a_bad_observability_setting_stops_start_up_naming_the_variable(env, named):
    assert_start_up_refuses(env, named)


# --- Several processes ------------------------------------------------------------------------------
def test_multiprocess_mode_adds_up_counters_and_keeps_the_latest_breaker_state(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    writer = """
        from archangel import metrics
        metrics.count_webhook("trello", "accepted")
        metrics.observe_provider_call("trello", "create", "ok", 0.2)
        metrics.set_breaker_state("Trello", "{state}")
    """
    run_python(writer.format(state="open"), PROMETHEUS_MULTIPROC_DIR=str(directory))
    run_python(writer.format(state="closed"), PROMETHEUS_MULTIPROC_DIR=str(directory))
    result = run_python(
        """
        from prometheus_client import generate_latest
        from archangel import metrics
        print(generate_latest(metrics.metrics_registry(outbox=False)).decode())
        """,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    samples = parse(result.stdout)
    assert value(samples, "archangel_webhooks_total", provider_type="trello", result="accepted") == 2
    assert (
        value(
            samples, "archangel_provider_call_seconds_count", provider_type="trello", operation="create", outcome="ok"
        )
        == 2
    )
    assert value(samples, "archangel_breaker_state", provider="Trello") == 0


def test_the_worker_serves_the_metrics_of_its_pool_children(tmp_path):
    """A forked child (as in Celery's prefork pool) runs a job; the worker's exporter reports it."""
    directory = tmp_path / "worker-metrics"
    port = free_port()
    result = run_python(
        f"""
        import os, types, urllib.request
        from archangel import celery_signals

        directory = {str(directory)!r}
        os.makedirs(directory)
        stale = os.path.join(directory, "counter_999999.db")
        open(stale, "w").close()
        server = celery_signals.start_worker_metrics(sender=types.SimpleNamespace(pool_cls="prefork"))
        print("stale file left:", os.path.exists(stale))
        pid = os.fork()
        if pid == 0:
            task = types.SimpleNamespace(name="outbox_app.jobs.drain")
            celery_signals.job_started(task_id="job-1", task=task)
            celery_signals.job_finished(task_id="job-1", task=task, state="SUCCESS")
            celery_signals.finish_pool_process(pid=os.getpid())
            os._exit(0)
        os.waitpid(pid, 0)
        with urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5) as response:
            print(response.read().decode())
        server.shutdown()
        """,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        DJANGO_SETTINGS_MODULE="archangel.settings",
        CELERY_METRICS_PORT=str(port),
    )
    assert "stale file left: False" in result.stdout
    samples = parse(result.stdout.split("\n", 1)[1])
    job = {"task": "outbox_app.jobs.drain", "state": "success"}
    assert value(samples, "archangel_celery_task_seconds_count", **job) == 1
    assert "archangel_outbox_backlog" not in result.stdout  # the database gauges belong to the API's /metrics


def test_a_worker_with_the_port_at_zero_serves_nothing(settings):
    import types

    from archangel import celery_signals

    settings.CELERY_METRICS_PORT = 0
    assert celery_signals.start_worker_metrics(sender=types.SimpleNamespace(pool_cls="solo")) is None


def test_clearing_the_multiprocess_folder_keeps_only_the_given_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("counter_11.db", "histogram_11.db", "gauge_mostrecent_12.db", "counter_13.db", "notes.txt"):
        (tmp_path / name).touch()
    assert metrics.clear_multiprocess_dir(keep_pid=13) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_13.db", "notes.txt"]


def test_creating_tasks_counts_created_and_deduplicated(api):
    from prometheus_client import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    created, dups = value("archangel_tasks_created_total", source="api"), value("archangel_tasks_deduplicated_total")
    body = {"tasks": [{"title": "Counted A"}, {"title": "Counted B"}, {"title": "Counted A"}]}
    assert api.post("/api/tasks/bulk", body, format="json").status_code in (200, 201, 207)
    assert value("archangel_tasks_created_total", source="api") - created == 2
    assert value("archangel_tasks_deduplicated_total") - dups == 1
