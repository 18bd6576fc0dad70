"""The sandbox engine: routes a request to its provider, applies faults and rate limits, performs
the effect under one lock, and serves the control API under ``/_sandbox/``.

Order for every provider request: latency → auth (the provider's 401) → 429 storm → rate limit
(the provider's 429 and headers) → injected 5xx or connection reset (no effect) → the effect →
drop the connection, cut the JSON answer short or hold the answer (all after the effect).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from providers_app.sandbox.base import Limited, ProviderSim
from providers_app.sandbox.clickup import ClickUp
from providers_app.sandbox.core import (
    DEFAULT_LIMITS,
    PROVIDERS,
    Credentials,
    Faults,
    FixedWindows,
    Marker,
    Randomness,
    Request,
    Response,
    Stats,
    merge_limits,
)
from providers_app.sandbox.todoist import Todoist, gone
from providers_app.sandbox.trello import Trello

EFFECT_LOG_SIZE = 100_000


class Sandbox:
    """All state of one sandbox. Thread-safe: every effect happens under ``self.lock``."""

    def __init__(
        self,
        *,
        credentials: dict[str, list[str]] | None = None,
        limits: dict[str, dict[str, float]] | None = None,
        rate_limits: bool = True,
        faults: dict[str, dict[str, Any]] | None = None,
        seed: int | None = None,
        marker_pattern: str | None = None,
        idempotency_window: float = 3600.0,
        request_id_max: int = 36,
        containers: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.credentials = Credentials()
        if credentials:
            self.credentials.add(credentials)
        self.limits = merge_limits(DEFAULT_LIMITS, limits or {})
        self.rate_limits_enabled = rate_limits
        self.random = Randomness(seed)
        self.marker = Marker(marker_pattern) if marker_pattern else Marker()
        self.idempotency_window = float(idempotency_window)
        self.request_id_max = int(request_id_max)
        self.windows = FixedWindows()
        self.stats = Stats()
        self.effects: deque[dict[str, Any]] = deque(maxlen=EFFECT_LOG_SIZE)
        self.effect_seq = 0
        self.faults = {p: Faults() for p in PROVIDERS}
        self.sims: dict[str, ProviderSim] = {"clickup": ClickUp(self), "trello": Trello(self), "todoist": Todoist(self)}
        self._containers: dict[str, list[dict[str, Any]]] = {p: [] for p in PROVIDERS}
        for provider, values in (containers or {}).items():
            self.configure_provider(provider, values)
        if faults:
            self.set_faults(faults)

    # Public API (also used directly by tests that embed the sandbox) ---------------------------
    def set_faults(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``{"clickup": {"error_rate": 0.2}, "*": {...}}`` or ``{"provider": "trello", ...knobs}``."""
        now = time.monotonic()
        targets = self._fault_targets(spec)
        with self.lock:
            for _names, knobs in targets:  # validate all before changing any
                Faults().update(knobs, now=now)
            for names, knobs in targets:
                for name in names:
                    self.faults[name].update(knobs, now=now)
            return self.faults_dict()

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = {p: Faults() for p in PROVIDERS}

    def faults_dict(self) -> dict[str, Any]:
        now = time.monotonic()
        return {p: f.as_dict(now) for p, f in self.faults.items()}

    def set_limits(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = dict(spec)
        with self.lock:
            if "enabled" in spec:
                self.rate_limits_enabled = bool(spec.pop("enabled"))
            self.limits = merge_limits(self.limits, spec)
            self.windows.clear()  # new limits start with fresh windows
            return self.limits_dict()

    def limits_dict(self) -> dict[str, Any]:
        return {"enabled": self.rate_limits_enabled, **self.limits}

    def configure_provider(self, provider: str, values: dict[str, Any]) -> None:
        if provider not in self.sims:
            raise ValueError(f"unknown provider {provider!r}")
        with self.lock:
            self.sims[provider].configure(values)
            self._containers[provider].append(values)

    def reset(self) -> None:
        """Forget every task, counter, window, remembered request id and fault; keep the
        credentials, limits and configured containers."""
        with self.lock:
            for name, sim in self.sims.items():
                sim.reset()
                for values in self._containers[name]:
                    sim.configure(values)
            self.windows.clear()
            self.stats = Stats()
            self.effects.clear()
            self.effect_seq = 0
            self.faults = {p: Faults() for p in PROVIDERS}

    def state(self, *, include_items: bool = True) -> dict[str, Any]:
        with self.lock:
            return {
                "providers": {name: sim.dump(include_items=include_items) for name, sim in self.sims.items()},
                **self.stats.as_dict(),
                "effects": self.effect_seq,
                "faults": self.faults_dict(),
                "limits": self.limits_dict(),
                "marker_pattern": self.marker.pattern,
            }

    def log_effect(self, provider: str, op: str, item_id: str, **extra: Any) -> None:
        self.effect_seq += 1
        entry = {"seq": self.effect_seq, "at": time.time(), "provider": provider, "op": op, "id": item_id}
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.effects.append(entry)

    # Request handling ------------------------------------------------------------------------
    def handle(self, req: Request, stop: threading.Event | None = None) -> Response:
        path = req.path
        if path.startswith("/_sandbox"):
            return self.control(req)
        sim = None
        for candidate in self.sims.values():
            rest = path[len(candidate.prefix) :]
            if path.startswith(candidate.prefix) and (not rest or rest[0] == "/"):
                sim = candidate
                break
        if sim is None:
            if path.startswith(("/todoist/rest/v2", "/todoist/sync/v9")):
                return gone()  # provider-apis §0: REST v2 and Sync v9 answer 410 Gone
            return Response.text(404, "Not Found")
        name = sim.name
        faults = self.faults[name]
        delay = faults.latency_ms + (self.random.uniform(0, faults.jitter_ms) if faults.jitter_ms else 0.0)
        if delay > 0:
            if stop is not None:
                stop.wait(delay / 1000)
            else:
                time.sleep(delay / 1000)
        ident = sim.authenticate(req)
        stats = self.stats
        if isinstance(ident, Response):
            with self.lock:
                stats.unauthorized[name] += 1
                stats.requests[(name, ident.status)] += 1
            return ident
        sub = [part for part in path[len(sim.prefix) :].split("/") if part]
        with self.lock:
            stats = self.stats
            now = time.monotonic()
            if faults.storm_until > now:
                stats.storm_429[name] += 1
                stats.requests[(name, 429)] += 1
                return sim.storm_response(faults.storm_until - now)
            try:
                headers = sim.rate_limit(req, ident, now)
            except Limited as limited:
                stats.requests[(name, 429)] += 1
                return limited.response
            if faults.error_until > now or self._consume(faults, "error"):
                stats.injected_errors[name] += 1
                stats.requests[(name, faults.error_status)] += 1
                response = sim.error_response(faults.error_status)
                response.headers.update(headers)
                return response
            if self._consume(faults, "reset"):
                stats.resets[name] += 1
                stats.requests[(name, "reset")] += 1
                response = Response(0)
                response.reset = True
                return response
            write = req.method not in ("GET", "HEAD")
            drop = write and self._consume(faults, "drop")
            hold = not drop and self._consume(faults, "timeout")
            response = sim.route(req, ident, sub)
            if not drop and 200 <= response.status < 300 and response.body and self._consume(faults, "malformed"):
                # Half a JSON document, still labelled JSON: what a proxy that cut the answer sends.
                stats.malformed[name] += 1
                response.body = response.body[: max(1, len(response.body) // 2)]
            for key, value in headers.items():
                response.headers.setdefault(key, value)
            if drop:
                stats.dropped[name] += 1
                stats.requests[(name, "dropped")] += 1
                response.drop = True
            else:
                stats.requests[(name, response.status)] += 1
                if hold:
                    stats.timeouts[name] += 1
                    response.hold = faults.timeout_seconds
            return response

    def _consume(self, faults: Faults, kind: str) -> bool:
        """Whether the fault ``kind`` hits this request: the next-N counter first, then the rate."""
        nxt = getattr(faults, f"{kind}_next")
        if nxt > 0:
            setattr(faults, f"{kind}_next", nxt - 1)
            return True
        return self.random.chance(getattr(faults, f"{kind}_rate"))

    def _fault_targets(self, spec: dict[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
        if not isinstance(spec, dict):
            raise ValueError("faults must be a JSON object")
        if "provider" in spec or not (set(spec) & {*PROVIDERS, "*"}):
            knobs = dict(spec)
            which = knobs.pop("provider", "*")
            return [(self._names(which), knobs)]
        out = []
        for which, knobs in spec.items():
            if not isinstance(knobs, dict):
                raise ValueError(f"faults.{which} must be an object of knobs")
            out.append((self._names(which), knobs))
        return out

    @staticmethod
    def _names(which: Any) -> list[str]:
        names = list(PROVIDERS) if which in ("*", "all", None) else which if isinstance(which, list) else [which]
        for name in names:
            if name not in PROVIDERS:
                raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)} or *")
        return names

    # Control API ------------------------------------------------------------------------------
    def control(self, req: Request) -> Response:
        """``/_sandbox/...``: JSON in, JSON out; 400 ``{"error": ...}`` on bad input."""
        parts = [p for p in req.path.split("/") if p][1:]
        what = parts[0] if parts else ""
        method = req.method
        try:
            body = req.json() if method in ("POST", "PUT") else None
            if body is not None and not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            body = body or {}
            if what == "health":
                return Response.json(200, {"ok": True})
            if what == "state" and method == "GET":
                items = req.arg("items", "1") not in ("0", "false", "no")
                return Response.json(200, self.state(include_items=items))
            if what == "effects" and method == "GET":
                since = int(req.arg("since", "0"))
                provider = req.arg("provider")
                with self.lock:
                    rows = [e for e in self.effects if e["seq"] > since and (not provider or e["provider"] == provider)]
                return Response.json(200, {"effects": rows})
            if what == "reset" and method == "POST":
                self.reset()
                return Response.json(200, {"ok": True})
            if what == "faults":
                if method == "GET":
                    return Response.json(200, self.faults_dict())
                if method == "DELETE":
                    self.clear_faults()
                    return Response.json(200, self.faults_dict())
                if method in ("POST", "PUT"):
                    return Response.json(200, self.set_faults(body))
            if what == "limits":
                if method == "GET":
                    return Response.json(200, self.limits_dict())
                if method in ("POST", "PUT"):
                    return Response.json(200, self.set_limits(body))
            if what == "credentials":
                if method == "GET":
                    return Response.json(200, self.credentials.as_dict())
                if method in ("POST", "PUT"):
                    with self.lock:
                        self.credentials.add(body)
                    return Response.json(200, self.credentials.as_dict())
            if what == "config":
                if method in ("POST", "PUT"):
                    self.configure(body)
                return Response.json(200, self.config_dict())
            if what in ("webhooks", "user-change"):
                # Signed webhooks for changes made "as a user" (issue 5 §6): sandbox/webhooks.py.
                from providers_app.sandbox.webhooks import emitter_for

                return emitter_for(self).control(method, what, body)
        except (ValueError, TypeError) as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(404, {"error": f"unknown control endpoint {method} {req.path}"})

    def configure(self, body: dict[str, Any]) -> None:
        unknown = set(body) - {"marker_pattern", "idempotency_window", "request_id_max", *PROVIDERS}
        if unknown:
            raise ValueError(f"config: unknown keys {sorted(unknown)}")
        with self.lock:
            if "marker_pattern" in body:
                self.marker.set(str(body["marker_pattern"]))
            if "idempotency_window" in body:
                self.idempotency_window = float(body["idempotency_window"])
            if "request_id_max" in body:
                self.request_id_max = int(body["request_id_max"])
            for provider in PROVIDERS:
                if provider in body:
                    self.configure_provider(provider, body[provider])

    def config_dict(self) -> dict[str, Any]:
        return {
            "marker_pattern": self.marker.pattern,
            "idempotency_window": self.idempotency_window,
            "request_id_max": self.request_id_max,
            "containers": self._containers,
        }
