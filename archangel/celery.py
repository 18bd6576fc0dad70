"""The Celery application. Jobs live in each app's ``jobs.py``."""

import os

from celery import Celery

# Connects the worker's observability handlers: metrics exporter, job timings, logs, tracing.
from archangel import celery_signals  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "archangel.settings")

app = Celery("archangel")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")
