"""Writes that bring provider-side changes into Archangel: webhook deliveries and the
reconciliation pull. (A services module: every inbound change goes through here.)

The rules (issue 5 §3, docs/reliability.md "Webhooks"):

- **No echoes.** A remote change is applied through the task services without writing
  an outbox event, so it never travels back. A value we delivered coming back (the
  provider confirming our change, possibly late and out of order) is recognised by
  comparing it with the values of our own recent outbox events for the task and is
  recorded as ``by: archangel`` in the task's :class:`TaskSyncState`, never applied.
- **Conflicts.** When a field changed on both sides since it was last in sync (the
  local value differs from the last agreed one, and the remote brings a third one),
  the later change wins (field-level last writer wins by timestamp: the provider's
  time of the change against the time our outbox event for the local change was
  written). Every conflict is a :class:`SyncConflict` row with both values.
- **Pending deliveries.** Outbox events carry the task's full state. If events of the
  task are still undelivered when a remote change is applied, one more update event
  with the merged state is written, so that the older pending state cannot overwrite
  the provider's change when it is delivered.
- **Unknown tasks** are adopted once (unique (provider, external_id)); a task carrying
  the reference of one of our own tasks (an adapter's marker, or our create still in
  flight) is linked or retried, never adopted as a duplicate.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from archangel.audit.context import acting_as
from archangel.db import insert_rows
from archangel.metrics import count_tasks_created
from outbox_app.models import OutboxEvent
from outbox_app.services import outbox_enqueue_many
from providers_app.models import Provider, WebhookDelivery
from providers_app.webhooks import RemoteChange, parse_task, parse_webhook
from tasks_app import normalizer
from tasks_app.models import AssigneeIdentity, SyncConflict, Task, TaskSyncState
from tasks_app.normalizer import NormalizationError
from tasks_app.services import _apply_changes, _events_for, _new_task, _route_new, _score
from tasks_app.status import CLOSED, TaskStatus

logger = logging.getLogger(__name__)

SYNC_FIELDS = ("title", "description", "status", "priority", "deadline", "assignee_id")
# Outbox events of a task looked at to recognise our own values coming back.
_RECENT_EVENTS = 50
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UNDELIVERED = (OutboxEvent.Status.PENDING, OutboxEvent.Status.PROCESSING, OutboxEvent.Status.FAILED)

# A provider that only knows a status *type* (ClickUp open/custom/closed, Todoist checked)
# cannot tell some of ours apart: the status it reports "agrees" with any of these.
STATUS_EQUIVALENT = {
    TaskStatus.PENDING: {TaskStatus.PENDING, TaskStatus.ASSIGNED},
    TaskStatus.IN_PROGRESS: {TaskStatus.IN_PROGRESS, TaskStatus.BLOCKED, TaskStatus.REVIEW, TaskStatus.ON_HOLD},
}


class RetryLater(Exception):
    """The delivery cannot be applied yet (provider unreachable, our own create in flight)."""


# --- fetching (network: never inside a transaction) ---------------------------------------------


def remote_task_fetch(*, provider: Provider, external_id: str) -> dict[str, Any] | None:
    """The provider's current state of one task (the raw JSON), or None when it is gone.

    The one place a webhook needs the provider's API (ClickUp sends history items, not the
    task, docs/provider-apis.md §1.5): through the adapter and its HTTP choke point.
    """
    from providers_app.adapters.base import NotFound, ProviderError

    try:
        from providers_app.adapters import get_adapter
    except ImportError as exc:  # the adapters are not installed in this build
        raise RetryLater("no adapter to fetch the task with") from exc
    from providers_app import ratelimit

    # The read spends the same credential's budget as deliveries (docs/reliability.md, "Rate
    # limits"): when it is spent the delivery waits for the sweep instead of sleeping here.
    wait = ratelimit.take(provider)
    if wait > 0:
        raise RetryLater(f"rate budget spent; free again in {wait:.1f} s")
    try:
        return dict(get_adapter(provider).get(external_id).raw)
    except NotFound:
        return None
    except ProviderError as exc:
        if exc.retryable:
            raise RetryLater(f"fetching the task failed: {exc.code}: {exc.message}") from exc
        raise


def _complete(provider: Provider, change: RemoteChange) -> RemoteChange:
    if not change.needs_fetch or change.deleted:
        return change
    raw = remote_task_fetch(provider=provider, external_id=change.external_id)
    if raw is None:
        return RemoteChange(change.external_id, occurred_at=change.occurred_at, deleted=True)
    return change.merged_with(parse_task(provider.type, raw, provider.config))


# --- webhook deliveries ---------------------------------------------------------------------------


def webhook_delivery_process(*, delivery_id: Any) -> str:
    """Apply one stored delivery; safe to run twice or concurrently (the row is locked and its
    status checked in the transaction that applies the effect). Returns the delivery's status."""
    delivery = WebhookDelivery.objects.select_related("provider").filter(pk=delivery_id).first()
    if delivery is None:
        return "missing"
    if delivery.status not in (WebhookDelivery.Status.RECEIVED, WebhookDelivery.Status.FAILED):
        return delivery.status
    provider = delivery.provider
    try:
        changes = [_complete(provider, c) for c in parse_webhook(provider.type, delivery.payload, provider.config)]
        # Audited as the provider's webhook (archangel/audit), not as the job that applies it.
        with acting_as(f"webhook:{provider.name}", "webhook"), transaction.atomic():
            locked = (
                WebhookDelivery.objects.select_for_update(skip_locked=True)
                .filter(pk=delivery.pk, status__in=[WebhookDelivery.Status.RECEIVED, WebhookDelivery.Status.FAILED])
                .first()
            )
            if locked is None:
                return "busy"  # another worker has it, or finished it meanwhile
            outcomes = [remote_change_apply(provider=provider, change=c, delivery=locked) for c in changes]
            applied = any(o in {"applied", "adopted", "linked", "conflict"} for o in outcomes)
            locked.status = WebhookDelivery.Status.PROCESSED if applied else WebhookDelivery.Status.IGNORED
            locked.attempts += 1
            locked.error = ", ".join(outcomes)[:1000]
            locked.processed_at = timezone.now()
            locked.save(update_fields=["status", "attempts", "error", "processed_at", "updated_at"])
            return locked.status
    except Exception as exc:
        WebhookDelivery.objects.filter(pk=delivery.pk).exclude(
            status__in=[WebhookDelivery.Status.PROCESSED, WebhookDelivery.Status.IGNORED]
        ).update(
            status=WebhookDelivery.Status.FAILED,
            attempts=delivery.attempts + 1,
            error=f"{type(exc).__name__}: {exc}"[:1000],
            updated_at=timezone.now(),
        )
        if not isinstance(exc, RetryLater):
            logger.exception("webhook delivery %s failed", delivery.pk)
        return WebhookDelivery.Status.FAILED


