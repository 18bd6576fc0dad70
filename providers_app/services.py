"""Writes to providers. Secret config keys are encrypted before they reach the database."""

import atexit
import contextlib
import logging
import os
import threading
import time
import uuid
from typing import Any

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from archangel.db import insert_rows
from archangel.errors import InvalidInput
from providers_app import metadata
from providers_app.config import SPECS, validate_config
from providers_app.models import Provider, WebhookDelivery

logger = logging.getLogger(__name__)


# A client may send back the placeholder it read ({"set": true}) for a secret key:
# that means "leave it as it is", so a GET -> PUT round trip never erases a token.
def _is_placeholder(value: Any) -> bool:
    return isinstance(value, dict) and set(value) <= {"set"}


def provider_check_config(*, provider: Provider | None, provider_type: str, config: Any, partial: bool) -> None:
    """Raise InvalidInput naming each bad ``config.<key>`` if the change would leave an invalid config."""
    _merged_config(provider, provider_type, config, partial=partial)


def _merged_config(provider: Provider | None, provider_type: str, config: Any, *, partial: bool) -> tuple[dict, dict]:
    """Return (full config after the change, the changes to apply)."""
    if not isinstance(config, dict):
        raise InvalidInput({"config": ["Must be a JSON object."]})
    secret_keys = SPECS[provider_type].secret
    current = provider.full_config() if provider is not None else {}
    changes = {k: v for k, v in config.items() if not (k in secret_keys and _is_placeholder(v))}
    if provider is not None and not partial:
        # PUT replaces the plain settings; secrets it does not mention are kept,
        # since nobody can read them back to resend them.
        for key in set(current) - set(config) - secret_keys:
            changes[key] = None
    merged = {k: v for k, v in {**current, **changes}.items() if v is not None}
    validate_config(provider_type, changes, require=False)
    validate_config(provider_type, merged, require=True)
    return merged, changes


# What an operator may set. ``degraded`` and ``down`` are the circuit breaker's to say
# (providers_app/breakers.py mirrors it into the row); ``disabled`` takes a provider out of
# routing and delivery until an operator sets ``active`` again.
OPERATOR_HEALTH = (Provider.Health.ACTIVE, Provider.Health.DISABLED)


def _check_operator_health(value: str) -> None:
    if value not in OPERATOR_HEALTH:
        raise InvalidInput(
            {"health_status": ["Only 'active' or 'disabled' can be set; 'degraded' and 'down' follow the breaker."]}
        )


def provider_create(
    *, name: str, type: str, config: Any, weight: int = 100, health_status: str = Provider.Health.ACTIVE
) -> Provider:
    _check_operator_health(health_status)
    _, changes = _merged_config(None, type, config, partial=False)
    provider = Provider(name=name, type=type, weight=weight, health_status=health_status)
    provider.apply_config(changes)
    provider.save()
    return provider


def provider_update(*, provider: Provider, data: dict[str, Any], partial: bool) -> Provider:
    """Change a provider's name, weight, config or (``active`` | ``disabled``) health_status.

    Setting ``active`` on a disabled provider returns it to the health its breaker reports
    (``down`` while the breaker is open: reset the breaker to close it now); on a provider
    that is not disabled it leaves the breaker's verdict as it is.
    """
    if "type" in data and data["type"] != provider.type:
        raise InvalidInput({"type": ["Cannot be changed; create a new provider instead."]})
    # The value it has is always accepted, so a GET -> PUT round trip works whatever the breaker said.
    if "health_status" in data and data["health_status"] != provider.health_status:
        _check_operator_health(data["health_status"])
    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        if "config" in data:
            _, changes = _merged_config(provider, provider.type, data["config"], partial=partial)
            provider.apply_config(changes)
        for name in ("name", "weight"):
            if name in data:
                setattr(provider, name, data[name])
        wanted = data.get("health_status")
        if wanted == Provider.Health.DISABLED:
            provider.health_status = Provider.Health.DISABLED
        elif wanted == Provider.Health.ACTIVE and provider.health_status == Provider.Health.DISABLED:
            # Back to what its circuit breaker says.
            from providers_app import breakers

            provider.health_status = breakers.health_of(breakers.states([provider.pk])[str(provider.pk)])
        provider.save()  # post_save drops routing's copy of the provider rows (tasks_app/selectors.py)
    if "config" in data:
        # New containers or credentials: what was cached about the old ones may not hold.
        transaction.on_commit(lambda: metadata.invalidate(str(provider.pk)))
    return provider


