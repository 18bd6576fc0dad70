import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks_app import normalizer
from tasks_app.normalizer import NormalizationError, normalize_task


def test_it_trims_and_collapses_whitespace_in_the_title():
    assert normalize_task({"title": "  Fix\t the   \n login  bug "})["title"] == "Fix the login bug"


def test_it_keeps_paragraphs_but_collapses_blank_lines_in_the_description():
    out = normalize_task({"title": "x", "description": "  line one  \r\n\r\n\r\n\n  line   two\x00 "})
    assert out["description"] == "line one\n\nline two"


def test_it_reads_a_naive_datetime_as_utc():
    assert normalize_task({"title": "x", "deadline": "2026-12-01T10:00:00"})["deadline"] == dt.datetime(
        2026, 12, 1, 10, tzinfo=dt.UTC
    )


def test_it_converts_an_offset_datetime_to_utc():
    out = normalize_task({"title": "x", "deadline": "2026-12-01T10:00:00+02:00"})
    assert out["deadline"] == dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)
    assert out["deadline"].tzinfo == dt.UTC


def test_a_bare_date_means_the_end_of_that_day():
    assert normalize_task({"title": "x", "deadline": "2026-12-01"})["deadline"] == dt.datetime(
        2026, 12, 1, 23, 59, 59, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("value", ["tomorrow", "2026-13-01", "2026-02-30T10:00:00Z", 12345, "1900-01-01"])
def test_it_rejects_bad_deadlines(value):
    with pytest.raises(NormalizationError) as exc:
        normalize_task({"title": "x", "deadline": value})
    assert list(exc.value.fields) == ["deadline"]


@pytest.mark.parametrize(("given_value", "expected"), [(1, 1), (4, 4), ("urgent", 4), ("Low", 1)])
def test_it_accepts_priority_numbers_and_names(given_value, expected):
    assert normalize_task({"title": "x", "priority": given_value})["priority"] == expected


@pytest.mark.parametrize("value", [0, 5, True, "critical", 2.5, None])
def test_it_rejects_bad_priorities(value):
    with pytest.raises(NormalizationError) as exc:
        normalize_task({"title": "x", "priority": value})
    assert "priority" in exc.value.fields


@pytest.mark.parametrize("value", [-1, "abc", float("nan"), float("inf"), 1001, True, [1]])
def test_it_rejects_bad_effort(value):
    with pytest.raises(NormalizationError) as exc:
        normalize_task({"title": "x", "effort_hours": value})
    assert "effort_hours" in exc.value.fields


def test_effort_is_rounded_to_two_decimals():
    assert normalize_task({"title": "x", "effort_hours": "1.005"})["effort_hours"] == Decimal("1.01")


def test_it_names_every_bad_field_at_once():
    with pytest.raises(NormalizationError) as exc:
        normalize_task({"title": " ", "priority": 9, "assignee": "nope", "colour": "red"})
    assert set(exc.value.fields) == {"title", "priority", "assignee", "colour"}
    assert exc.value.fields["colour"] == ["Unknown field."]


def test_a_missing_title_is_required_unless_partial():
    with pytest.raises(NormalizationError) as exc:
        normalize_task({})
    assert exc.value.fields == {"title": ["This field is required."]}
    assert normalize_task({"priority": 3}, partial=True) == {"priority": 3}


def test_read_only_fields_of_the_task_json_are_ignored():
    out = normalize_task({"title": "x", "id": "whatever", "score": 0.9, "external_id": "abc"})
    assert out == {"title": "x"}


def test_a_title_over_500_characters_is_rejected():
    with pytest.raises(NormalizationError):
        normalize_task({"title": "a" * 501})


def test_a_non_object_body_is_rejected():
    with pytest.raises(NormalizationError) as exc:
        normalize_task(["title"])
    assert exc.value.fields == {"non_field_errors": ["Expected a JSON object."]}


def test_effort_estimate_grows_with_the_description_and_stays_in_bounds():
    short = normalizer.estimate_effort(priority=2, description="")
    long = normalizer.estimate_effort(priority=2, description="word " * 400)
    huge = normalizer.estimate_effort(priority=4, description="word " * 100_000)
    assert short == Decimal("1.00")
    assert long == Decimal("3.00")
    assert huge == Decimal("8.00")
    assert normalizer.estimate_effort(priority=3, description="") == Decimal("1.50")


def test_fingerprint_ignores_case_punctuation_and_spacing_but_not_client_or_day():
    client = uuid.uuid4()
    day = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    same_day_later = dt.datetime(2026, 12, 1, 22, tzinfo=dt.UTC)
    base = normalizer.fingerprint(title="Fix the login bug!", client_id=client, deadline=day)
    assert base == normalizer.fingerprint(title="fix  the LOGIN bug", client_id=client, deadline=same_day_later)
    assert base != normalizer.fingerprint(title="Fix the login bug", client_id=uuid.uuid4(), deadline=day)
    assert base != normalizer.fingerprint(
        title="Fix the login bug", client_id=client, deadline=day + dt.timedelta(days=1)
    )
    assert base != normalizer.fingerprint(title="Fix the login bug", client_id=client, deadline=None)


@given(st.text(max_size=600))
def test_clean_line_is_idempotent_and_has_no_edge_whitespace(text):
    once = normalizer.clean_line(text)
    assert normalizer.clean_line(once) == once
    assert once == once.strip()
    assert "\n" not in once


@given(st.dictionaries(st.sampled_from([*normalizer.WRITABLE, "junk"]), st.one_of(st.none(), st.integers(), st.text())))
def test_normalize_task_either_returns_known_fields_or_raises_a_field_error(raw):
    try:
        out = normalize_task(raw, partial=True)
    except NormalizationError as exc:
        assert exc.fields and all(isinstance(msgs, list) and msgs for msgs in exc.fields.values())
    else:
        assert set(out) <= set(normalizer.WRITABLE)
