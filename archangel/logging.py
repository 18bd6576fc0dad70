"""Structured logs: JSON lines in production, plain text in development, secrets masked in both.

Every record carries the ids of what it is about when they are known: ``request_id``
(set by ``RequestIdMiddleware`` for each HTTP request), ``task_id`` and ``event_id``
(bound with ``bind_log_context`` around work on one task or outbox event),
``celery_task_id`` (bound by the worker for each job) and ``trace_id`` when tracing is
on. They live in context variables, so they follow the code across function calls
without being passed around, and never leak from one request or job into the next.

This module must stay importable before Django is set up: settings, gunicorn's master
and Celery import it.
"""

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from archangel.env import env_choice
from archangel.tracing import current_trace_id, set_span_attributes

CONTEXT_FIELDS = ("request_id", "task_id", "event_id", "celery_task_id")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("archangel_log_context", default={})  # noqa: B039 - never mutated, always replaced


def log_format(production: bool) -> str:
    """``LOG_FORMAT`` (json or text); JSON by default in production, where logs go to a collector."""
    return env_choice("LOG_FORMAT", "json" if production else "text", {"json", "text"})


def logging_config(*, level: str, fmt: str) -> dict:
    """The ``LOGGING`` dict shared by Django settings, the Celery worker and gunicorn's loggers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": "archangel.logging.JsonFormatter"},
        },
        # On the handler, not a logger: every record that reaches the output is masked,
        # whichever library's logger it came from.
        "filters": {
            "context": {"()": "archangel.logging.ContextFilter"},
            "mask_secrets": {"()": "archangel.logging.SecretMaskingFilter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if fmt == "json" else "plain",
                "filters": ["context", "mask_secrets"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's default config gives "django" its own console handler (with DEBUG on),
            # which would print every request error a second time, unformatted and unmasked.
            "django": {"handlers": [], "level": "INFO" if level == "DEBUG" else level, "propagate": True},
            "django.db.backends": {"level": "WARNING"},
        },
    }


# --- Context ---------------------------------------------------------------------------------
def log_context() -> dict[str, str]:
    return dict(_context.get())


def push_log_context(**fields: Any) -> contextvars.Token:
    """Add ids to the log context until ``pop_log_context(token)``; prefer ``bind_log_context``."""
    return _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


def pop_log_context(token: contextvars.Token) -> None:
    _context.reset(token)


@contextmanager
def bind_log_context(**fields: Any) -> Iterator[None]:
    """Add ids to every log record written inside the block: ``with bind_log_context(task_id=t.id, event_id=e.id):``.

    ``None`` values are left out; values are turned into strings. Nesting adds to the
    outer context, and leaving the block restores it.
    """
    token = push_log_context(**fields)
    try:
        yield
    finally:
        pop_log_context(token)


_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a sane id (1-128 safe characters), else a new one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each request an id for its logs and echo it in the ``X-Request-ID`` response header.

    A proxy's or client's id is kept when well-formed, so one id follows a request across
    systems; anything else (too long, odd characters that could forge log lines) is replaced.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        token = _context.set({"request_id": request_id})
        try:
            set_span_attributes({"archangel.request_id": request_id})
            response = self.get_response(request)
        finally:
            _context.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ContextFilter(logging.Filter):
    """Copy the bound ids (and the trace id, when tracing is on) onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        # Django logs 4xx/5xx responses ("Not Found: ...") after the middleware has returned,
        # with the request attached: take the id from there.
        request_id = getattr(getattr(record, "request", None), "request_id", None)
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        trace_id = current_trace_id()
        if trace_id and not hasattr(record, "trace_id"):
            record.trace_id = trace_id
        return True


# --- Secrets -----------------------------------------------------------------------------------
# Best effort: these catch the credentials this system handles (DRF tokens, bearer tokens,
# ClickUp personal tokens, Trello key/token query parameters, Authorization headers) and
# any ``extra`` field whose name says it is a secret. They cannot recognise a secret
# logged under an innocent name in free text: code must still not log secrets.
MASK = "***"
SECRET_KEY_NAME = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|apikey|authorization|cookie|signature|credential|private[_-]?key"
    r"|encryption[_-]?keys?|^key$)",
    re.IGNORECASE,
)
_SECRET_PATTERNS = (
    (re.compile(r"\b(Token)\s+[0-9a-f]{40}\b", re.IGNORECASE), r"\1 " + MASK),
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 " + MASK),
    (re.compile(r"\bpk_[A-Za-z0-9_]+"), "pk_" + MASK),
    (
        re.compile(r"([?&;](?:key|token|api_key|apikey|secret|access_token|password)=)[^&\s\"'#]+", re.IGNORECASE),
        r"\1" + MASK,
    ),
    (
        re.compile(
            r"(\b(?:authorization|x-api-key|cookie)[\"']?\s*[:=]\s*[\"']?)(?:(?:Bearer|Token|Basic)\s+)?[^\s\"',}]+",
            re.IGNORECASE,
        ),
        r"\1" + MASK,
    ),
)
# Attributes every record has, plus Django's ``request`` extra (an object, not data for a log line).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request"}


def mask_text(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_value(key: str, value: Any) -> Any:
    """Mask ``value`` entirely when ``key`` names a secret; otherwise mask secrets inside it."""
    if SECRET_KEY_NAME.search(str(key)):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value("", v) for v in value]
    return value


class SecretMaskingFilter(logging.Filter):
    """Mask secrets in the formatted message, the traceback text and the ``extra`` fields of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must still be logged, not raise
            message = str(record.msg)
        masked = mask_text(message)
        if masked != message or record.args:
            # Freeze the formatted, masked text: formatters then never see the raw arguments.
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        for key in [k for k in vars(record) if k not in _RECORD_ATTRS]:
            setattr(record, key, mask_value(key, getattr(record, key)))
        return True


# --- Output ------------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, the context ids and any ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
