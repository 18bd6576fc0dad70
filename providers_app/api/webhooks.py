"""POST /api/webhooks/{clickup,trello,todoist}[/<provider_id>]: the providers call these.

The signature is the authentication (docs/provider-apis.md §4), so these are plain
Django views outside DRF's token auth and per-token throttling, and as lean as can
be: ClickUp counts a delivery failed after 7 s (§1.5). The body cap (413) is applied
before the view by ``BodySizeLimitMiddleware`` from Content-Length, and again here for
bodies sent without one. Nothing is stored for a delivery whose signature fails.
"""

import json
import logging

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from archangel.api import json_error
from archangel.metrics import count_webhook
from providers_app import selectors, services, webhooks
from providers_app.config import TRELLO

# Refused signatures go to their own logger so they can be routed to a security log.
security_log = logging.getLogger("archangel.security")


def _meta_key(header: str) -> str:
    """Where WSGI puts a request header in ``request.META``."""
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"


# The headers kept with a delivery (webhooks.KEPT_HEADERS), by their META keys.
_KEPT_META = tuple((name, _meta_key(name)) for name in webhooks.KEPT_HEADERS)


def _reject(provider_type: str, status: int, code: str, result: str, message: str) -> HttpResponse:
    count_webhook(provider_type, result)
    return json_error(status, code, message)


@csrf_exempt
def webhook_view(request, provider_type: str, provider_id: str | None = None):
    if provider_type not in webhooks.SIGNATURE_HEADERS:
        message = f"No webhook endpoint for {provider_type!r}."
        return _reject(provider_type, 404, "not_found", "unknown_provider", message)
    if request.method == "HEAD" and provider_type == TRELLO:
        # Trello checks the callback URL with a HEAD when the webhook is created (§2.5):
        # anything but 200 and the webhook is not made. Nothing is signed or stored.
        return HttpResponse(status=200)
    if request.method != "POST":
        response = json_error(405, "method_not_allowed", f"Method {request.method} not allowed.")
        response["Allow"] = "POST, HEAD" if provider_type == TRELLO else "POST"
        return response

    body = request.body
    limit = settings.ARCHANGEL["WEBHOOK_MAX_BODY_BYTES"]
    if len(body) > limit:
        return _reject(provider_type, 413, "too_large", "too_large", f"Request body is over {limit} bytes.")

    # The short form finds the account from the payload, which is read (not trusted)
    # before the signature check: nothing in it is used until the signature holds.
    payload = None
    hints: dict[str, str] = {}
    if provider_id is None:
        try:
            payload = webhooks.parse_body(body)
        except webhooks.PayloadError:
            payload = None
        hints = webhooks.provider_hints(provider_type, payload or {})
    provider_id = str(provider_id) if provider_id is not None else None
    target = selectors.webhook_target(provider_type, provider_id=provider_id, hints=hints)
    if target is None:
        return _reject(provider_type, 404, "not_found", "unknown_provider", f"No {provider_type} provider matches.")

    # From META directly: request.headers would build a dict of every header first.
    header = request.META.get(_meta_key(webhooks.SIGNATURE_HEADERS[provider_type]))
    ok = webhooks.verify_signature(
        provider_type, body=body, header=header, secret=target.secret, callback_url=target.callback_url
    )
    if not ok and header:
        # The cached secret may be stale (rotated or just registered): read it again once.
        fresh = selectors.webhook_target(provider_type, provider_id=provider_id, hints=hints, fresh=True)
        if fresh is not None and (fresh.secret, fresh.callback_url) != (target.secret, target.callback_url):
            target = fresh
            ok = webhooks.verify_signature(
                provider_type, body=body, header=header, secret=target.secret, callback_url=target.callback_url
            )
    if not ok:
        security_log.warning(
            "webhook signature %s: provider %s (%s) from %s, %d bytes",
            "missing" if not header else "rejected",
            target.id,
            provider_type,
            request.META.get("REMOTE_ADDR", "?"),
            len(body),
        )
        return _reject(
            provider_type, 401, "not_authenticated", "bad_signature", "Missing or invalid webhook signature."
        )

    if payload is None:
        try:
            payload = webhooks.parse_body(body)
        except webhooks.PayloadError as exc:
            return _reject(provider_type, 400, "invalid", "invalid", str(exc))
    meta = request.META
    headers = {name: meta[key] for name, key in _KEPT_META if key in meta}
    delivery_id, created = services.webhook_store(
        target=target,
        event=webhooks.event_name(provider_type, payload),
        dedup_key=webhooks.dedup_key(provider_type, payload, headers, body),
        headers=headers,
        payload=payload,
    )
    count_webhook(provider_type, "accepted" if created else "duplicate")
    answer = {"status": "accepted" if created else "duplicate", "id": delivery_id}
    return HttpResponse(json.dumps(answer).encode(), content_type="application/json")
