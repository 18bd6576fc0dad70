"""Tracing: off and free without OTEL_EXPORTER_OTLP_ENDPOINT; on, one trace from request to provider call.

Each case runs in its own Python process: a TracerProvider and library instrumentation
are process-wide and cannot be undone, so they must not leak into the rest of the suite.
"""

import json

import pytest
from django.db import connection

from archangel import tracing
from tests.processes import run_python


def test_with_the_endpoint_unset_no_instrumentation_or_exporter_is_loaded():
    result = run_python(
        """
        import json, sys
        import archangel.wsgi  # the API's entry point: configures tracing, then loads Django
        from archangel import celery_signals, tracing
        from django.test import Client

        Client().get("/api/no-such-endpoint")
        celery_signals.init_pool_process()
        carrier = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        with tracing.span_from_context("outbox.deliver", carrier) as span:
            pass
        print(json.dumps({
            "enabled": tracing.tracing_enabled(),
            "carrier": tracing.current_trace_context(),
            "span": span,
            # redis-py 8 imports opentelemetry's API for its own (inert) observability hooks when the
            # package is installed; what must stay out is our tracing: instrumentations and exporters.
            "modules": sorted(
                m for m in sys.modules
                if m.startswith(("opentelemetry.instrumentation", "opentelemetry.exporter", "opentelemetry.sdk.trace"))
            ),
        }))
        """,
        DJANGO_SETTINGS_MODULE="archangel.settings",
        DJANGO_ENV="development",
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "enabled": False,
        "carrier": {},
        "span": None,
        "modules": [],
    }


def test_the_helpers_are_no_ops_when_tracing_is_off():
    assert not tracing.tracing_enabled()
    assert tracing.current_trace_context() == {}
    assert tracing.current_trace_id() is None
    tracing.set_span_attributes({"archangel.task_id": "t-1"})
    with tracing.span_from_context("outbox.deliver", {"traceparent": "garbage"}, {"a": 1}) as span:
        assert span is None


TRACE_ONE_TASK = """
    import json, os
    import django, requests, responses
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from archangel import tracing

    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("archangel-test", exporter=exporter)
    django.setup()
    from django.db import connection
    from django.test import Client

    tracer = trace.get_tracer("test")
    # 1. The API request that writes the task and its outbox event stores the trace context.
    with tracer.start_as_current_span("POST /api/tasks"):
        carrier = tracing.current_trace_context()
    # 2. Later, in another process, the Celery job that claimed the event delivers it.
    with tracer.start_as_current_span("outbox_app.jobs.drain"):
        with tracing.span_from_context("outbox.deliver", carrier, {"archangel.event_id": "e-1", "attempt": 2}):
            log_trace_id = tracing.current_trace_id()
            with responses.RequestsMock() as mock:
                mock.add(responses.POST, "https://api.trello.com/1/cards", json={"id": "c1"})
                requests.post("https://api.trello.com/1/cards", json={"name": "t"}, timeout=5)
    # Django and psycopg are instrumented too.
    Client().get("/api/tasks")
    Client().get("/api/tasks/00000000-0000-0000-0000-000000000000", HTTP_AUTHORIZATION="Token nope")  # fast path
    Client().get("/metrics")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    trace.get_tracer_provider().force_flush()
    spans = [
        {
            "name": s.name,
            "trace": format(s.context.trace_id, "032x"),
            "id": format(s.context.span_id, "016x"),
            "parent": format(s.parent.span_id, "016x") if s.parent else None,
            "links": [format(link.context.span_id, "016x") for link in s.links],
            "attributes": dict(s.attributes),
            "service": s.resource.attributes["service.name"],
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"carrier": carrier, "log_trace_id": log_trace_id, "spans": spans}))
"""


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_stored_trace_context_makes_the_delivery_and_the_provider_call_part_of_the_requests_trace():
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    result = run_python(
        TRACE_ONE_TASK, DJANGO_SETTINGS_MODULE="archangel.settings", DJANGO_ENV="development", DATABASE_URL=database_url
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    spans = {span["name"]: span for span in out["spans"]}
    api, job, deliver = spans["POST /api/tasks"], spans["outbox_app.jobs.drain"], spans["outbox.deliver"]
    [provider_call] = [s for s in out["spans"] if s["name"] == "POST" and s["parent"] == deliver["id"]]

    assert out["carrier"]["traceparent"].startswith(f"00-{api['trace']}-{api['id']}-")
    assert deliver["trace"] == api["trace"] and deliver["parent"] == api["id"]
    assert deliver["links"] == [job["id"]]
    assert deliver["attributes"] == {"archangel.event_id": "e-1", "attempt": 2}
    assert provider_call["trace"] == api["trace"]
    assert provider_call["attributes"]["http.url"] == "https://api.trello.com/1/cards"
    assert out["log_trace_id"] == api["trace"]
    assert {span["service"] for span in out["spans"]} == {"archangel-test"}
    # The Django request span and a psycopg query span.
    assert any(
        s["attributes"].get("http.route") == "api/tasks$" and s["attributes"]["http.status_code"] == 401
        for s in out["spans"]
    )
    # A token request takes the middleware's fast path: its span still names the route.
    assert any(
        s["attributes"].get("http.route", "").startswith("api/tasks/(?P<pk>")
        and s["attributes"]["http.status_code"] == 401
        for s in out["spans"]
    )
    assert any(s["attributes"].get("db.statement") == "SELECT 1" for s in out["spans"])
    # Nothing from the /metrics scrape: neither the request nor the outbox queries it runs.
    assert not any("metrics" in json.dumps(s) or "outbox_app_outboxevent" in json.dumps(s) for s in out["spans"])
