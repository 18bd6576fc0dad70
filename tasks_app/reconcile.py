"""The reconciliation pull: read a provider's tasks page by page and apply them like webhooks.

Webhooks are lossy (ClickUp drops an event after 5 failed attempts, docs/provider-apis.md
§1.5; docs/reliability.md "Webhooks"), so each provider is pulled periodically (beat) and
on demand (``manage.py sync_provider``). The adapter's page cursor is stored after every
page (:class:`ProviderSyncCursor`), so an interrupted pull resumes where it stopped. Each
page is applied in its own transaction; the network call happens outside it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from django.db.models import Q
from django.utils import timezone

from providers_app import ratelimit
from providers_app.health import unavailable_provider_ids
from providers_app.models import Provider, ProviderSyncCursor
from tasks_app.sync import remote_tasks_apply

DEFAULT_SINCE_DAYS = 30


def providers_due(*, minutes: int) -> list[Provider]:
    cutoff = timezone.now() - dt.timedelta(minutes=minutes)
    down = unavailable_provider_ids()
    return list(
        Provider.objects.exclude(id__in=down).filter(
            Q(sync_cursor__isnull=True) | Q(sync_cursor__finished_at__lt=cutoff) | Q(sync_cursor__finished_at=None)
        )
    )


def provider_pull(
    *,
    provider: Provider,
    since: dt.datetime | None,
    open_only: bool = True,
    dry_run: bool = False,
    restart: bool = False,
    wait_for_budget: bool = False,
    on_page: Callable[[int, dict[str, int]], None] | None = None,
    deadline: float | None = None,
) -> dict[str, int]:
    """Pull every page of ``provider``'s tasks; return outcome counts (see ``remote_change_apply``).

    ``since``: adopt unknown open tasks created at or after it (default: the start of the
    previous pull, else 30 days back). Resumes a pull left unfinished unless ``restart``.
    A dry run reads every page and stores nothing (not even the cursor).
    ``deadline`` (a ``time.monotonic()`` value): stop after the page that passes it, reporting
    ``paused``, and leave the cursor for the next pull to resume from (the beat job's time budget).
    """
    from providers_app.adapters import get_adapter

    state, _ = ProviderSyncCursor.objects.get_or_create(provider=provider)
    now = timezone.now()
    resume = not restart and not dry_run and state.cursor and state.finished_at is None
    if since is None:
        since = state.since if resume else (state.started_at or now - dt.timedelta(days=DEFAULT_SINCE_DAYS))
    cursor = state.cursor if resume else None
    if not dry_run and not resume:
        state.since, state.started_at, state.finished_at, state.pages, state.cursor = since, now, None, 0, ""
        state.save()
    adapter = get_adapter(provider)
    totals: dict[str, int] = {}
    pages = 0
    while True:
        # Each page spends the credential's shared budget like a delivery. The beat job stops
        # and resumes from the stored cursor next time; the command waits.
        wait = ratelimit.take(provider)
        while wait > 0:
            if not wait_for_budget:
                totals["pages"] = pages
                totals["paused"] = 1
                return totals
            time.sleep(min(wait, 60))
            wait = ratelimit.take(provider)
        page = adapter.list(cursor=cursor)  # network: outside any transaction
        raws = [dict(item.raw) or {"id": item.external_id, "name": item.title} for item in page.items]
        counts = remote_tasks_apply(provider=provider, raws=raws, since=since if open_only else None, dry_run=dry_run)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        pages += 1
        cursor = page.next_cursor
        if not dry_run:
            state.cursor, state.pages = cursor or "", state.pages + 1
            state.save(update_fields=["cursor", "pages", "updated_at"])
        if on_page:
            on_page(len(raws), counts)
        if not cursor:
            break
        if deadline is not None and time.monotonic() >= deadline:
            totals["pages"] = pages
            totals["paused"] = 1
            return totals
    if not dry_run:
        state.finished_at = timezone.now()
        state.save(update_fields=["finished_at", "updated_at"])
    totals["pages"] = pages
    return totals
