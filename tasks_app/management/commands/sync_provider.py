"""manage.py sync_provider PROVIDER [--since DATE] [--dry-run] [--all] [--restart]

Backfill and reconciliation: read every page of a provider's tasks through its adapter
and apply them as webhooks are applied (issue 5 §3). Unknown open tasks created since
``--since`` (default: the start of the previous pull, else 30 days back) are adopted;
known tasks get the changes they missed. Resumable: the page cursor is stored after
each page, and an interrupted pull continues from it unless ``--restart``.
"""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from providers_app.models import Provider
from tasks_app.reconcile import provider_pull


def _since(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    when = parse_datetime(value)
    if when is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since must be a date (2026-11-01) or an ISO date-time, got {value!r}")
        when = dt.datetime.combine(day, dt.time.min)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Pull a provider's tasks page by page: adopt open tasks created since a date, apply missed changes."

    def add_arguments(self, parser):
        parser.add_argument("provider", help="provider name or id")
        parser.add_argument("--since", help="adopt tasks created on or after this date (default: last pull / 30 days)")
        parser.add_argument("--dry-run", action="store_true", help="read and compare everything, store nothing")
        parser.add_argument("--all", action="store_true", help="adopt every open task, whatever its creation date")
        parser.add_argument("--restart", action="store_true", help="start from the first page, not the stored cursor")

    def handle(self, *args, provider, since, dry_run, all, restart, **options):
        found = Provider.objects.filter(name=provider).first()
        if found is None:
            try:
                found = Provider.objects.filter(pk=provider).first()
            except Exception:  # noqa: BLE001 - not a UUID
                found = None
        if found is None:
            raise CommandError(f"No provider named or with id {provider!r}.")
        with tqdm(unit=" tasks", desc=f"{found.name}", disable=options.get("verbosity", 1) == 0) as bar:

            def on_page(count, outcomes):
                bar.update(count)
                bar.set_postfix({k: v for k, v in outcomes.items() if v}, refresh=False)

            totals = provider_pull(
                provider=found,
                since=_since(since),
                open_only=not all,
                dry_run=dry_run,
                restart=restart,
                wait_for_budget=True,
                on_page=on_page,
            )
        summary = ", ".join(f"{k} {v}" for k, v in sorted(totals.items()))
        self.stdout.write(("[dry run] " if dry_run else "") + f"{found.name}: {summary}")