def provider_metadata_refresh(*, provider: Provider) -> None:
    """Forget the cached metadata of a provider (statuses, lists, labels, projects, user ids):
    its next delivery reads them afresh (providers_app/metadata.py)."""
    metadata.invalidate(str(provider.pk))


# --- webhook intake ----------------------------------------------------------------------------

# The Celery job that applies a delivery lives in tasks_app (which owns tasks); it is named,
# not imported, so providers_app keeps no dependency on tasks_app.
WEBHOOK_JOB = "tasks_app.jobs.webhook_process"
WEBHOOK_DRAIN_JOB = "tasks_app.jobs.webhook_drain"
# Set (SET NX in the shared cache) while a drain is queued and not yet started: deliveries
# committed meanwhile need no message of their own, the queued drain will read them. The drain
# deletes it before it reads, so a delivery committed after that queues the next drain.
WAKEUP_KEY = "webhooks:drain-wakeup"
# If a queued drain is lost, the flag expires and the next delivery queues another; the sweep
# picks up what arrived in between.
WAKEUP_TTL_SECONDS = 30

# The intake's one statement, written out once: building it from the model for every delivery
# (insert_rows) cost more Python than PostgreSQL took to run it. Defaults as the model has them.
_DELIVERY_INSERT = (
    f"INSERT INTO {WebhookDelivery._meta.db_table} "  # noqa: S608 - a table name from the model, values are parameters
    "(id, provider_id, dedup_key, event, headers, payload, status, attempts, error,"
    " received_at, created_at, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, 'received', 0, '', %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id"
)


def webhook_store(*, target, event: str, dedup_key: str, headers: dict, payload: dict) -> tuple[str | None, bool]:
    """Store one authentic delivery once; return ``(id, created)``.

    ``INSERT ... ON CONFLICT DO NOTHING`` on (provider, dedup_key): a redelivery writes
    nothing and wakes nothing. A new row wakes a drain after commit (coalesced per process,
    :class:`_DrainWaker`); if that is lost (broker down, process killed) the row stays
    ``received`` and the periodic sweep sends it, so no delivery is lost (docs/reliability.md:
    PostgreSQL is the truth, messages are wake-ups).
    """
    now = timezone.now()
    delivery_id = uuid.uuid4()
    connection = connections["default"]
    if connection.vendor != "postgresql":
        row = WebhookDelivery(
            id=delivery_id,
            provider_id=target.id,
            dedup_key=dedup_key,
            event=event,
            headers=headers,
            payload=payload,
            received_at=now,
        )
        created = bool(insert_rows([row], skip_conflicts=True))
    else:
        params = (delivery_id, target.id, dedup_key, event, Jsonb(headers), Jsonb(payload), now, now, now)
        created = _execute_once_more_on_a_dead_connection(connection, _DELIVERY_INSERT, params)
    if not created:
        return None, False
    # One statement, so no explicit transaction: in autocommit it commits by itself (a BEGIN
    # and COMMIT round trip fewer on the hot path); inside a caller's transaction on_commit
    # still waits for that transaction to commit.
    transaction.on_commit(drain_waker.poke)
    return str(delivery_id), True