def webhook_deliveries_drain(*, batch: int = 100, max_seconds: float | None = None) -> int:
    """Process received deliveries oldest first until none is left (or time is up, when another
    drain is queued to go on). Drains running side by side skip the rows the other holds."""
    budget = max_seconds if max_seconds is not None else max(5.0, settings.CELERY_TASK_SOFT_TIME_LIMIT - 10)
    started = time.monotonic()
    done = 0
    seen: set[str] = set()
    while True:
        ids = [
            str(pk)
            for pk in WebhookDelivery.objects.filter(status=WebhookDelivery.Status.RECEIVED)
            .order_by("received_at")
            .values_list("pk", flat=True)[:batch]
            if str(pk) not in seen
        ]
        if not ids:
            return done
        for delivery_id in ids:
            seen.add(delivery_id)
            if webhook_delivery_process(delivery_id=delivery_id) in (
                WebhookDelivery.Status.PROCESSED,
                WebhookDelivery.Status.IGNORED,
            ):
                done += 1
            if time.monotonic() - started > budget:
                from providers_app.services import webhook_wakeup

                webhook_wakeup()
                return done


def webhook_deliveries_due(*, older_than_seconds: int = 60, limit: int = 500) -> list[str]:
    """Deliveries the sweep should (re)send: still received (job lost, workers were down) or
    failed with attempts left, and not touched for a while (their job may be running)."""
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    rows = (
        WebhookDelivery.objects.filter(
            status__in=[WebhookDelivery.Status.RECEIVED, WebhookDelivery.Status.FAILED],
            received_at__lt=cutoff,
            updated_at__lt=cutoff,
            attempts__lt=settings.ARCHANGEL["WEBHOOK_MAX_ATTEMPTS"],
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    return [str(pk) for pk in rows]


# --- applying one change -----------------------------------------------------------------------------


def _neutral(task: Task, name: str) -> Any:
    """A task field in the form the outbox payload carries it (so the two compare)."""
    if name == "deadline":
        return task.deadline.astimezone(dt.UTC).isoformat() if task.deadline else None
    if name == "assignee_id":
        return str(task.assignee_id) if task.assignee_id else None
    return getattr(task, name)


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "deadline" and a and b:
        try:
            return dt.datetime.fromisoformat(a) == dt.datetime.fromisoformat(b)
        except (TypeError, ValueError):
            return a == b
    return a == b


def _agrees(name: str, remote: Any, local: Any) -> bool:
    if name == "status" and local in STATUS_EQUIVALENT.get(remote, ()):
        return True
    return _same(name, remote, local)


def _remote_values(provider: Provider, change: RemoteChange) -> dict[str, Any]:
    """The change's fields, normalized like any other input and in outbox-payload form."""
    fields = dict(change.fields)
    out: dict[str, Any] = {}
    external_ids = fields.pop("assignee_external_ids", None)
    if external_ids is not None:
        if not external_ids:
            out["assignee_id"] = None
        else:
            found = dict(
                AssigneeIdentity.objects.filter(provider=provider, external_user_id__in=external_ids).values_list(
                    "external_user_id", "assignee_id"
                )
            )
            first = next((found[e] for e in external_ids if e in found), None)
            if first is not None:  # a person we do not know stays unknown: leave ours as is
                out["assignee_id"] = str(first)
    status = fields.pop("status", None)
    if status in TaskStatus.values:
        out["status"] = status
    raw = {k: v for k, v in fields.items() if k in ("title", "description", "priority", "deadline")}
    if raw.get("title") == "":
        raw.pop("title")  # a task always has a title; an empty one is a payload gap
    for name, value in raw.items():
        try:
            normalized = normalizer.normalize_task({name: value}, partial=True)
        except NormalizationError:
            logger.info("ignored an invalid %s from %s for %s", name, provider.type, change.external_id)
            continue
        value = normalized.get(name)
        out[name] = value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value
    return out


def _recent_events(task: Task) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=task.id).order_by("-aggregate_version")[:_RECENT_EVENTS])


