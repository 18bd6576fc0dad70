"""OpenTelemetry tracing, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Off (the default) nothing from opentelemetry is imported and every helper here returns
at once, so tracing costs nothing unless it is wanted. On, each process gets a
TracerProvider named by ``OTEL_SERVICE_NAME`` (default ``archangel-api`` for gunicorn,
``archangel-worker`` for Celery), a BatchSpanProcessor and an OTLP/HTTP exporter (the
standard ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_TRACES_SAMPLER*`` variables apply), and
Django, Celery, requests and psycopg are instrumented.

Who calls ``configure_tracing``: ``archangel/wsgi.py`` in each gunicorn worker, before
Django loads its middleware; in Celery, each prefork pool child at ``worker_process_init``
(a span processor's thread does not survive ``fork``), or the worker itself for the
solo and threads pools (``archangel/celery_signals.py``).

One trace from the API request to the provider call: the request that writes an outbox
event stores ``current_trace_context()`` with it; the worker that delivers the event
wraps the delivery in ``span_from_context(name, stored_carrier, attributes)``, whose
span is a child of the request's span, and the provider HTTP call made inside it (by
requests) becomes its child in turn.
"""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

# URLs never traced: Prometheus scrapes /metrics every 15 s and load balancers poll the
# health check; tracing them would bury real requests. OTEL_PYTHON_DJANGO_EXCLUDED_URLS overrides.
DEFAULT_EXCLUDED_URLS = r"/metrics$,/api/health$"
TRACER_NAME = "archangel"

_state: dict[str, Any] = {"provider": None}


def tracing_endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()


def tracing_enabled() -> bool:
    return _state["provider"] is not None


def configure_tracing(default_service_name: str, *, exporter: Any = None, instrument: bool = True) -> bool:
    """Set up tracing for this process when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; return whether it is on.

    ``exporter`` replaces the OTLP exporter (tests pass an in-memory one, which also turns
    tracing on without the variable). Calling it again in the same process does nothing.
    """
    if tracing_enabled():
        return True
    if exporter is None and not tracing_endpoint():
        return False

    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Reads OTEL_EXPORTER_OTLP_ENDPOINT itself and appends /v1/traces.
        exporter = OTLPSpanExporter()
    service_name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or default_service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    # Batching: spans are exported from a background thread, never on the request path;
    # if Jaeger is down they are dropped after the queue fills, the application carries on.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    if instrument:
        _instrument_libraries()
    return True


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    excluded = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or DEFAULT_EXCLUDED_URLS
    DjangoInstrumentor().instrument(excluded_urls=excluded)
    CeleryInstrumentor().instrument()
    RequestsInstrumentor().instrument()
    PsycopgInstrumentor().instrument()


def shutdown_tracing() -> None:
    """Export what is still queued; Celery pool children exit without running atexit handlers."""
    provider = _state["provider"]
    if provider is not None:
        provider.shutdown()


def current_trace_context() -> dict[str, str]:
    """The current span as a W3C ``traceparent`` carrier, to store with an outbox event ({} when off)."""
    if not tracing_enabled():
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    # OpenTelemetry accepts str, bool, int and float; ids (UUIDs) and the like become strings.
    return {
        key: value if isinstance(value, str | bool | int | float) else str(value)
        for key, value in (attributes or {}).items()
        if value is not None
    }


@contextmanager
def span_from_context(
    name: str, carrier: Mapping[str, str] | None = None, attributes: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """Run the block in a span whose parent is the stored ``carrier`` (yields the span, or None when off).

    With an empty carrier the span is a child of the current span. With a carrier, the
    current span (for instance the Celery job that claimed the event) is attached as a
    link, so the job's trace and the task's trace point at each other.
    """
    if not tracing_enabled():
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    parent = None
    links = []
    if carrier:
        parent = extract(dict(carrier))
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            links.append(trace.Link(current))
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=_attributes(attributes), links=links
    ) as span:
        yield span


@contextmanager
def untraced() -> Iterator[None]:
    """Run the block without spans from the instrumented libraries (the /metrics scrape's queries)."""
    if not tracing_enabled():
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def set_span_attributes(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (no-op when tracing is off)."""
    if not tracing_enabled():
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(_attributes(attributes))


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, for log lines (None when off or outside a span)."""
    if not tracing_enabled():
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None
