"""Per-type provider configuration: which keys exist, which are secret, how each is checked.

Pure module (no ORM). Secret keys are stored encrypted (see ``crypto.py``) and
never returned; everything else lives in ``Provider.config`` as plain JSON.
Default API roots follow docs/provider-apis.md §1.1, §2.1, §3.1.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from archangel.errors import InvalidInput

CLICKUP, TRELLO, TODOIST = "clickup", "trello", "todoist"

DEFAULT_BASE_URLS = {
    CLICKUP: "https://api.clickup.com/api/v2",
    TRELLO: "https://api.trello.com/1",
    # Todoist REST v2 answers 410 Gone since 2026-02-10; API v1 is the only one left.
    TODOIST: "https://api.todoist.com/api/v1",
}


def _nonempty_str(value: Any, max_length: int = 512) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "Must be a non-empty string."
    if len(value) > max_length:
        return f"Must be at most {max_length} characters."
    # Control characters (NUL cannot even be stored in jsonb) and lone surrogates.
    if any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        return "Must not contain control characters or invalid Unicode."
    return None


def _url(value: Any) -> str | None:
    if problem := _nonempty_str(value, 2048):
        return problem
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "Must be a valid URL."
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "Must be an http(s) URL with a host."
    if parts.username or parts.password:
        return "Must not carry credentials; secrets belong in the secret keys."
    return None


def _provider_url(value: Any) -> str | None:
    """A provider API root or callback: a valid URL that does not point into our own network."""
    from providers_app.netguard import plain_http_problem, private_url_problem

    return _url(value) or plain_http_problem(value) or private_url_problem(value)


def _str_map(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not value:
        return "Must be a non-empty object mapping names to strings."
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip() or _nonempty_str(key) or _nonempty_str(item):
            return "Every key and value must be a non-empty string without control characters."
    return None


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "Must be a positive integer."
    return None


@dataclass(frozen=True)
class ConfigSpec:
    required: frozenset[str]
    checks: Mapping[str, Callable[[Any], str | None]]
    secret: frozenset[str] = field(default_factory=frozenset)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(self.checks)


SPECS: dict[str, ConfigSpec] = {
    CLICKUP: ConfigSpec(
        required=frozenset({"api_token", "list_id"}),
        secret=frozenset({"api_token", "webhook_secret"}),
        checks={
            "api_token": _nonempty_str,
            "list_id": _nonempty_str,
            "team_id": _nonempty_str,
            "webhook_secret": _nonempty_str,
            "webhook_id": _nonempty_str,
            "base_url": _provider_url,
            # our status -> the ClickUp status name of the list (names are per list).
            "status_map": _str_map,
            # 100/min on Free, Unlimited and Business; 1,000 Business Plus; 10,000 Enterprise.
            "rate_limit_per_minute": _positive_int,
        },
    ),
    TRELLO: ConfigSpec(
        required=frozenset({"api_key", "api_token", "board_id"}),
        secret=frozenset({"api_key", "api_token", "app_secret"}),
        checks={
            "api_key": _nonempty_str,
            "api_token": _nonempty_str,
            "board_id": _nonempty_str,
            # our status -> the id of the Trello list that stands for it.
            "status_lists": _str_map,
            # our priority name -> a label id (Trello has no priority of its own).
            "priority_labels": _str_map,
            "app_secret": _nonempty_str,
            # Stored verbatim: Trello signs body + the callback URL exactly as registered.
            "callback_url": _url,
            "webhook_id": _nonempty_str,
            "base_url": _provider_url,
            # 100 per 10 s per token and 300 per 10 s per API key by default (provider-apis.md §2.6).
            "rate_limit_per_10s": _positive_int,
            "key_rate_limit_per_10s": _positive_int,
        },
    ),
    TODOIST: ConfigSpec(
        required=frozenset({"api_token"}),
        secret=frozenset({"api_token", "client_secret"}),
        checks={
            "api_token": _nonempty_str,
            "project_id": _nonempty_str,
            "client_secret": _nonempty_str,
            "user_id": _nonempty_str,
            "base_url": _provider_url,
            # 1,000 per 15 minutes per user by default (provider-apis.md §3.6).
            "rate_limit_per_15min": _positive_int,
        },
    ),
}


class ConfigError(InvalidInput):
    """Invalid provider config; ``fields`` maps ``config.<key>`` to its messages."""


def validate_config(provider_type: str, config: Mapping[str, Any], *, require: bool = True) -> None:
    """Check every key of ``config`` (plain and secret values together).

    ``require`` is False for a partial update that only changes some keys.
    A ``None`` value means "remove this key" and is accepted for optional keys.
    """
    spec = SPECS[provider_type]
    errors: dict[str, list[str]] = {}
    for key, value in config.items():
        if key not in spec.checks:
            errors[key] = [f"Unknown key for a {provider_type} provider; known keys: {', '.join(sorted(spec.keys))}."]
        elif value is None:
            if key in spec.required:
                errors[key] = ["This key is required."]
        elif problem := spec.checks[key](value):
            errors[key] = [problem]
    if require:
        for key in sorted(spec.required - set(config)):
            errors[key] = ["This key is required."]
    if errors:
        raise ConfigError({f"config.{key}": messages for key, messages in errors.items()})


def base_url(provider_type: str, config: Mapping[str, Any]) -> str:
    return (config.get("base_url") or DEFAULT_BASE_URLS[provider_type]).rstrip("/")