def _execute_once_more_on_a_dead_connection(connection, sql: str, params) -> bool:
    """Run the INSERT on the psycopg connection itself: True if it wrote a row.

    Django's cursor would first run its per-request health check (``SELECT 1``: a round trip
    as long as the INSERT's own) and then quote every value into the SQL text. Instead a
    connection found dead (PostgreSQL restarted, an idle connection cut) is closed and the
    statement sent once more on a new one; the unique key makes a repeat harmless even if
    the first one did reach the database.
    """
    for attempt in (1, 2):
        connection.ensure_connection()
        try:
            # Server-side binding, prepared once per connection: parameters travel apart from
            # the statement (no quoting of the payload into SQL text in Python) and PostgreSQL
            # parses and plans the INSERT once instead of for every delivery.
            # (A cursor made here is not the traced one OpenTelemetry's psycopg instrumentation
            # installs: with tracing on, the INSERT's time shows in the request's span, not in
            # a span of its own.)
            with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(sql, params, prepare=True)
                return cursor.fetchone() is not None
        except (OperationalError, InterfaceError):
            if attempt == 2 or not connection.get_autocommit() or connection.is_usable():
                raise
            connection.close()
    return False  # not reached


class _DrainWaker:
    """Queues a drain after deliveries commit, from one background thread per process.

    A request only sets an event; the thread waits ``WEBHOOK_WAKEUP_DELAY_MS`` to gather the
    burst, clears the event and calls :func:`webhook_wakeup` (SET NX in the cache, and a Celery
    message when no drain is queued). Every delivery's event is set after its commit and is
    followed by at least one wake-up that starts after it, so the drain-flag protocol above
    holds as if each request had called ``webhook_wakeup`` itself; the Redis round trip (as
    long as the INSERT) leaves the request path and is paid once per burst instead of once per
    delivery. A process that dies in between leaves its rows to the sweep. With the delay set
    to 0 the wake-up runs inline, in the request (the tests' deterministic mode).
    """

    def __init__(self) -> None:
        self._pending = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def poke(self) -> None:
        delay = settings.ARCHANGEL["WEBHOOK_WAKEUP_DELAY_MS"] / 1000
        if delay <= 0:
            webhook_wakeup()
            return
        self._pending.set()
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                    # After a fork (gunicorn, Celery prefork) the parent's thread is not here.
                    self._pid = os.getpid()
                    self._thread = threading.Thread(
                        target=self._run, args=(delay,), name="webhook-drain-waker", daemon=True
                    )
                    self._thread.start()
                    atexit.register(self.flush)

    def flush(self) -> bool:
        """Send the pending wake-up now, if any (at exit, and for tests)."""
        if not self._pending.is_set():
            return False
        self._pending.clear()
        return webhook_wakeup()

    def _run(self, delay: float) -> None:
        while True:
            self._pending.wait()
            time.sleep(delay)
            self.flush()


drain_waker = _DrainWaker()


def webhook_wakeup() -> bool:
    """Queue one drain of received deliveries unless one is queued already; never raises.

    One Celery message per delivery cost as much as the INSERT on the intake path; a burst of
    deliveries now shares one drain (docs/benchmarks.md, "Webhook intake").
    """
    from django.core.cache import cache

    from archangel.celery import app

    try:
        if not cache.add(WAKEUP_KEY, 1, timeout=WAKEUP_TTL_SECONDS):
            return False
        app.send_task(WEBHOOK_DRAIN_JOB, retry=False, expires=WAKEUP_TTL_SECONDS * 10)
        return True
    except Exception as exc:  # noqa: BLE001 - the delivery is committed; the sweep will process it
        logger.warning("could not queue a webhook drain (the sweep will process): %s", type(exc).__name__)
        return False


def webhook_enqueue(*, delivery_id: str) -> bool:
    """Send the processing job; a broker failure is logged, never raised (the sweep catches up)."""
    from archangel.celery import app

    try:
        # retry=False: with Redis down, fail in milliseconds instead of holding the request.
        app.send_task(WEBHOOK_JOB, args=[delivery_id], retry=False)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the row is safe in PostgreSQL
        logger.warning(
            "webhook delivery %s stored but its job could not be sent (%s); the sweep will process it",
            delivery_id,
            type(exc).__name__,
        )
        return False
    return True


# --- webhook registration (issue 5 §4) ----------------------------------------------------------

CLICKUP_TASK_EVENTS = [
    # docs/provider-apis.md §1.5: the task events; list/folder/space/goal events are not needed.
    "taskCreated",
    "taskUpdated",
    "taskDeleted",
    "taskPriorityUpdated",
    "taskStatusUpdated",
    "taskAssigneeUpdated",
    "taskDueDateUpdated",
    "taskMoved",
]