def remote_change_apply(
    *, provider: Provider, change: RemoteChange, delivery: WebhookDelivery | None = None, adopt: bool = True
) -> str:
    """Apply one remote change inside the caller's transaction. Returns what happened:
    ``applied``, ``conflict`` (applied or not, recorded), ``unchanged``, ``echo``,
    ``stale``, ``adopted``, ``linked``, ``ignored``."""
    task = Task.objects.select_for_update().filter(provider=provider, external_id=change.external_id).first()
    if task is None:
        task = _link_own_task(provider, change)
        if task is None:
            return _adopt(provider, change) if adopt else "ignored"
        outcome = _apply_to(task, provider, change, delivery)
        return "linked" if outcome in {"unchanged", "echo", "stale"} else outcome
    return _apply_to(task, provider, change, delivery)


def _apply_to(task: Task, provider: Provider, change: RemoteChange, delivery: WebhookDelivery | None) -> str:
    if task.status == TaskStatus.ARCHIVED:
        return "ignored"  # archived is final here; nothing a provider does reopens it
    remote = {"status": TaskStatus.ARCHIVED} if change.deleted else _remote_values(provider, change)
    if not remote:
        return "unchanged"
    state, _ = TaskSyncState.objects.select_for_update().get_or_create(task=task)
    fields_state: dict[str, dict] = dict(state.fields)
    events = _recent_events(task)
    first_payload = events[-1].payload if events else {}
    now = timezone.now()
    when = change.occurred_at
    accepted: dict[str, Any] = {}
    outcomes: set[str] = set()

    for name, value in remote.items():
        current = _neutral(task, name)
        known = fields_state.get(name)
        remote_at = dt.datetime.fromisoformat(known["at"]) if known and known.get("at") else None
        if when and remote_at and when < remote_at:
            outcomes.add("stale")  # an older change arriving after a newer one of the same field
            continue
        if _agrees(name, value, current):
            # In sync: the provider confirms what we hold (our own delivery coming back,
            # or the same change made on both sides).
            by = "archangel" if any(_same(name, e.payload.get(name), current) for e in events) else "provider"
            fields_state[name] = _field_state(current, by, when, now)
            outcomes.add("echo" if by == "archangel" else "unchanged")
            continue
        synced_at = dt.datetime.fromisoformat(known["synced_at"]) if known and known.get("synced_at") else None
        ours = [e for e in events if synced_at is None or e.created_at > synced_at]
        if any(_same(name, e.payload.get(name), value) for e in ours):
            # A value we delivered since the last sync, coming back late: our own echo.
            outcomes.add("echo")
            continue
        baseline = known["value"] if known else first_payload.get(name, current)
        if not _same(name, baseline, current):
            # Both sides changed the field since it was last in sync: the later change wins.
            local_at = _local_change_time(name, current, events) or task.updated_at
            remote_wins = when is None or when >= local_at
            SyncConflict.objects.create(
                task=task,
                provider=provider,
                field=name,
                local_value=current,
                remote_value=value,
                local_changed_at=local_at,
                remote_changed_at=when,
                winner=SyncConflict.Winner.REMOTE if remote_wins else SyncConflict.Winner.LOCAL,
                delivery=delivery,
            )
            outcomes.add("conflict")
            if not remote_wins:
                continue
        accepted[name] = value
        fields_state[name] = _field_state(value, "provider", when, now)

    changed = _save_remote(task, accepted) if accepted else set()
    state.fields = fields_state
    state.save()
    if changed:
        return "conflict" if "conflict" in outcomes else "applied"
    for outcome in ("conflict", "echo", "stale"):
        if outcome in outcomes:
            return outcome
    return "unchanged"


