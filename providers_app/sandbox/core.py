"""The sandbox's engine: requests and responses, rate-limit windows, fault settings and the
bookkeeping tests assert on (creates per reference marker and per request id, requests over a
limit, the effect log).

Standard library only, no Django: the sandbox must start in a thread of a test process or as
its own process on a fresh machine. Every provider fact cited here is from docs/provider-apis.md.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import string
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs

PROVIDERS = ("clickup", "trello", "todoist")

# What the adapters write into every task they create so that a create with an unknown outcome
# can find it again (docs/reliability.md, "Idempotency at the provider"). The adapters own the
# exact format; this pattern accepts the usual spellings (``archangel-ref: KEY``,
# ``[archangel:ref=KEY]``, ``archangel_reference=KEY``) and is configurable
# (``--marker-pattern``, ``POST /_sandbox/config``). Group 1 is the marker.
DEFAULT_MARKER_PATTERN = r"archangel[-_ :]?ref(?:erence)?\s*[:=]\s*([A-Za-z0-9][A-Za-z0-9:._/+=-]*)"


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_now() -> str:
    """RFC 3339 UTC with microseconds, as Todoist writes timestamps (provider-apis §3.4)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1_000_000):06d}Z"


def iso_now_ms() -> str:
    """ISO-8601 UTC with milliseconds, as Trello writes ``dateLastActivity`` (provider-apis §2.4)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


_ALNUM_LOWER = string.ascii_lowercase + string.digits
_ALNUM = string.ascii_letters + string.digits
# Ids of sandbox objects need to be unique and shaped right, not unguessable: a seeded-once
# Mersenne Twister is ten times cheaper than ``secrets`` per character.
_ids = random.Random(secrets.randbits(64))


def clickup_id() -> str:
    """Short lowercase alphanumeric, like ClickUp's ``9hx`` / ``86b1x2y3z`` (provider-apis §1.4)."""
    return "86" + "".join(_ids.choices(_ALNUM_LOWER, k=7))


def trello_id() -> str:
    """24 hex characters (provider-apis §2.4)."""
    return f"{_ids.getrandbits(96):024x}"


def todoist_id() -> str:
    """Opaque 16-character string like ``6X7rM8997g3RQmvh`` (provider-apis §0, §3.4)."""
    return "6" + "".join(_ids.choices(_ALNUM, k=15))


