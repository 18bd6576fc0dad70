"""The one HTTP choke point between Archangel and the providers.

Every adapter sends its requests through :class:`ProviderHttp`: a pooled
``requests.Session`` per provider account (connections are reused across calls
and threads), explicit connect and read timeouts from settings, defensive
parsing of whatever comes back, and one mapping of transport failures and status
codes to the typed errors of :mod:`providers_app.adapters.base`:

================================  ==============================================================
what happened                     error
================================  ==============================================================
connect failed / timed out        TransientError (retryable; the request was never sent)
read timeout, reset after send    TransientError with ``outcome_unknown=True`` on writes
5xx                               TransientError (trips the breaker; outcome unknown on writes)
2xx labelled JSON that is not     TransientError (outcome unknown on writes)
429                               RateLimited with the parsed hint (providers_app/hints.py)
401 / 403                         AuthError
404                               NotFound
400 / 422                         ValidationFailed
410                               PermanentError (Todoist: REST v2 is gone, use API v1)
other 4xx                         PermanentError (408 is a timeout: TransientError)
================================  ==============================================================

Secrets never leave this module in a log line or an error message: tokens travel
in headers (ClickUp, Todoist) or, for Trello, in the ``key``/``token`` query
parameters (docs/provider-apis.md §2.1), which :func:`redact_url` masks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.ssl_ import create_urllib3_context

from archangel.metrics import time_provider_call
from providers_app.adapters.base import (
    AuthError,
    NotFound,
    PermanentError,
    ProviderError,
    RateLimited,
    TransientError,
    ValidationFailed,
)
from providers_app.hints import retry_after_from
from providers_app.netguard import plain_http_problem, private_url_problem

logger = logging.getLogger(__name__)

# Query parameters whose values are credentials (Trello's key and token, §2.1) or look like them.
SECRET_PARAMS = frozenset({"key", "token", "api_key", "api_token", "access_token", "client_secret", "secret"})
MASK = "***"
# Connections kept per provider account; a drain sends a batch concurrently at most this wide.
POOL_SIZE = 32
_DETAIL_MAX = 300


def redact_url(url: str) -> str:
    """``url`` with the values of credential query parameters replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.query:
        return url
    query = [(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def parse_body(response: requests.Response) -> Any:
    """JSON when the body is JSON (an object, a list, null...), else its text; None when empty."""
    content = response.content or b""
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
        return content.decode(response.encoding or "utf-8", errors="replace")


def _labelled_json(response: requests.Response) -> bool:
    ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def error_detail(body: Any) -> str:
    """A short human message out of any provider's error body (JSON shapes of §1.7, §2.7, §3.7, or text)."""
    if isinstance(body, Mapping):
        parts = []
        for key in ("err", "error", "message", "error_tag", "ECODE"):
            value = body.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value) not in parts:
                parts.append(str(value))
        text = " / ".join(parts) if parts else ""
    elif isinstance(body, str):
        text = " ".join(body.split())
    else:
        text = ""
    return text[:_DETAIL_MAX]


@dataclass(frozen=True)
class HttpResult:
    status_code: int
    data: Any
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


_local = threading.local()


def last_status() -> int | None:
    """The HTTP status of the last answer this thread received (for the outbox's attempt log)."""
    return getattr(_local, "status", None)


# --- Sessions: one pool per provider account and configuration ---------------------------------------
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TLSFloorAdapter(HTTPAdapter):
    """Verified HTTPS with a minimum TLS version (``ARCHANGEL_PROVIDER_TLS_MIN``, default 1.3:
    ClickUp, Trello and Todoist all offer it; 1.2 only by explicit setting)."""

    def init_poolmanager(self, *args, **kwargs):
        context = create_urllib3_context()  # CERT_REQUIRED with hostname checks, as requests uses
        context.minimum_version = TLS_VERSIONS[settings.ARCHANGEL_PROVIDER_TLS_MIN]
        kwargs["ssl_context"] = context
        return super().init_poolmanager(*args, **kwargs)


_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


def fingerprint(*parts: Any) -> str:
    """A short digest of configuration values (credentials included) that never reveals them."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def session_for(
    cache_key: str, *, base_url: str, headers: Mapping[str, str], params: Mapping[str, str]
) -> requests.Session:
    """The pooled session of one provider account; a changed configuration gets a new key and session."""
    session = _sessions.get(cache_key)
    if session is not None:
        return session
    # Credentials must not be sent into our own network (SSRF): the config check may have
    # met a name that did not resolve then, so look again before the first request.
    if problem := plain_http_problem(base_url) or private_url_problem(base_url):
        raise PermanentError(f"provider base_url refused: {problem}")
    with _sessions_lock:
        session = _sessions.get(cache_key)
        if session is None:
            session = requests.Session()
            # No automatic retries: the outbox decides when to try again, with backoff and
            # a look for the task an attempt of unknown outcome may have made.
            adapter = TLSFloorAdapter(pool_connections=2, pool_maxsize=POOL_SIZE, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"Accept": "application/json", "User-Agent": "archangel/1.0", **headers})
            # Proxy settings from the environment, read once here rather than on every request
            # (requests scans os.environ per call when trust_env is on: ~1.4 ms a delivery).
            session.proxies = requests.utils.get_environ_proxies(base_url)
            session.trust_env = False
            session.params = dict(params)
            _sessions[cache_key] = session
    return session


def clear_sessions() -> None:
    with _sessions_lock:
        for session in _sessions.values():
            session.close()
        _sessions.clear()


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether a connection error happened before any byte of the request left (so no effect)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


# A hook that lets an adapter read a provider quirk into a better error (or None for the default).
Classifier = Callable[[int, Any, str], ProviderError | None]


class ProviderHttp:
    """Requests to one provider account. Thread-safe; cheap to build (the session is cached)."""

    def __init__(
        self,
        *,
        provider_type: str,
        base_url: str,
        account_key: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        secrets: tuple[str, ...] = (),
        classify: Classifier | None = None,
        default_retry_after: float | None = None,
    ) -> None:
        self.provider_type = provider_type
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._params = dict(params or {})
        self._secrets = tuple(s for s in secrets if s)
        self._classify = classify
        self.default_retry_after = default_retry_after
        self._cache_key = f"{account_key}:{fingerprint(self.base_url, self._headers, self._params)}"

    @property
    def session(self) -> requests.Session:
        return session_for(self._cache_key, base_url=self.base_url, headers=self._headers, params=self._params)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, Mapping):
            return {self._scrub(str(k)): self._scrub_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub_value(v) for v in value]
        return value

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResult:
        """Send one request; return the parsed 2xx answer or raise a typed ProviderError."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        shown = f"{self.provider_type} {method} {self._scrub(redact_url(url))}"
        writes = method.upper() not in {"GET", "HEAD", "OPTIONS"}
        timeout = (settings.PROVIDERS["CONNECT_TIMEOUT"], settings.PROVIDERS["READ_TIMEOUT"])
        _local.status = None
        with time_provider_call(self.provider_type, operation) as call:
            try:
                response = self.session.request(
                    method, url, params=params, json=json_body, headers=headers, timeout=timeout
                )
            except requests.exceptions.ConnectionError as exc:
                sent = not _never_sent(exc)
                call.outcome = "timeout" if isinstance(exc, requests.exceptions.ConnectTimeout) else "connection_error"
                raise TransientError(
                    f"{shown} failed: {type(exc).__name__}"
                    + (" after the request was sent; its outcome is unknown" if sent and writes else ""),
                    outcome_unknown=sent and writes,
                ) from None
            except requests.exceptions.Timeout as exc:  # ReadTimeout: the request was sent
                call.outcome = "timeout"
                raise TransientError(
                    f"{shown} timed out waiting for the answer ({type(exc).__name__})"
                    + ("; its outcome is unknown" if writes else ""),
                    outcome_unknown=writes,
                ) from None
            except requests.exceptions.RequestException as exc:
                # Broken chunked bodies and the like: the provider may have acted.
                call.outcome = "connection_error"
                raise TransientError(f"{shown} failed: {type(exc).__name__}", outcome_unknown=writes) from None
            body = parse_body(response)
            status = _local.status = response.status_code
            if 200 <= status < 300:
                if isinstance(body, str) and _labelled_json(response):
                    # A success whose JSON was cut short (a proxy, a dropped connection): reading it as
                    # "no tasks" would make a create's marker lookup miss and create a second task.
                    raise TransientError(
                        f"{shown} answered {status} with a malformed JSON body"
                        + ("; its outcome is unknown" if writes else ""),
                        status_code=status,
                        outcome_unknown=writes,
                    )
                return HttpResult(status, body, response.headers)
            call.outcome = "rate_limited" if status == 429 else "server_error" if status >= 500 else "client_error"
            raise self._error(status, body, response.headers, shown=shown, writes=writes)

    def _error(self, status: int, body: Any, headers: Mapping[str, str], *, shown: str, writes: bool) -> ProviderError:
        detail = self._scrub(error_detail(body))
        message = f"{shown} answered {status}" + (f": {detail}" if detail else "")
        if self._classify is not None:
            special = self._classify(status, body, message)
            if special is not None:
                return special
        # The body travels with the error (hints, Trello's 429 scope); a provider or proxy may
        # echo the credentials it was sent, so they are scrubbed from it as from the message.
        body_for_error = self._scrub_value(body) if isinstance(body, Mapping | list) else None
        if status == 429:
            hint = retry_after_from(headers, body)
            return RateLimited(
                message,
                status_code=status,
                retry_after=hint if hint is not None else self.default_retry_after,
                body=body_for_error,
            )
        if status >= 500:
            # A 5xx says nothing about whether a write took effect (a gateway may time out after it did).
            return TransientError(message, status_code=status, outcome_unknown=writes, body=body_for_error)
        if status == 408:
            return TransientError(message, status_code=status, outcome_unknown=writes, body=body_for_error)
        cls: type[ProviderError] = {
            401: AuthError,
            403: AuthError,
            404: NotFound,
            400: ValidationFailed,
            422: ValidationFailed,
        }.get(status, PermanentError)
        return cls(message, status_code=status, body=body_for_error)
