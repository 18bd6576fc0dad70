"""Every Archangel domain metric, in one place, and the helpers the rest of the code calls.

Names start with ``archangel_``; django-prometheus adds its own ``django_*`` metrics.
Labels are a provider TYPE (``clickup``, ``trello``, ``todoist``) or a provider NAME,
an operation, an outcome or a result from a short fixed list: never a secret, a token
or the id of a task or event, because every distinct label value is a new time series
kept for the whole retention period. Helpers clamp unexpected values to ``other``
instead of raising: a metric must never break the code path it measures.

Processes. gunicorn workers and Celery pool children are separate processes, so when
``PROMETHEUS_MULTIPROC_DIR`` is set prometheus_client keeps every value in memory-mapped
files in that folder (the mode is chosen by the variable when prometheus_client is first
imported) and ``/metrics`` and the worker exporter read them all back through
``MultiProcessCollector``. Counters and histograms then add up across processes; the
one gauge written by processes (``archangel_breaker_state``) uses ``mostrecent``: the
breaker state lives in Redis and is shared, so the latest observation by any process
is the best answer, and summing or taking the maximum would be wrong.

The outbox gauges are not written by anybody: ``OutboxCollector`` reads them from
PostgreSQL when Prometheus scrapes the API (read-only, served by the status index).
"""

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# --- Allowed label values ---------------------------------------------------------------
# Kept in step with providers_app.models.Provider.Type by a test (a new provider type must
# be added here, or its series are counted under "other").
PROVIDER_TYPES = frozenset({"clickup", "trello", "todoist"})
PROVIDER_CALL_OUTCOMES = frozenset(
    {"ok", "client_error", "server_error", "rate_limited", "timeout", "connection_error", "circuit_open", "error"}
)
OUTBOX_OUTCOMES = frozenset({"delivered", "failed", "pending", "dead", "discarded", "stale"})
WEBHOOK_RESULTS = frozenset({"accepted", "duplicate", "bad_signature", "too_large", "unknown_provider", "invalid"})
TASK_SOURCES = frozenset({"api", "webhook", "import"})
# The numeric value exported for each breaker state: alerts compare against 2 (open).
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
OTHER = "other"
_OPERATION = re.compile(r"[a-z][a-z_]{0,39}")  # letters only: a token or an id can never pass
_PROVIDER_NAME_MAX = 50  # Provider.name's max_length

