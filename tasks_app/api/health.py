"""GET /api/health: is everything this process depends on reachable? No authentication."""

import logging
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from outbox_app import selectors as outbox_selectors
from providers_app import status as provider_status

logger = logging.getLogger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    key = "archangel:health"
    cache.set(key, "ok", 10)
    if cache.get(key) != "ok":
        raise RuntimeError("value written was not read back")


@lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def _check_broker() -> None:
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).ping()
    else:
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        # A unique name: concurrent checks must not remove each other's probe.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-"):
            pass


# Counting stops here: a health check must stay cheap under any backlog.
HEALTH_COUNT_CAP = 1000

CHECKS = {"database": _check_database, "broker": _check_broker, "cache": _check_cache}

HealthSerializer = inline_serializer(
    "Health",
    {
        "status": serializers.ChoiceField(choices=["ok", "down"]),
        "checks": serializers.DictField(child=serializers.DictField(), help_text="Per dependency: ok, latency, error."),
        "down": serializers.ListField(child=serializers.CharField(), help_text="Names of what is down."),
        "outbox": serializers.DictField(required=False, help_text="Backlog by status and oldest pending age."),
        "providers": serializers.DictField(
            required=False,
            help_text="Per provider name: type, health_status and circuit breaker state (closed, half-open, open). "
            "An open breaker holds that provider's deliveries back; it does not make the system down.",
        ),
        "time": serializers.DateTimeField(),
    },
)


class HealthView(APIView):
    # No authentication and no throttle: both use the cache, whose outage this view reports.
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(summary="System health", responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request):
        checks, down = {}, []
        for name, check in CHECKS.items():
            started = time.perf_counter()
            try:
                check()
                checks[name] = {"ok": True}
            except Exception as exc:  # noqa: BLE001 - any failure means "down"; the type is reported
                checks[name] = {"ok": False, "error": type(exc).__name__}
                down.append(name)
            checks[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        body = {"status": "down" if down else "ok", "checks": checks, "down": down, "time": timezone.now()}
        if "database" not in down:
            body["outbox"] = outbox_selectors.outbox_backlog(cap=HEALTH_COUNT_CAP)
            try:
                body["providers"] = provider_status.breaker_summary()
            except Exception:
                logger.exception("could not read the providers' breaker states for /api/health")
        return Response(body, status=503 if down else 200)
