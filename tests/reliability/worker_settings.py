"""Settings of the Celery workers the reliability tests start: the real settings and the real
provider gateway, with leases, time limits, timeouts and backoff short enough that a killed
worker's events come back, and a failing provider's events settle, within seconds.

The order the settings require still holds: time limit (5 s) < lease (6 s) < visibility timeout.
"""

from archangel.settings import *  # noqa: F403

OUTBOX_LEASE_SECONDS = 6
CELERY_TASK_TIME_LIMIT = 5
CELERY_TASK_SOFT_TIME_LIMIT = 4
OUTBOX_DRAIN_MAX_SECONDS = 2
OUTBOX_BACKOFF_BASE_SECONDS = 1
OUTBOX_BACKOFF_CAP_SECONDS = 2
OUTBOX_WAKEUP = False  # the tests send the drains, as beat would
PROVIDERS = {
    **PROVIDERS,  # noqa: F405
    "CONNECT_TIMEOUT": 1,
    "READ_TIMEOUT": 1,
    "BREAKER_RESET_SECONDS": 1,
    "BREAKER_REDIS_RETRY_SECONDS": 1,  # back on the shared breakers a second after Redis returns
}