class Request:
    """One HTTP request as the providers' handlers see it."""

    __slots__ = ("_params", "body", "headers", "method", "path", "query", "raw_path")

    def __init__(self, method: str, raw_path: str, headers: Any, body: bytes) -> None:
        self.method = method.upper()
        self.raw_path = raw_path
        path, _, qs = raw_path.partition("?")
        self.path = path
        self.query = parse_qs(qs, keep_blank_values=True) if qs else {}
        self.headers = headers  # case-insensitive mapping (email.message.Message or dict with lower keys)
        self.body = body
        self._params: dict[str, Any] | None = None

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None and isinstance(self.headers, dict):
            value = self.headers.get(name.lower())
        return value

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The JSON body, or None when there is none; raises ValueError when it is not JSON."""
        if not self.body:
            return None
        return json.loads(self.body)

    def params(self) -> dict[str, Any]:
        """Query string merged with a form or JSON body, the way Trello accepts its parameters
        "as query params or JSON/form body" (provider-apis §2.3). The body wins over the query."""
        if self._params is None:
            merged: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in self.query.items()}
            ctype = (self.header("Content-Type") or "").split(";")[0].strip().lower()
            if self.body:
                if ctype == "application/x-www-form-urlencoded":
                    form = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
                    merged.update({k: v[0] if len(v) == 1 else v for k, v in form.items()})
                else:
                    data = json.loads(self.body)  # ValueError reaches the caller as a 400
                    if isinstance(data, dict):
                        merged.update(data)
            self._params = merged
        return self._params


class Response:
    """A response, plus what the transport must do with it (drop or reset the connection, hold it)."""

    __slots__ = ("body", "content_type", "drop", "headers", "hold", "reset", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers if headers is not None else {}
        self.drop = False
        self.reset = False
        self.hold = 0.0

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(data, separators=(",", ":")).encode(), "application/json", headers)

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8", headers)

    def copy(self) -> Response:
        return Response(self.status, self.body, self.content_type, dict(self.headers))


@dataclass
class Faults:
    """Fault injection for one provider prefix. Every knob applies to requests that arrive after
    it is set; ``*_next`` knobs hit the next N requests (deterministic, for tests), ``*_rate``
    knobs a random fraction, ``*_seconds`` knobs every request for that long."""

    latency_ms: float = 0.0  # added before every request is handled
    jitter_ms: float = 0.0  # plus uniform 0..jitter_ms
    error_rate: float = 0.0  # fraction answered with error_status, before any effect
    error_next: int = 0
    error_seconds: float = 0.0  # every request answers error_status for this long ("down for a while")
    error_status: int = 500
    timeout_rate: float = 0.0  # fraction held for timeout_seconds (after the effect) before answering
    timeout_next: int = 0
    timeout_seconds: float = 30.0
    drop_rate: float = 0.0  # fraction of writes whose connection is closed after the effect, unanswered
    drop_next: int = 0
    # A 2xx whose JSON body is cut short (after the effect): the client cannot tell what was made.
    malformed_rate: float = 0.0
    malformed_next: int = 0
    # The connection is reset (TCP RST) before the request is handled: no effect, no answer.
    reset_rate: float = 0.0
    reset_next: int = 0
    storm_seconds: float = 0.0  # every request answers the provider's 429 for this long

    # Absolute deadlines derived from the *_seconds knobs when they are set.
    error_until: float = field(default=0.0, repr=False)
    storm_until: float = field(default=0.0, repr=False)

    KNOBS = (
        "latency_ms",
        "jitter_ms",
        "error_rate",
        "error_next",
        "error_seconds",
        "error_status",
        "timeout_rate",
        "timeout_next",
        "timeout_seconds",
        "drop_rate",
        "drop_next",
        "malformed_rate",
        "malformed_next",
        "reset_rate",
        "reset_next",
        "storm_seconds",
    )

    def update(self, values: dict[str, Any], *, now: float) -> None:
        for key, value in values.items():
            if key not in self.KNOBS:
                raise ValueError(f"unknown fault knob {key!r}; known: {', '.join(self.KNOBS)}")
            kind = type(getattr(self, key))
            try:
                value = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key} must be a number") from None
            if value < 0 or (key.endswith("_rate") and value > 1):
                raise ValueError(f"{key} out of range")
            if key == "error_status" and not 500 <= value <= 599:
                raise ValueError("error_status must be a 5xx status")
            setattr(self, key, value)
            if key == "error_seconds":
                self.error_until = now + value if value else 0.0
            elif key == "storm_seconds":
                self.storm_until = now + value if value else 0.0

    def as_dict(self, now: float) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in self.KNOBS}
        out["error_remaining_seconds"] = round(max(0.0, self.error_until - now), 3)
        out["storm_remaining_seconds"] = round(max(0.0, self.storm_until - now), 3)
        return out

    def active(self) -> bool:
        return any(getattr(self, k) for k in self.KNOBS if k not in ("error_status", "timeout_seconds"))


DEFAULT_LIMITS: dict[str, dict[str, float]] = {
    # provider-apis §1.6: 100 requests per minute per token (Free Forever, Unlimited, Business).
    "clickup": {"per_token": 100, "period": 60},
    # provider-apis §2.6: 100 per 10 s per token, 300 per 10 s per key, /1/members/ 100 per 900 s.
    "trello": {"per_token": 100, "per_key": 300, "period": 10, "members_per_token": 100, "members_period": 900},
    # provider-apis §3.6: 1,000 requests per 15 minutes per user (assumed for v1); the Sync API has
    # its own limit (v9: 1,000 partial syncs per 15 minutes per user, UNCONFIRMED for v1), which a
    # ``POST /sync`` counts against as well (the sandbox takes the stricter reading).
    "todoist": {"per_user": 1000, "period": 900, "sync_per_user": 1000},
}


def merge_limits(current: dict[str, dict[str, float]], update: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Apply ``{"clickup": {"per_token": 5}, ...}``; 0 or null means unlimited."""
    out = {p: dict(v) for p, v in current.items()}
    for provider, values in update.items():
        if provider not in out or not isinstance(values, dict):
            raise ValueError(f"limits: unknown provider {provider!r}")
        for key, value in values.items():
            if key not in out[provider]:
                raise ValueError(f"limits: unknown key {provider}.{key}; known: {', '.join(out[provider])}")
            value = 0 if value is None else float(value)
            if value < 0 or (key.endswith("period") and value <= 0):
                raise ValueError(f"limits: {provider}.{key} out of range")
            out[provider][key] = value
    return out


class FixedWindows:
    """Fixed windows per key, each opened by the first request after the previous one ended.

    ClickUp reports ``X-RateLimit-Reset`` as the Unix time the window ends (provider-apis §1.6),
    which describes a fixed window; Trello and Todoist describe "N per period" without saying
    how the window moves, and are modelled the same way. A client that keeps to a sliding
    window of the same size never exceeds these windows.
    """

    def __init__(self) -> None:
        self._windows: dict[tuple, list[float]] = {}

    def hit(self, key: tuple, limit: float, period: float, now: float) -> tuple[bool, int, float]:
        """Count one request; returns (allowed, remaining, window end)."""
        window = self._windows.get(key)
        if window is None or now >= window[0] + period:
            window = self._windows[key] = [now, 0.0]
        window[1] += 1
        allowed = not limit or window[1] <= limit
        remaining = max(0, int(limit - window[1])) if limit else 0
        return allowed, remaining, window[0] + period

    def peek(self, key: tuple, period: float, now: float) -> float:
        window = self._windows.get(key)
        return 0.0 if window is None or now >= window[0] + period else window[1]

    def clear(self) -> None:
        self._windows.clear()


