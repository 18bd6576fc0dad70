"""Retention: finished records past their period are purged in batches; unfinished ones never."""

import datetime as dt
import uuid

from django.utils import timezone

from archangel.audit import retention
from archangel.audit.jobs import purge_old_records
from archangel.audit.models import AuditEntry
from outbox_app.models import OutboxEvent
from tasks_app.models import IdempotencyRecord
from tests.factories import make_provider

OLD = timezone.now() - dt.timedelta(days=90)


def _event(status, processed_at=None):
    return OutboxEvent.objects.create(
        provider=None,
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
        operation_type="create",
        payload={},
        idempotency_key=str(uuid.uuid4()),
        status=status,
        processed_at=processed_at,
    )


def test_old_delivered_events_go_but_never_pending_failed_or_dead_ones(db):
    old_delivered = [_event("delivered", OLD) for _ in range(7)]
    recent = _event("delivered", timezone.now())
    keep = [_event(status, OLD) for status in ("pending", "failed", "dead", "processing")]
    OutboxEvent.objects.filter(pk__in=[e.pk for e in keep]).update(created_at=OLD)
    deleted = retention.purge(batch=3)  # several batches
    assert deleted["outbox_app.OutboxEvent"] == 7
    remaining = set(OutboxEvent.objects.values_list("pk", flat=True))
    assert remaining == {recent.pk, *(e.pk for e in keep)}
    assert not remaining & {e.pk for e in old_delivered}


def test_idempotency_records_expire_after_their_ttl_and_audit_entries_after_theirs(user, settings):
    settings.ARCHANGEL_RETENTION = {**settings.ARCHANGEL_RETENTION, "AUDIT_DAYS": 30}
    fresh = IdempotencyRecord.objects.create(
        user=user, key="a", request_hash="x", response_status=201, response_body={}
    )
    stale = IdempotencyRecord.objects.create(
        user=user, key="b", request_hash="x", response_status=201, response_body={}
    )
    IdempotencyRecord.objects.filter(pk=stale.pk).update(created_at=timezone.now() - dt.timedelta(hours=25))
    make_provider("todoist", name="Audited")
    AuditEntry.objects.filter(object_type="providers_app.provider").update(at=OLD)
    retention.purge()
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not AuditEntry.objects.filter(object_type="providers_app.provider").exists()


def test_the_job_records_what_it_purged_and_is_a_beat_row(db):
    from django_celery_beat.models import PeriodicTask

    _event("delivered", OLD)
    assert purge_old_records()["outbox_app.OutboxEvent"] == 1
    entry = AuditEntry.objects.get(action="purge")
    assert entry.changes["outbox_app.OutboxEvent"] == [None, 1]
    assert purge_old_records()["outbox_app.OutboxEvent"] == 0  # safe to run again
    assert PeriodicTask.objects.get(task="archangel.purge_old_records").crontab is not None