# Buckets in seconds. Provider calls are remote HTTP (timeouts are around 10-30 s); a routing
# decision is in-process work measured in milliseconds; a plan is a few queries per person.
PROVIDER_CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROUTING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
PLAN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CELERY_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# --- Metrics written by the code ------------------------------------------------------------
PROVIDER_CALL_SECONDS = Histogram(
    "archangel_provider_call_seconds",
    "Duration of calls to a provider's API, by provider type, operation and outcome "
    "(the _count series counts calls; outcome!='ok' are errors).",
    ["provider_type", "operation", "outcome"],
    buckets=PROVIDER_CALL_BUCKETS,
)
RATE_LIMIT_WAITS = Counter(
    "archangel_rate_limit_waits",
    "Deliveries put off because the provider credential's request budget was spent.",
    ["provider_type"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "archangel_rate_limit_wait_seconds",
    "Total delay imposed by rate-limit waits, in seconds.",
    ["provider_type"],
)
OUTBOX_DELIVERIES = Counter(
    "archangel_outbox_deliveries",
    "Outbox events handled by the drain, by provider type and the status written: delivered, failed "
    "(will retry), pending (deferred by a rate limit or breaker, not an attempt), dead, discarded, "
    "stale (the lease was lost and the result dropped).",
    ["provider_type", "outcome"],
)
WEBHOOKS = Counter(
    "archangel_webhooks",
    "Webhook deliveries received, by provider type and result "
    "(accepted, duplicate, bad_signature, too_large, unknown_provider, invalid).",
    ["provider_type", "result"],
)
TASKS_CREATED = Counter("archangel_tasks_created", "Tasks created, by source.", ["source"])
TASKS_DEDUPLICATED = Counter(
    "archangel_tasks_deduplicated", "Task creations answered with an existing open task (same fingerprint)."
)
TASKS_ROUTED = Counter("archangel_tasks_routed", "Tasks routed to a provider, by provider type.", ["provider_type"])
ROUTING_SECONDS = Histogram(
    "archangel_routing_decision_seconds", "Time to score and route one task.", buckets=ROUTING_BUCKETS
)
PLAN_SECONDS = Histogram("archangel_plan_generation_seconds", "Time to generate one daily plan.", buckets=PLAN_BUCKETS)
BREAKER_STATE = Gauge(
    "archangel_breaker_state",
    "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open (latest observation by any process).",
    ["provider"],
    multiprocess_mode="mostrecent",
)
CELERY_TASK_SECONDS = Histogram(
    "archangel_celery_task_seconds",
    "Celery job run time in the worker, by job name and final state.",
    ["task", "state"],
    buckets=CELERY_TASK_BUCKETS,
)


def _one_of(value: str, allowed: frozenset[str]) -> str:
    value = str(value).lower()
    return value if value in allowed else OTHER


def _provider_type(value: str) -> str:
    return _one_of(value, PROVIDER_TYPES)


def _operation(value: str) -> str:
    value = str(value).lower()
    return value if _OPERATION.fullmatch(value) else OTHER


# --- Helpers: the only way the rest of the code touches these metrics --------------------------
def observe_provider_call(provider_type: str, operation: str, outcome: str, seconds: float) -> None:
    """One call to a provider's API: ``outcome`` is one of PROVIDER_CALL_OUTCOMES ("ok" for success)."""
    outcome = str(outcome).lower()
    PROVIDER_CALL_SECONDS.labels(
        _provider_type(provider_type), _operation(operation), outcome if outcome in PROVIDER_CALL_OUTCOMES else "error"
    ).observe(max(0.0, seconds))


@contextmanager
def time_provider_call(provider_type: str, operation: str) -> Iterator[SimpleNamespace]:
    """Time a provider call; the outcome is "ok" unless the block raises or sets ``call.outcome``.

    ``with time_provider_call("trello", "create") as call: ...; call.outcome = "rate_limited"``
    """
    call = SimpleNamespace(outcome="ok")
    started = time.perf_counter()
    try:
        yield call
    except BaseException:
        if call.outcome == "ok":
            call.outcome = "error"
        raise
    finally:
        observe_provider_call(provider_type, operation, call.outcome, time.perf_counter() - started)


def count_rate_limit_wait(provider_type: str, seconds: float | None = None) -> None:
    """A delivery deferred by the rate limiter; ``seconds`` is how long it was put off, when known."""
    label = _provider_type(provider_type)
    RATE_LIMIT_WAITS.labels(label).inc()
    if seconds:
        RATE_LIMIT_WAIT_SECONDS.labels(label).inc(max(0.0, seconds))


def count_outbox_delivery(provider_type: str, outcome: str, n: int = 1) -> None:
    """The drain recorded ``n`` results with this outcome (one of OUTBOX_OUTCOMES)."""
    if n > 0:
        OUTBOX_DELIVERIES.labels(_provider_type(provider_type), _one_of(outcome, OUTBOX_OUTCOMES)).inc(n)


def count_webhook(provider_type: str, result: str) -> None:
    """One webhook delivery and what became of it (one of WEBHOOK_RESULTS)."""
    WEBHOOKS.labels(_provider_type(provider_type), _one_of(result, WEBHOOK_RESULTS)).inc()


def count_tasks_created(source: str, n: int = 1) -> None:
    if n > 0:
        TASKS_CREATED.labels(_one_of(source, TASK_SOURCES)).inc(n)


def count_tasks_deduplicated(n: int = 1) -> None:
    if n > 0:
        TASKS_DEDUPLICATED.inc(n)


def count_tasks_routed(provider_type: str, n: int = 1) -> None:
    if n > 0:
        TASKS_ROUTED.labels(_provider_type(provider_type)).inc(n)


def observe_routing_seconds(seconds: float) -> None:
    ROUTING_SECONDS.observe(max(0.0, seconds))


def observe_plan_seconds(seconds: float) -> None:
    PLAN_SECONDS.observe(max(0.0, seconds))


def set_breaker_state(provider: str, state: str) -> None:
    """Record a breaker's state for a provider NAME: "closed", "half_open" (or pybreaker's "half-open"), "open".

    Call it whenever the breaker is consulted before a delivery and from the breaker's
    state-change listener, so every worker process keeps the shared state fresh.
    """
    key = str(state).lower().replace("-", "_")
    if key not in BREAKER_STATES:
        logger.warning("unknown breaker state %r for provider %r; not recorded", state, provider)
        return
    BREAKER_STATE.labels(str(provider)[:_PROVIDER_NAME_MAX]).set(BREAKER_STATES[key])


def observe_celery_task(task_name: str, state: str, seconds: float) -> None:
    """Called by the worker's task signals (archangel.worker_metrics), not by application code."""
    CELERY_TASK_SECONDS.labels(str(task_name)[:100], str(state).lower()).observe(max(0.0, seconds))


# --- Read at scrape time from PostgreSQL -----------------------------------------------------------
class OutboxCollector:
    """Outbox gauges computed from the ``outbox_app_outboxevent`` table when Prometheus scrapes.

    Registered only by the API's ``/metrics`` view (never the worker exporter), so each
    scrape queries the database once per API instance; alerts take ``max()`` across
    instances. A database error is logged and reported as ``archangel_outbox_collector_up 0``
    instead of failing the whole scrape.
    """

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names only: registering the collector must not touch the database.
        yield from self._families()

    def _families(self):
        return (
            GaugeMetricFamily(
                "archangel_outbox_events",
                "Undelivered and dead outbox events by status (pending, processing, failed, dead).",
                labels=["status"],
            ),
            GaugeMetricFamily("archangel_outbox_backlog", "Undelivered outbox events (pending + processing + failed)."),
            GaugeMetricFamily(
                "archangel_outbox_oldest_pending_age_seconds",
                "Age of the oldest undelivered outbox event in seconds (0 when there is none).",
            ),
            GaugeMetricFamily("archangel_outbox_dead_letters", "Outbox events in the dead-letter state."),
            GaugeMetricFamily(
                "archangel_outbox_collector_up", "1 when the outbox gauges could be read from the database, else 0."
            ),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_status, backlog, age, dead, up = self._families()
        try:
            from outbox_app.selectors import outbox_backlog

            data = outbox_backlog()
        except Exception as exc:  # noqa: BLE001 - any failure must leave the rest of the scrape intact
            # One line, not a traceback: with the database down this repeats at every scrape.
            logger.warning("could not read the outbox backlog for /metrics: %s: %s", type(exc).__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        for status, count in sorted(data["by_status"].items()):
            by_status.add_metric([str(status)], count)
        backlog.add_metric([], data["backlog"])
        age.add_metric([], data["oldest_pending_age_seconds"] or 0)
        dead.add_metric([], data["dead"])
        up.add_metric([], 1)
        yield from (by_status, backlog, age, dead, up)


# --- Exposition ----------------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _ThisProcess:
    """The default registry (this process's metrics), as one collector of another registry."""

    def collect(self):
        return REGISTRY.collect()


def metrics_registry(*, outbox: bool) -> CollectorRegistry:
    """What one scrape exports: every process's metrics in multiprocess mode, else this process's.

    ``outbox`` adds the database-backed outbox gauges (the API's /metrics only).
    """
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    if outbox:
        registry.register(OutboxCollector())
    return registry


def clear_multiprocess_dir(keep_pid: int | None = None) -> int:
    """Delete the files of earlier processes from the multiprocess folder; return how many.

    Called once when a process group starts (gunicorn's master, the Celery worker), so
    counters restart from zero with the group, as Prometheus expects after a restart,
    instead of adding up files left by a previous run. ``keep_pid``'s own files stay.
    """
    path = multiprocess_dir()
    if not path or not os.path.isdir(path):
        return 0
    removed = 0
    for name in os.listdir(path):
        stem, _, pid = name.removesuffix(".db").rpartition("_")
        if name.endswith(".db") and stem and pid != str(keep_pid):
            os.remove(os.path.join(path, name))
            removed += 1
    return removed


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges (its counters and histograms keep counting in the totals)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