@dataclass
class Stats:
    """What tests and benchmarks assert on."""

    requests: Counter = field(default_factory=Counter)  # (provider, status) -> n
    over_limit: Counter = field(default_factory=Counter)  # provider -> requests answered 429 by a real limit
    storm_429: Counter = field(default_factory=Counter)  # provider -> 429s sent by a storm
    injected_errors: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)  # 2xx answers whose body was cut short
    resets: Counter = field(default_factory=Counter)  # connections reset before the request was handled
    timeouts: Counter = field(default_factory=Counter)
    unauthorized: Counter = field(default_factory=Counter)
    creates: Counter = field(default_factory=Counter)  # provider -> creates that took effect
    creates_by_marker: Counter = field(default_factory=Counter)  # "provider:marker" -> creates
    creates_by_request_id: Counter = field(default_factory=Counter)  # "todoist:<request id>" -> creates
    replayed: Counter = field(default_factory=Counter)  # requests answered from the X-Request-Id store
    sync_requests: Counter = field(default_factory=Counter)  # provider -> POST /sync answered 200
    sync_commands: Counter = field(default_factory=Counter)  # provider -> sync commands that took effect
    commands_replayed: Counter = field(default_factory=Counter)  # sync commands whose uuid was already done

    def as_dict(self) -> dict[str, Any]:
        per_provider: dict[str, dict[str, int]] = {p: {} for p in PROVIDERS}
        for (provider, status), n in sorted(self.requests.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            per_provider.setdefault(provider, {})[str(status)] = n
        out: dict[str, Any] = {"requests": per_provider}
        for name in (
            "over_limit",
            "storm_429",
            "injected_errors",
            "dropped",
            "malformed",
            "resets",
            "timeouts",
            "unauthorized",
            "creates",
            "replayed",
            "sync_requests",
            "sync_commands",
            "commands_replayed",
        ):
            counter = getattr(self, name)
            out[name] = {p: counter.get(p, 0) for p in PROVIDERS}
        out["over_limit_total"] = sum(self.over_limit.values())
        out["creates_by_marker"] = dict(self.creates_by_marker)
        out["creates_by_request_id"] = dict(self.creates_by_request_id)
        out["duplicates"] = {
            "by_marker": {k: n for k, n in self.creates_by_marker.items() if n > 1},
            "by_request_id": {k: n for k, n in self.creates_by_request_id.items() if n > 1},
        }
        return out


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in {"true", "1", "yes", "on"}


class Marker:
    """Extracts the reference marker from the text fields of a created task."""

    def __init__(self, pattern: str = DEFAULT_MARKER_PATTERN) -> None:
        self.set(pattern)

    def set(self, pattern: str) -> None:
        compiled = re.compile(pattern, re.IGNORECASE)
        if compiled.groups < 1:
            raise ValueError("marker_pattern needs one capturing group (the marker)")
        self.pattern = pattern
        self._re = compiled

    def find(self, *texts: Any) -> str | None:
        for text in texts:
            if isinstance(text, str) and text:
                match = self._re.search(text)
                if match:
                    return match.group(1)
        return None


@dataclass
class Credentials:
    """Who may call each provider. The demo's credentials are always known
    (tasks_app/management/commands/bootstrap_demo.py)."""

    clickup_tokens: list[str] = field(default_factory=lambda: ["pk_demo_clickup"])
    trello_keys: list[str] = field(default_factory=lambda: ["demo-trello-key"])
    trello_tokens: list[str] = field(default_factory=lambda: ["demo-trello-token"])
    todoist_tokens: list[str] = field(default_factory=lambda: ["demo-todoist-token"])

    def add(self, values: dict[str, Any]) -> None:
        for key, extra in values.items():
            if key not in {f.name for f in fields(self)}:
                raise ValueError(f"credentials: unknown kind {key!r}")
            if isinstance(extra, str):
                extra = [extra]
            current = getattr(self, key)
            for item in extra:
                if not isinstance(item, str) or not item:
                    raise ValueError(f"credentials: {key} must be non-empty strings")
                if item not in current:
                    current.append(item)

    def as_dict(self) -> dict[str, list[str]]:
        return asdict(self)


class Randomness:
    """One seeded generator behind a lock, so fault rates can be replayed."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)  # fault injection, not security
        self._lock = threading.Lock()

    def chance(self, p: float) -> bool:
        if p <= 0:
            return False
        if p >= 1:
            return True
        with self._lock:
            return self._random.random() < p

    def uniform(self, a: float, b: float) -> float:
        with self._lock:
            return self._random.uniform(a, b)
