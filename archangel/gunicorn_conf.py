"""gunicorn settings for the API: ``gunicorn -c python:archangel.gunicorn_conf archangel.wsgi:application ...``.

The bind address stays on the command line. This file holds the worker model every way of
running the API shares (docker-compose, ``make run``, the benchmarks: docs/benchmarks.md), the
hooks that keep prometheus_client's multiprocess files right, and JSON access and error logs
in production. A command-line flag still overrides a setting here.
"""

import gc
import os
from pathlib import Path

from archangel.env import env_choice, env_int
from archangel.logging import log_format, logging_config

# Threaded workers with keep-alive: a request waiting on PostgreSQL (a commit's fsync) or Redis
# holds a thread, not a whole process, so many requests share one commit flush and the CPU
# stays busy; a client (or the TLS proxy in front) reuses its connection instead of paying a
# TCP handshake and a new worker accept per request. Idle kept-alive connections wait in the
# worker's poller, not in a thread. Measured in docs/benchmarks.md ("Webhook intake").
worker_class = "gthread"
# Processes: one per core is what the GIL allows to run Python at once; more only add memory.
# The cores this process may run on (a container's cpuset), not every core of the host.
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
workers = env_int("WEB_CONCURRENCY", _cores, minimum=1)
# Requests in flight per process: enough to overlap a request's database and Redis waits with
# another's Python. More threads only contend for the GIL: on two cores 4 cost a single create
# 0.1-0.6 ms less CPU than 8 in four alternating pairs, and served more (docs/benchmarks.md,
# "Tail latency"). Each thread keeps its own database connection, so the API holds up to
# workers x threads of them (8 on two cores): count them, with the Celery workers', against
# PostgreSQL's max_connections (default 100) when scaling either.
threads = env_int("GUNICORN_THREADS", 4, minimum=1)
# Seconds an idle connection stays open: longer than a proxy's usual upstream idle timeout
# (60 s), so gunicorn is never the side that closes a connection the proxy is about to reuse.
keepalive = env_int("GUNICORN_KEEPALIVE", 75, minimum=0)

# The request id the application echoed, so an access line can be matched with the app's logs.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" request_id=%({x-request-id}o)s'

if log_format(env_choice("DJANGO_ENV", "development", {"development", "production"}) == "production") == "json":
    logconfig_dict = logging_config(level=os.environ.get("LOG_LEVEL", "info").upper(), fmt="json")
    # Replaces gunicorn's own handlers; propagate=False so Django's root handler does not repeat them.
    logconfig_dict["loggers"].update(
        {
            name: {"level": "INFO", "handlers": ["console"], "propagate": False}
            for name in ("gunicorn.error", "gunicorn.access")
        }
    )


# Requests after which a worker freezes what it has imported since it started (see post_request).
GC_REFREEZE_AFTER = env_int("GUNICORN_GC_REFREEZE_AFTER", 500, minimum=0)


def post_worker_init(worker):
    """The application is loaded: move everything alive now (Django, DRF, the URL conf, the
    models: about 100,000 objects) out of the cyclic collector's reach with ``gc.freeze()``.
    Those objects live as long as the worker, yet every full collection walked them all again,
    holding the GIL: 35-230 ms in which none of the worker's threads ran, measured under a
    fixed 300 requests/s (docs/benchmarks.md, "Tail latency"). Frozen objects are still
    freed by reference counting; only cycles among them are never collected, and there are
    none worth a pause in a loaded application."""
    gc.collect()
    gc.freeze()


def post_request(worker, req, environ, resp):
    """Once, after the worker's first GUNICORN_GC_REFREEZE_AFTER requests (0: never), freeze
    again: the modules and caches the first requests loaded (about 30,000 objects: serializers,
    renderers, the admin) would otherwise stay in the oldest generation and be walked by every
    full collection for the worker's whole life. A request in flight at that moment keeps its
    objects until reference counting frees them, as it would anyway; at worst a few of its
    cycles are never collected, once per worker."""
    global _refrozen
    if GC_REFREEZE_AFTER and not _refrozen and worker.nr >= GC_REFREEZE_AFTER:
        _refrozen = True
        gc.freeze()


_refrozen = False


def on_starting(server):
    # Before any worker exists: counters start again from zero with this master, as
    # Prometheus expects after a restart, instead of adding up a previous run's files.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        from archangel.metrics import clear_multiprocess_dir

        clear_multiprocess_dir()


def child_exit(server, worker):
    from archangel.metrics import mark_process_dead

    mark_process_dead(worker.pid)
