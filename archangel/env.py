"""Strict readers for environment variables.

Every helper raises ``ImproperlyConfigured`` naming the variable when its value
cannot be used, so a typo stops start-up with a clear message instead of
running with a silent default.
"""

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0/yes/no), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum:g}, got {value:g}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = env_str(name).lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(sorted(choices))}, got {value!r}")
    return value


def env_url(name: str, schemes: set[str]) -> str:
    """Return the URL in ``name`` (or "" when unset), refusing unparseable values."""
    raw = env_str(name)
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        allowed = ", ".join(sorted(f"{scheme}://" for scheme in schemes))
        raise ImproperlyConfigured(f"{name} must start with one of {allowed}, got scheme {parts.scheme!r}")
    # sqlite:///path, unix:///socket and postgres:///db (the local socket) need no host.
    if not parts.hostname and parts.scheme in {"redis", "rediss"}:
        raise ImproperlyConfigured(f"{name} has no host name")
    # What would otherwise fail later, far from the variable, or run on something useless.
    database = parts.path.removeprefix("/")
    if parts.scheme in {"redis", "rediss"} and database and not database.isdigit():
        raise ImproperlyConfigured(f"{name}: the database after the host must be a number (/0), got {database!r}")
    if parts.scheme in {"postgres", "postgresql", "pgsql"} and not database:
        raise ImproperlyConfigured(f"{name} names no database (postgres://user@host:5432/<database>)")
    if parts.scheme == "sqlite" and database in {"", ":memory:"}:
        # Each process (web, worker, beat) would get a database of its own.
        raise ImproperlyConfigured(f"{name}: an in-memory SQLite database cannot be shared; give a file path")
    return raw
