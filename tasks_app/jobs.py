"""Celery jobs of the tasks app: thin wrappers that take ids, call a service and are safe to run twice."""

import logging
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from providers_app.services import webhook_enqueue
from tasks_app import services, sync

logger = logging.getLogger(__name__)


@shared_task(name="tasks_app.rescore_open_tasks", ignore_result=True)
def rescore_open_tasks() -> int:
    """Beat job: refresh every open task's score (time moves urgency and SLA pressure)."""
    return services.tasks_rescore_open()


@shared_task(name="tasks_app.jobs.webhook_process", acks_late=True)
def webhook_process(delivery_id: str) -> str:
    """Apply one stored webhook delivery (sent after its row commits)."""
    return sync.webhook_delivery_process(delivery_id=delivery_id)


@shared_task(name="tasks_app.jobs.webhook_drain", acks_late=True)
def webhook_drain() -> int:
    """Apply every received delivery, oldest first (queued by the intake, one per burst)."""
    from django.core.cache import cache

    from providers_app.services import WAKEUP_KEY

    # Before reading: a delivery committed from now on queues the next drain itself.
    cache.delete(WAKEUP_KEY)
    return sync.webhook_deliveries_drain()


@shared_task(name="tasks_app.jobs.webhook_sweep")
def webhook_sweep() -> int:
    """Beat, every minute: send the jobs of deliveries left received (workers were down, a job
    was lost) or failed with attempts left. Two beats sending twice cost nothing: processing
    locks the row and checks its status."""
    due = sync.webhook_deliveries_due()
    for delivery_id in due:
        webhook_enqueue(delivery_id=delivery_id)
    return len(due)


@shared_task(name="tasks_app.jobs.reconcile_providers")
def reconcile_providers() -> int:
    """Beat: pull each provider whose last pull is older than ARCHANGEL_SYNC_PULL_MINUTES."""
    minutes = settings.ARCHANGEL["SYNC_PULL_MINUTES"]
    if not minutes:
        return 0
    from tasks_app.reconcile import provider_pull, providers_due

    # A pull of a big account takes longer than a job may run (the task time limit): each run
    # stops at its budget and the next resumes from the stored cursor. A soft time limit is not a
    # provider's failure: it ends the run instead of starting the next provider's pull.
    deadline = time.monotonic() + settings.ARCHANGEL["SYNC_PULL_MAX_SECONDS"]
    count = 0
    for provider in providers_due(minutes=minutes):
        if time.monotonic() >= deadline:
            break
        try:
            provider_pull(provider=provider, since=None, open_only=True, deadline=deadline)
            count += 1
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("reconciliation pull of provider %s failed", provider.pk)
    return count


@shared_task(name="tasks_app.send_daily_plan_emails", ignore_result=True)
def send_daily_plan_emails() -> dict:
    """Beat job: each active assignee's plan, emailed once a day in their morning."""
    from tasks_app import plans

    return plans.plan_emails_send()


@shared_task(name="tasks_app.reroute_from_down_providers", ignore_result=True)
def reroute_from_down_providers() -> list:
    """Beat job: apply ARCHANGEL_PROVIDER_DOWN_POLICY=move to providers whose breaker opened."""
    return services.providers_down_reroute()
