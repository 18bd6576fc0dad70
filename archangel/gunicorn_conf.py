"""gunicorn settings for the API: ``gunicorn -c python:archangel.gunicorn_conf archangel.wsgi:application ...``.

Bind address and worker count stay on the command line; this file holds what a command
line cannot: the hooks that keep prometheus_client's multiprocess files right, and JSON
access and error logs in production.
"""

import os
from pathlib import Path

from archangel.env import env_choice
from archangel.logging import log_format, logging_config

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
