from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from providers_app.hints import (
    MAX_HINT_SECONDS,
    parse_reset_epoch,
    parse_retry_after,
    retry_after_from,
    todoist_body_retry_after,
)

NOW = 1_800_000_000.0


def test_retry_after_in_seconds_is_read_as_seconds():
    assert parse_retry_after("66", now=NOW) == 66.0
    assert parse_retry_after(" 2.5 ", now=NOW) == 2.5


def test_retry_after_as_an_http_date_is_seconds_from_now():
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == 90.0


def test_retry_after_in_the_past_means_now_and_far_future_is_capped():
    past = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    assert parse_retry_after(format_datetime(past, usegmt=True), now=NOW) == 0.0
    assert parse_retry_after("99999999", now=NOW) == MAX_HINT_SECONDS


def test_junk_retry_after_is_no_hint():
    for junk in ["", "soon", "-5", "nan", "inf", "Mon, 99 Foo 2026", None, [], {"a": 1}, True, "1" * 100]:
        assert parse_retry_after(junk, now=NOW) is None


def test_clickup_reset_is_epoch_seconds_or_milliseconds():
    assert parse_reset_epoch(str(int(NOW) + 42), now=NOW) == 42.0
    assert parse_reset_epoch(str(int(NOW * 1000) + 42_000), now=NOW) == 42.0
    assert parse_reset_epoch(str(int(NOW) - 10), now=NOW) == 0.0
    assert parse_reset_epoch("0", now=NOW) is None
    assert parse_reset_epoch("tomorrow", now=NOW) is None


def test_todoist_body_hint():
    body = {
        "error": "Too many requests. Limits reached. Try again later",
        "error_code": 35,
        "error_extra": {"event_id": "07c3fb", "retry_after": 66},
        "error_tag": "LIMITS_REACHED",
        "http_code": 429,
    }
    assert todoist_body_retry_after(body) == 66.0
    assert todoist_body_retry_after({"error_extra": None}) is None
    assert todoist_body_retry_after("text") is None
    assert todoist_body_retry_after({"error_extra": {"retry_after": "x"}}) is None


def test_the_longest_hint_wins_and_header_names_are_case_insensitive():
    headers = {"retry-after": "5", "X-RateLimit-Reset": str(int(NOW) + 30)}
    assert retry_after_from(headers, {"error_extra": {"retry_after": 12}}, now=NOW) == 30.0
    assert retry_after_from({}, None, now=NOW) is None


@given(
    st.one_of(
        st.text(max_size=80),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.none(),
        st.binary(max_size=40),
    )
)
def test_any_header_value_gives_none_or_a_bounded_delay(value):
    for parse in (parse_retry_after, parse_reset_epoch):
        result = parse(value, now=NOW)
        assert result is None or 0.0 <= result <= MAX_HINT_SECONDS


@given(
    st.dictionaries(st.sampled_from(["Retry-After", "X-RateLimit-Reset", "X-Other"]), st.text(max_size=30)),
    st.recursive(st.none() | st.integers() | st.text(max_size=10), lambda c: st.dictionaries(st.text(max_size=12), c)),
)
def test_any_answer_gives_none_or_a_bounded_delay(headers, body):
    result = retry_after_from(headers, body, now=NOW)
    assert result is None or 0.0 <= result <= MAX_HINT_SECONDS
