"""Observability of Celery processes: the worker's metrics exporter, job timings, logs and tracing.

- Metrics. A Celery worker is a main process plus pool children (prefork), and jobs run
  in the children. With ``PROMETHEUS_MULTIPROC_DIR`` set every child writes its metrics
  to files in that folder, and the main process serves all of them at
  ``http://<CELERY_METRICS_ADDRESS>:<CELERY_METRICS_PORT>/metrics`` (default port 9808, 0 turns
  it off). The folder must belong to this worker alone (one tmpfs per container): the
  worker clears earlier runs' files when it starts, and a child that exits has its live
  gauges dropped. If the port is taken (two workers on one host), the worker runs on and
  logs a warning.
- Job timings: ``archangel_celery_task_seconds{task, state}`` for every job.
- Logs: Celery leaves logging to Django's ``LOGGING`` (JSON in production), and every
  record written during a job carries its ``celery_task_id``.
- Tracing (only with ``OTEL_EXPORTER_OTLP_ENDPOINT``): configured in each pool child, or in
  the worker itself when its pool does not fork.

Metrics are imported inside the handlers: in multiprocess mode creating a metric opens a
file in the folder, which Django's settings create when they load.
"""

import contextlib
import logging
import logging.config
import os
import time

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from archangel.logging import pop_log_context, push_log_context
from archangel.tracing import configure_tracing, shutdown_tracing

logger = logging.getLogger(__name__)
SERVICE_NAME = "archangel-worker"

# Per running job (keyed by Celery task id): when it started and its log-context token.
_running: dict[str, tuple[float, object, object]] = {}


def _pool_forks(worker) -> bool:
    pool = getattr(worker, "pool_cls", "prefork")
    name = pool if isinstance(pool, str) else f"{pool.__module__}.{getattr(pool, '__name__', '')}"
    return "prefork" in name or "processes" in name


@setup_logging.connect
def use_django_logging(**kwargs):
    # Connecting this signal stops Celery from installing its own handlers on the root
    # logger, so workers and beat write the same (JSON in production) lines as the API.
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@worker_init.connect
def start_worker_metrics(sender=None, **kwargs):
    """Clear the multiprocess folder and serve the worker's metrics; returns the HTTP server (or None)."""
    from django.conf import settings
    from prometheus_client import start_http_server

    # Settings first: loading them creates the multiprocess folder that importing the metrics writes to.
    port, address = settings.CELERY_METRICS_PORT, settings.CELERY_METRICS_ADDRESS
    from archangel import metrics

    metrics.clear_multiprocess_dir(keep_pid=os.getpid())
    if not _pool_forks(sender):
        configure_tracing(SERVICE_NAME)
    if not port:
        return None
    if _pool_forks(sender) and not metrics.multiprocess_dir():
        logger.warning(
            "PROMETHEUS_MULTIPROC_DIR is not set: the metrics on port %s cover the worker's main process "
            "only, not the pool children that run the jobs",
            port,
        )
    try:
        server, _thread = start_http_server(port, addr=address, registry=metrics.metrics_registry(outbox=False))
    except OSError as exc:
        logger.warning("worker metrics not served on %s:%s: %s", address, port, exc)
        return None
    logger.info("worker metrics served on http://%s:%s/metrics", address, port)
    return server


@worker_process_init.connect
def init_pool_process(**kwargs):
    configure_tracing(SERVICE_NAME)


@worker_process_shutdown.connect
def finish_pool_process(pid=None, **kwargs):
    from archangel import metrics

    metrics.mark_process_dead(pid or os.getpid())
    shutdown_tracing()


@worker_shutdown.connect
def finish_worker(**kwargs):
    shutdown_tracing()


@task_prerun.connect
def job_started(task_id=None, task=None, **kwargs):
    from archangel.audit.context import push_actor

    # Writes a job makes are audited as the job's (archangel/audit).
    actor = push_actor(f"job:{getattr(task, 'name', 'unknown')}", "job")
    _running[task_id] = (time.perf_counter(), push_log_context(celery_task_id=task_id), actor)


@task_postrun.connect
def job_finished(task_id=None, task=None, state=None, **kwargs):
    from archangel import metrics
    from archangel.audit.context import pop_actor

    started, token, actor = _running.pop(task_id, (None, None, None))
    if token is not None:
        # ValueError: the token was set in another context (a pool that switches contexts): nothing to undo.
        with contextlib.suppress(ValueError):
            pop_log_context(token)
        with contextlib.suppress(ValueError):
            pop_actor(actor)
    if started is not None:
        metrics.observe_celery_task(getattr(task, "name", "unknown"), state or "unknown", time.perf_counter() - started)