def _field_state(value: Any, by: str, when: dt.datetime | None, now: dt.datetime) -> dict[str, Any]:
    return {"value": value, "by": by, "at": when.isoformat() if when else None, "synced_at": now.isoformat()}


def _local_change_time(name: str, current: Any, events: list[OutboxEvent]) -> dt.datetime | None:
    """When we set the field to its current value: the oldest event of the newest run of
    events (newest first) carrying that value."""
    found = None
    for event in events:
        if _same(name, event.payload.get(name), current):
            found = event.created_at
        else:
            break
    return found


def _save_remote(task: Task, values: dict[str, Any]) -> set[str]:
    """Write remote values through the task rules, without an outbox event of their own."""
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name == "deadline":
            changes["deadline"] = dt.datetime.fromisoformat(value) if value else None
        elif name == "assignee_id":
            changes["assignee"] = uuid.UUID(value) if value else None
        else:
            changes[name] = value
    changed = _apply_changes(task, changes, remote=True)
    if not changed:
        return changed
    task.version += 1
    _score(task, task.client if task.client_id else None, timezone.now())
    task.save()
    if OutboxEvent.objects.filter(aggregate_id=task.id, status__in=UNDELIVERED).exists():
        # An undelivered event carries the state from before this change and would undo it
        # at the provider: follow it with the merged state (its own echo compares equal).
        outbox_enqueue_many(events=_events_for([(task, task.status)]))
    return changed


