"""Refuse provider URLs that point into our own network (SSRF).

A provider's ``base_url`` is operator input, and the webhook/adapter code will
send credentials there. An address on the loopback, private, link-local or
otherwise non-public ranges is refused unless ``ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS``
is set (the demo sets it, because its sandbox listens on 127.0.0.1).

The check resolves the host name, so ``localhost``, decimal/hex IPv4 spellings and
IPv4-mapped IPv6 addresses are caught as well as plain literals. A name that does
not resolve at validation time is let through here; the HTTP layer checks again
when it opens a session.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


def _non_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def plain_http_problem(url: str) -> str | None:
    """A message when ``url`` is plain HTTP to a host not in ``ARCHANGEL_PLAIN_HTTP_HOSTS``.

    Provider calls carry credentials: only HTTPS (verified, TLS 1.3 by default; see
    providers_app/http.py) unless an operator lists the host, as the demo does for the
    local sandbox."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return None
    allowed = {h.lower() for h in getattr(settings, "ARCHANGEL_PLAIN_HTTP_HOSTS", [])}
    if "*" in allowed or (parts.hostname or "").lower() in allowed:
        return None
    return "Must use https; plain http is only allowed for hosts listed in ARCHANGEL_PLAIN_HTTP_HOSTS."


def private_url_problem(url: str) -> str | None:
    """A message when ``url`` points at a non-public address and that is not allowed, else None."""
    if getattr(settings, "ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS", False):
        return None
    host = urlsplit(url).hostname
    if not host:
        return "Must be an http(s) URL with a host."
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return None
    if any(_non_public(info[4][0]) for info in infos):
        return (
            "Points at a private, loopback or otherwise non-public address; "
            "set ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS=true to allow it (for a local sandbox or proxy)."
        )
    return None
