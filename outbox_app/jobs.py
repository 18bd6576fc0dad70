"""Celery jobs of the outbox. Messages are wake-ups; the rows in PostgreSQL are the work.

``outbox.drain`` runs from beat every few seconds (the ``outbox-drain`` PeriodicTask,
created by migration 0003 and editable in the admin) and after every commit that
writes events (one wake-up per window). Running it twice, or in many workers at once,
is harmless: the claim is exclusive (``outbox_app/drain.py``).
"""

import logging
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from outbox_app.drain import drain

logger = logging.getLogger(__name__)

DRAIN_TASK = "outbox.drain"
WAKEUP_KEY = "outbox:drain-wakeup"
# When this process last asked the cache for the wake-up flag (monotonic seconds).
_last_try = {"at": float("-inf")}


# acks_late + reject_on_worker_lost (settings): a drain whose worker dies is redelivered, and
# the events it held are reclaimed after their lease anyway. Time limits come from the
# settings (CELERY_TASK_TIME_LIMIT < OUTBOX_LEASE_SECONDS), so a killed drain's leases are
# still valid when it dies and expire soon after.
@shared_task(name=DRAIN_TASK, acks_late=True, ignore_result=True)
def outbox_drain() -> dict:
    return drain()


def send_wakeup() -> bool:
    """Queue one drain unless one was queued within OUTBOX_WAKEUP_WINDOW_SECONDS; never raises
    (it runs after the commit: the events are safe, and beat will drain them anyway)."""
    if not settings.OUTBOX_WAKEUP:
        return False
    # Within a window of this process's last try, the flag is set already (by us or by
    # another process): asking Redis again would only hear "no". This spares a round trip
    # on all but one commit per window and process.
    now = time.monotonic()
    if now - _last_try["at"] < settings.OUTBOX_WAKEUP_WINDOW_SECONDS:
        return False
    _last_try["at"] = now
    try:
        # cache.add is atomic in Redis (SET NX): of 1,000 concurrent commits one sends.
        if not cache.add(WAKEUP_KEY, 1, timeout=settings.OUTBOX_WAKEUP_WINDOW_SECONDS):
            return False
        outbox_drain.apply_async(expires=settings.OUTBOX_DRAIN_INTERVAL_SECONDS * 6)
        return True
    except Exception as exc:  # noqa: BLE001 - a broker or cache outage must not fail a committed write
        logger.warning("could not send an outbox drain wake-up (beat will drain): %s: %s", type(exc).__name__, exc)
        return False
