"""``GET /metrics``: django-prometheus's metrics, the domain metrics and the outbox gauges, for Prometheus only.

Metrics reveal traffic, backlog and provider health, so production restricts them
(``METRICS_ALLOWED_NETWORKS``, ``METRICS_TOKEN``; development leaves them open):

- a request with ``Authorization: Bearer <METRICS_TOKEN>`` is allowed from anywhere;
- otherwise the client address must be in ``METRICS_ALLOWED_NETWORKS`` (private
  networks by default), AND the request must not have come through a proxy: behind the
  TLS proxy every public request arrives from the proxy's private address, so a request
  carrying ``X-Forwarded-For``/``Forwarded``/``X-Real-IP`` counts as external.
  Prometheus scrapes the container directly and sends none of them.

Refused requests get a plain 403 (this is not part of the JSON API under ``/api/``).
"""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from archangel.metrics import metrics_registry
from archangel.tracing import untraced

_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _has_token(request) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return False
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _from_allowed_network(request) -> bool:
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks is None:  # open: the development default, or "*"
        return True
    if any(header in request.META for header in _PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network) for network in networks)


def metrics_allowed(request) -> bool:
    return _has_token(request) or _from_allowed_network(request)


@require_safe
def metrics_view(request):
    if not metrics_allowed(request):
        return HttpResponseForbidden("Metrics are not available to this client.\n", content_type="text/plain")
    # The outbox queries run at every scrape (every 15 s): they would bury real traces.
    with untraced():
        body = generate_latest(metrics_registry(outbox=True))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
