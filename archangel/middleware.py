"""API middleware: the request body cap, and the error envelope for errors that do not
come from DRF views (Django's debug 404 page, a disallowed Host header...).

Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not apply to DRF's JSON parsing
(docs/reliability.md, "Webhooks"), so an oversized body is refused here from its
Content-Length with a 413 in the API's error envelope.
"""

import time
from http import HTTPStatus

from django.conf import settings
from django.core.handlers.exception import response_for_exception
from django.urls import Resolver404, resolve
from django.utils.module_loading import import_string

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


class FastPathMiddleware:
    """Machine requests skip the middleware they have no use for.

    Two kinds of request carry no session, no cookie and no CSRF token, and are never a static
    file, yet the rest of the stack cost as much Python per request as a small view itself:

    - a **provider webhook** (the signature is its authentication; it is not audited: it writes
      only its own ``WebhookDelivery`` row), docs/benchmarks.md, "Webhook intake";
    - an **API request authenticated by a token**: ``Authorization: Token ...``, no ``Cookie``
      header, to a DRF view. What it needs of the skipped middleware is done here: the audit
      context (``AuditRequestMiddleware``: its writes name its user), an anonymous
      ``request.user`` until DRF authenticates the token (``AuthenticationMiddleware``), the
      rendering of DRF's response, ``X-Frame-Options`` and a ``Content-Length`` (clickjacking,
      ``CommonMiddleware``). DRF views are CSRF-exempt and check CSRF themselves for session
      authentication, which a request without a cookie cannot use; a path that no route matches
      (``APPEND_SLASH``'s case) goes through the whole stack. docs/benchmarks.md, "Ingest".

    Placed after the request id, the error envelope, the body cap (413 before parsing) and
    ``SecurityMiddleware`` (HTTPS redirect, security headers), and inside django-prometheus's and
    OpenTelemetry's outer middleware (request totals, traces), this calls the view directly and
    leaves WhiteNoise, sessions, CommonMiddleware, CSRF, authentication, messages and
    clickjacking out. Of django-prometheus's per-view metrics it records those the dashboard and
    alerts read (responses by status, by status/view/method, latency by view). Anything else
    (a browser with its session, a path under ``/api/webhooks/`` that no webhook route matches)
    goes through the whole stack.
    """

    def __init__(self, get_response):
        from django_prometheus.middleware import PrometheusAfterMiddleware

        from archangel.audit.context import AuditRequestMiddleware

        self.get_response = get_response
        self._prometheus = PrometheusAfterMiddleware(get_response)
        self._metrics = self._prometheus.metrics
        self._audited_api_view = AuditRequestMiddleware(self._api_view)
        self._drf_views: dict = {}  # view function -> whether it is a DRF view
        # With tracing on, OpenTelemetry's middleware (first in the stack) opens the request's span;
        # its view and exception hooks, which name the route and note an error, are called here.
        otel = next((path for path in settings.MIDDLEWARE if path.startswith("opentelemetry.")), None)
        self._otel = import_string(otel)(get_response) if otel else None

    def __call__(self, request):
        path = request.path_info
        webhook = path.startswith("/api/webhooks/")
        if webhook or (
            request.META.get("HTTP_AUTHORIZATION", "")[:6].lower() == "token " and not request.META.get("HTTP_COOKIE")
        ):
            request.get_host()  # CommonMiddleware's check: a Host outside ALLOWED_HOSTS is a 400
            try:
                match = resolve(path, getattr(request, "urlconf", None))
            except Resolver404:
                match = None
            if match is not None:
                if webhook and match.url_name in WEBHOOK_URL_NAMES:
                    return self._direct(request, match, _call_view)
                if not webhook and self._is_drf_view(match.func):
                    return self._direct(request, match, self._audited_api_view, api=True)
        return self.get_response(request)

    def _is_drf_view(self, func) -> bool:
        known = self._drf_views.get(func)
        if known is None:
            from rest_framework.views import APIView

            cls = getattr(func, "cls", None)
            known = self._drf_views[func] = isinstance(cls, type) and issubclass(cls, APIView)
        return known

    @staticmethod
    def _api_view(request):
        from django.contrib.auth.models import AnonymousUser

        request.user = AnonymousUser()  # DRF puts the token's user here once it authenticates
        response = _call_view(request)
        if hasattr(response, "render") and callable(response.render):
            response = response.render()
        if "X-Frame-Options" not in response and not getattr(response, "xframe_options_exempt", False):
            response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
        return response

    def _direct(self, request, match, call, api: bool = False):
        """``call`` answers the request, recorded in the per-view metrics as the whole stack would;
        an exception it raises is answered here as Django would (``response_for_exception``:
        ``got_request_exception``, the 500 handler), so that answer is counted like any other."""
        request.resolver_match = match
        metrics, view, method = self._metrics, match.view_name, self._prometheus._method(request)
        if self._otel is not None:
            self._otel.process_view(request, match.func, match.args, match.kwargs)
        started = time.perf_counter()
        try:
            response = call(request)
        except Exception as exc:  # noqa: BLE001 - answered as Django's own handler answers it
            metrics.exceptions_by_type.labels(type=type(exc).__name__).inc()
            metrics.exceptions_by_view.labels(view=view).inc()
            if self._otel is not None:
                self._otel.process_exception(request, exc)
            response = response_for_exception(request, exc)
            if api and "X-Frame-Options" not in response:
                response["X-Frame-Options"] = settings.X_FRAME_OPTIONS
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


def _call_view(request):
    match = request.resolver_match
    return match.func(request, *match.args, **match.kwargs)
