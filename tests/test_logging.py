"""Structured logs: request ids from the header, bound task and event ids, secrets masked."""

import io
import json
import logging
import re

import pytest

from archangel.logging import ContextFilter, JsonFormatter, SecretMaskingFilter, bind_log_context, log_context
from tests.test_settings_env import PRODUCTION, run_manage


@pytest.fixture
def json_log():
    """Records of every logger, as the production handler writes them, parsed back from JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretMaskingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_json_lines_carry_the_request_id_from_the_header(client, json_log):
    response = client.get("/api/no-such-endpoint", HTTP_X_REQUEST_ID="req-7f3a.42")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-7f3a.42"
    [line] = [entry for entry in json_log() if entry["logger"] == "django.request"]
    assert line["request_id"] == "req-7f3a.42"
    assert line["level"] == "WARNING"
    assert line["message"] == "Not Found: /api/no-such-endpoint"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["timestamp"])


@pytest.mark.parametrize("header", [None, "", "has spaces", "x" * 129, "forged\nline", "-leading-dash"])
def test_a_missing_or_malformed_request_id_is_replaced_by_a_new_one(client, header):
    extra = {} if header is None else {"HTTP_X_REQUEST_ID": header}
    response = client.get("/api/no-such-endpoint", **extra)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_the_request_id_does_not_outlive_its_request(client):
    client.get("/api/no-such-endpoint", HTTP_X_REQUEST_ID="req-1")
    assert log_context() == {}


def test_bound_task_and_event_ids_appear_on_every_line_written_inside_the_block(json_log):
    logger = logging.getLogger("archangel.outbox")
    with bind_log_context(task_id="t-1", event_id=None):
        logger.info("claimed")
        with bind_log_context(event_id="e-9"):
            logger.info("delivered")
        logger.info("after")
    logger.info("outside")
    lines = [(e["message"], e.get("task_id"), e.get("event_id")) for e in json_log()]
    assert lines == [
        ("claimed", "t-1", None),
        ("delivered", "t-1", "e-9"),
        ("after", "t-1", None),
        ("outside", None, None),
    ]


@pytest.mark.parametrize(
    ("message", "args", "logged"),
    [
        ("auth %s", ("Token 0123456789abcdef0123456789abcdef01234567",), "auth Token ***"),
        ("header Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0", (), "header Authorization: ***"),
        ("sent Bearer abc.def-ghi to %s", ("x",), "sent Bearer *** to x"),
        ("clickup token %s", ("pk_8812_ZX9QW1E2R3T4Y5U6I7O8P9",), "clickup token pk_***"),
        (
            "GET %s",
            ("https://api.trello.com/1/cards?key=abc123&token=def456&fields=name",),
            "GET https://api.trello.com/1/cards?key=***&token=***&fields=name",
        ),
        ("plain text with no secret", (), "plain text with no secret"),
    ],
)
def test_secrets_in_messages_are_masked(json_log, message, args, logged):
    logging.getLogger("archangel.providers").info(message, *args)
    assert json_log()[-1]["message"] == logged


def test_secret_looking_extra_fields_are_masked_and_others_kept(json_log):
    logging.getLogger("archangel.providers").info(
        "provider saved",
        extra={
            "provider": "Trello main",
            "api_token": "trello-token-456",
            "config": {"board_id": "5a11", "app_secret": "s3cr3t", "webhook_secret": "hook"},
            "url": "https://x.test/cb?token=abc",
        },
    )
    entry = json_log()[-1]
    assert entry["provider"] == "Trello main"
    assert entry["api_token"] == "***"
    assert entry["config"] == {"board_id": "5a11", "app_secret": "***", "webhook_secret": "***"}
    assert entry["url"] == "https://x.test/cb?token=***"


def test_a_secret_in_an_exception_is_masked_in_the_traceback(json_log):
    try:
        raise ValueError("rejected Token 0123456789abcdef0123456789abcdef01234567")
    except ValueError:
        logging.getLogger("archangel").exception("delivery failed")
    entry = json_log()[-1]
    assert "0123456789abcdef" not in json.dumps(entry)
    assert "ValueError: rejected Token ***" in entry["exception"]


@pytest.mark.parametrize(
    ("env", "formatter"),
    [
        ({}, "plain"),
        (PRODUCTION, "json"),
        ({**PRODUCTION, "LOG_FORMAT": "text"}, "plain"),
        ({"LOG_FORMAT": "json"}, "json"),
    ],
)
def test_logs_are_json_in_production_and_text_in_development(env, formatter):
    result = run_manage(
        "shell", "-c", "from django.conf import settings; print(settings.LOGGING['handlers']['console'])", **env
    )
    assert result.returncode == 0, result.stderr
    handler = result.stdout.strip().splitlines()[-1]
    assert f"'formatter': '{formatter}'" in handler
    assert "'filters': ['context', 'mask_secrets']" in handler
