"""API middleware: the request body cap, and the error envelope for errors that do not
come from DRF views (Django's debug 404 page, a disallowed Host header...).

Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not apply to DRF's JSON parsing
(docs/reliability.md, "Webhooks"), so an oversized body is refused here from its
Content-Length with a 413 in the API's error envelope.
"""

import time
from http import HTTPStatus

from django.conf import settings
from django.urls import Resolver404, resolve

from archangel.api import json_error
from archangel.metrics import count_webhook


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error(400, "invalid", "Content-Length is not a number.")
            # Webhooks have a tighter cap: anyone can reach them without a token.
            limit = settings.ARCHANGEL[
                "WEBHOOK_MAX_BODY_BYTES" if request.path.startswith("/api/webhooks/") else "MAX_BODY_BYTES"
            ]
            if length > limit:
                if request.path.startswith("/api/webhooks/"):
                    count_webhook(request.path.split("/")[3], "too_large")
                return json_error(413, "too_large", f"Request body is {length} bytes; the limit is {limit}.")
        return self.get_response(request)


_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "throttled",
    500: "server_error",
}


class ApiErrorEnvelopeMiddleware:
    """Any 4xx/5xx under /api/ that is not already JSON becomes the error envelope."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            status = response.status_code
            code = _CODES.get(status, "error")
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
            replacement = json_error(status, code, f"{phrase}.")
            for header in ("Allow", "WWW-Authenticate", "Retry-After"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response


WEBHOOK_URL_NAMES = frozenset({"webhook", "webhook-provider"})


class WebhookFastPathMiddleware:
    """Provider webhooks skip the middleware they have no use for.

    A delivery carries no session, no cookie, no user and no CSRF token (the signature is its
    authentication), is never a static file and is not audited (it writes only its own
    ``WebhookDelivery`` row), yet the rest of the stack cost as much Python per request as the
    intake view itself (docs/benchmarks.md, "Webhook intake"). Placed after the request id, the
    error envelope, the body cap (413 before parsing) and ``SecurityMiddleware`` (HTTPS redirect,
    security headers), and inside django-prometheus's and OpenTelemetry's outer middleware
    (request totals, traces), this calls the webhook view directly and leaves WhiteNoise,
    sessions, CommonMiddleware, CSRF, authentication, the audit context, messages and
    clickjacking out. Of django-prometheus's per-view metrics it records those the dashboard and
    alerts read (responses by status, by status/view/method, latency by view). Any other path,
    including one under ``/api/webhooks/`` that no webhook route matches, goes through the
    whole stack.
    """

    def __init__(self, get_response):
        from django_prometheus.middleware import PrometheusAfterMiddleware

        self.get_response = get_response
        self._prometheus = PrometheusAfterMiddleware(get_response)
        self._metrics = self._prometheus.metrics

    def __call__(self, request):
        if request.path_info.startswith("/api/webhooks/"):
            try:
                match = resolve(request.path_info, getattr(request, "urlconf", None))
            except Resolver404:
                match = None
            if match is not None and match.url_name in WEBHOOK_URL_NAMES:
                return self._webhook(request, match)
        return self.get_response(request)

    def _webhook(self, request, match):
        request.resolver_match = match
        metrics, view, method = self._metrics, match.view_name, self._prometheus._method(request)
        started = time.perf_counter()
        try:
            response = match.func(request, *match.args, **match.kwargs)
        except Exception as exc:
            metrics.exceptions_by_type.labels(type=type(exc).__name__).inc()
            metrics.exceptions_by_view.labels(view=view).inc()
            raise
        finally:
            metrics.requests_latency_by_view_method.labels(view=view, method=method).observe(
                time.perf_counter() - started
            )
        status = str(response.status_code)
        metrics.responses_by_status.labels(status=status).inc()
        metrics.responses_by_status_view_method.labels(status=status, view=view, method=method).inc()
        # What CommonMiddleware would add: a length, so the connection can be kept alive.
        if not response.streaming and not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response