def _link_own_task(provider: Provider, change: RemoteChange) -> Task | None:
    """One of our tasks whose create reached the provider before its external id was recorded.

    Adapters write a reference to our task into what they create; any of our task ids in
    the remote task identifies it. A create still undelivered with the same title means
    this is probably ours too: retry later rather than adopt a duplicate.
    """
    ids = set(_UUID.findall(json.dumps(change.raw, default=str).lower())) if change.raw else set()
    if ids:
        task = (
            Task.objects.select_for_update()
            .filter(id__in=ids, provider=provider, external_id__isnull=True)
            .order_by("created_at")
            .first()
        )
        if task is not None:
            task.external_id = change.external_id
            task.save(update_fields=["external_id", "updated_at"])
            return task
    title = change.fields.get("title")
    if (
        title
        and change.created
        and OutboxEvent.objects.filter(
            provider=provider,
            operation_type=OutboxEvent.Operation.CREATE,
            status__in=UNDELIVERED,
            payload__title=normalizer.clean_line(title),
        ).exists()
    ):
        raise RetryLater("a create of ours with this title is still being delivered")
    return None


def _adopt(provider: Provider, change: RemoteChange) -> str:
    """A task made directly in the provider becomes ours: normalized, kept without an outbox
    event (it exists there already), adopted once whatever the number of deliveries."""
    if change.deleted:
        return "ignored"
    values = _remote_values(provider, change)
    status = values.get("status") or TaskStatus.PENDING
    if status in CLOSED or "title" not in values:
        return "ignored"  # closed work is not imported; a change without a title cannot be adopted
    data = {name: values[name] for name in ("title", "description", "priority") if name in values}
    if values.get("deadline"):
        data["deadline"] = values["deadline"]
    if values.get("assignee_id"):
        data["assignee"] = values["assignee_id"]
    try:
        normalized = normalizer.normalize_task(data)
    except NormalizationError:
        return "ignored"
    if status == TaskStatus.ASSIGNED and not normalized.get("assignee"):
        status = TaskStatus.PENDING
    normalized["status"] = status
    normalized["provider"] = provider.id
    now = timezone.now()
    task = _new_task(normalized, source=Task.Source.WEBHOOK, now=now)
    task.external_id = change.external_id
    decisions = {}
    if settings.ARCHANGEL["WEBHOOK_ADOPT_ROUTE"] and task.assignee_id is None:
        # Policy: adopted work is given a person too (the provider stays the one it came from).
        decisions = _route_new([task], {}, now=now)
    if not insert_rows([task], skip_conflicts=True):
        # Adopted by a concurrent delivery, or an open task with the same fingerprint exists.
        return "ignored"
    if decisions:
        insert_rows(list(decisions.values()))
        if task.assignee_id:
            # The provider learns who was given the work (an update: the task exists there).
            outbox_enqueue_many(events=_events_for([(task, task.status)]))
    TaskSyncState.objects.create(
        task=task,
        fields={
            name: _field_state(_neutral(task, name), "provider", change.occurred_at, now)
            for name in SYNC_FIELDS
            if name in values or name == "status"
        },
    )
    count_tasks_created(Task.Source.WEBHOOK)
    return "adopted"


# --- reconciliation pull ---------------------------------------------------------------------------


def remote_tasks_apply(
    *, provider: Provider, raws: Iterable[dict[str, Any]], since: dt.datetime | None, dry_run: bool = False
) -> dict[str, int]:
    """Apply one page of a provider's tasks (the periodic pull and ``sync_provider``).

    Known tasks are compared field by field like a webhook; unknown ones are adopted when
    open and created since ``since`` (all open ones when ``since`` is None). With
    ``dry_run`` everything is computed and rolled back.
    """
    counts: dict[str, int] = {}
    with transaction.atomic():
        for raw in raws:
            change = parse_task(provider.type, raw, provider.config)
            known = Task.objects.filter(provider=provider, external_id=change.external_id).exists()
            adopt = not known and (since is None or (change.created_at is not None and change.created_at >= since))
            try:
                with transaction.atomic():
                    outcome = remote_change_apply(provider=provider, change=change, adopt=adopt)
            except RetryLater:
                outcome = "retry"
            counts[outcome] = counts.get(outcome, 0) + 1
        if dry_run:
            transaction.set_rollback(True)
    return counts