def webhook_callback_url(*, provider: Provider, base_url: str | None = None) -> str:
    """Where the provider should post: the long form, which names the account."""
    from django.conf import settings

    root = (base_url or settings.ARCHANGEL["PUBLIC_URL"]).rstrip("/")
    if not root:
        raise InvalidInput({"url": ["Set ARCHANGEL_PUBLIC_URL (or pass --url): the address providers can reach."]})
    return f"{root}/api/webhooks/{provider.type}/{provider.pk}"


def webhook_register(*, provider: Provider, base_url: str | None = None) -> dict[str, Any]:
    """Create the provider's webhook and store what verifying its deliveries needs.

    ClickUp: ``POST /team/{team_id}/webhook``; the answer's ``secret`` signs every delivery
    and is stored encrypted with the webhook id (§1.5). Trello: ``POST /webhooks`` on the
    board; the callback URL is stored verbatim because Trello signs body + that exact
    string (§2.5), and Trello checks it with a HEAD first. Todoist webhooks belong to the
    app and are set up in its console (§3.5; see the README). The HTTP call happens
    before (and outside) the transaction that stores the result.
    """
    from providers_app.adapters import get_adapter
    from providers_app.config import CLICKUP, TRELLO

    if provider.type not in (CLICKUP, TRELLO):
        raise InvalidInput(
            {"type": ["Todoist webhooks are configured per app in its console; see the README (Webhooks)."]}
        )
    callback = webhook_callback_url(provider=provider, base_url=base_url)
    http = get_adapter(provider).http
    config = provider.full_config()
    if provider.type == CLICKUP:
        team_id = config.get("team_id")
        if not team_id:
            raise InvalidInput({"config.team_id": ["Needed to register a ClickUp webhook."]})
        body = {"endpoint": callback, "events": CLICKUP_TASK_EVENTS, "list_id": config["list_id"]}
        data = http.request("POST", f"/team/{team_id}/webhook", operation="register_webhook", json_body=body).data
        hook = (data or {}).get("webhook") or {}
        webhook_id, secret = str((data or {}).get("id") or hook.get("id") or ""), hook.get("secret")
        if not webhook_id or not secret:
            raise InvalidInput({"webhook": ["ClickUp's answer carried no webhook id or secret."]})
        changes = {"webhook_id": webhook_id, "webhook_secret": secret}
    else:
        params = {"callbackURL": callback, "idModel": config["board_id"], "description": f"Archangel {provider.name}"}
        data = http.request("POST", "/webhooks", operation="register_webhook", params=params).data
        webhook_id = str((data or {}).get("id") or "")
        if not webhook_id:
            raise InvalidInput({"webhook": ["Trello's answer carried no webhook id."]})
        changes = {"webhook_id": webhook_id, "callback_url": callback}
    provider_update(provider=provider, data={"config": changes}, partial=True)
    return {"webhook_id": webhook_id, "callback_url": callback}


def webhook_unregister(*, provider: Provider) -> bool:
    """Delete the provider's webhook (a 404 means it is gone already) and forget its id."""
    from providers_app.adapters import get_adapter
    from providers_app.adapters.base import NotFound
    from providers_app.config import CLICKUP, TRELLO

    webhook_id = provider.config.get("webhook_id")
    if provider.type not in (CLICKUP, TRELLO):
        raise InvalidInput({"type": ["Todoist webhooks are removed in the app console; see the README."]})
    if not webhook_id:
        return False
    path = f"/webhook/{webhook_id}" if provider.type == CLICKUP else f"/webhooks/{webhook_id}"
    # Already deleted at the provider (or never there): forgetting it is all that is left.
    with contextlib.suppress(NotFound):
        get_adapter(provider).http.request("DELETE", path, operation="unregister_webhook")
    changes: dict[str, Any] = {"webhook_id": None}
    if provider.type == CLICKUP:
        changes["webhook_secret"] = None
    provider_update(provider=provider, data={"config": changes}, partial=True)
    return True
