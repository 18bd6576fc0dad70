"""Housekeeping jobs."""

from celery import shared_task

from archangel.audit import retention
from archangel.audit.context import Entry, record


@shared_task(name="archangel.purge_old_records", ignore_result=True)
def purge_old_records() -> dict[str, int]:
    """Beat job (daily): delete finished records past their retention period. Safe to run twice."""
    deleted = retention.purge()
    if any(deleted.values()):
        record([Entry("purge", "retention", "", "retention run", {k: [None, v] for k, v in deleted.items()})])
    return deleted
