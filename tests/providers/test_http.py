"""The HTTP choke point: transport failures, status codes, parsing, secrets, pooling, metrics."""

import http.client
import logging

import pytest
import requests
import responses
from prometheus_client import REGISTRY
from urllib3.exceptions import ProtocolError

from providers_app.adapters.base import PermanentError, RateLimited, TransientError
from providers_app.http import ProviderHttp, parse_body, redact_url

BASE = "https://api.example.test/v1"


def _http(**kwargs):
    options = {
        "provider_type": "trello",
        "base_url": BASE,
        "account_key": "acct",
        "params": {"key": "K1", "token": "T1"},
    }
    return ProviderHttp(**{**options, **kwargs}, secrets=("K1", "T1"))


def test_redact_url_masks_credentials_only():
    url = redact_url("https://api.trello.com/1/cards?key=abc&token=def&idList=5a&API_TOKEN=x")
    assert "abc" not in url and "def" not in url and "=x" not in url
    assert "key=***" in url and "token=***" in url and "idList=5a" in url


def test_a_base_url_into_our_own_network_is_refused_before_anything_is_sent(settings):
    settings.ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS = False
    client = ProviderHttp(provider_type="clickup", base_url="http://127.0.0.1:9", account_key="ssrf")
    with pytest.raises(PermanentError, match="base_url refused"):
        client.request("GET", "/team", operation="health_check")


def test_connection_refused_is_retryable_and_known_not_sent(settings):
    settings.ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS = True
    client = ProviderHttp(provider_type="clickup", base_url="http://127.0.0.1:9", account_key="refused")
    with pytest.raises(TransientError) as caught:
        client.request("POST", "/list/1/task", operation="create", json_body={})
    assert caught.value.retryable and caught.value.trips_breaker
    assert caught.value.outcome_unknown is False


@responses.activate
def test_a_read_timeout_after_sending_a_write_has_an_unknown_outcome():
    responses.post(f"{BASE}/cards", body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(TransientError) as caught:
        _http().request("POST", "/cards", operation="create", json_body={})
    assert caught.value.outcome_unknown is True
    assert "outcome is unknown" in str(caught.value)


@responses.activate
def test_a_connection_reset_after_sending_has_an_unknown_outcome_but_a_read_does_not_matter():
    reset = requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", http.client.RemoteDisconnected()))
    responses.post(f"{BASE}/cards", body=reset)
    responses.get(f"{BASE}/cards/1", body=reset)
    with pytest.raises(TransientError) as write:
        _http().request("POST", "/cards", operation="create")
    with pytest.raises(TransientError) as read:
        _http().request("GET", "/cards/1", operation="get")
    assert write.value.outcome_unknown is True and read.value.outcome_unknown is False


@responses.activate
def test_a_connect_timeout_was_never_sent():
    responses.post(f"{BASE}/cards", body=requests.exceptions.ConnectTimeout("no route"))
    with pytest.raises(TransientError) as caught:
        _http().request("POST", "/cards", operation="create")
    assert caught.value.outcome_unknown is False


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
@responses.activate
def test_server_errors_and_408_are_transient_and_a_write_outcome_is_unknown(status):
    responses.post(f"{BASE}/cards", body="upstream broke", status=status)
    with pytest.raises(TransientError) as caught:
        _http().request("POST", "/cards", operation="create")
    assert caught.value.status_code == status and caught.value.outcome_unknown is True


@responses.activate
def test_other_client_errors_are_permanent():
    responses.get(f"{BASE}/x", json={"error": "conflict"}, status=409)
    with pytest.raises(PermanentError) as caught:
        _http().request("GET", "/x", operation="get")
    assert not caught.value.retryable and not caught.value.trips_breaker


@responses.activate
def test_answers_are_parsed_defensively():
    responses.get(f"{BASE}/a", body="not json", status=200)
    responses.get(f"{BASE}/b", body="null", status=200, content_type="application/json")
    responses.get(f"{BASE}/c", body="", status=204)
    client = _http()
    assert client.request("GET", "/a", operation="get").data == "not json"
    assert client.request("GET", "/b", operation="get").data is None
    assert client.request("GET", "/c", operation="get").data is None


@responses.activate
def test_a_success_labelled_json_that_does_not_parse_is_a_transient_error_with_an_unknown_outcome():
    cut = '{"id": "86abc", "name": "half a ta'
    responses.post(f"{BASE}/tasks", body=cut, status=200, content_type="application/json")
    responses.get(f"{BASE}/tasks", body=cut, status=200, content_type="application/json; charset=utf-8")
    client = _http()
    with pytest.raises(TransientError) as write:
        client.request("POST", "/tasks", operation="create", json_body={"name": "x"})
    assert write.value.retryable and write.value.outcome_unknown and write.value.status_code == 200
    assert "malformed JSON" in str(write.value)
    with pytest.raises(TransientError) as read:  # a lookup must not read a cut list as "no tasks"
        client.request("GET", "/tasks", operation="lookup")
    assert not read.value.outcome_unknown


def test_parse_body_survives_bad_bytes():
    response = requests.Response()
    response._content = b"\xff\xfe{"
    response.encoding = None
    assert isinstance(parse_body(response), str)


def test_parse_body_survives_an_answer_nested_thousands_deep():
    response = requests.Response()
    response._content = b"[" * 100_000
    response.encoding = "utf-8"
    assert isinstance(parse_body(response), str)


@responses.activate
def test_secrets_never_reach_errors_or_logs(caplog):
    responses.get(f"{BASE}/cards/1", body="invalid token T1 for key K1", status=401)
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as caught:
        _http().request("GET", "/cards/1", operation="get")
    assert "T1" not in str(caught.value) and "K1" not in str(caught.value)
    assert "T1" not in caplog.text and "K1" not in caplog.text
    # ...while the request itself did carry them as query parameters.
    assert "key=K1" in responses.calls[0].request.url and "token=T1" in responses.calls[0].request.url


def test_sessions_are_pooled_per_account_and_configuration():
    first, again = _http(), _http()
    assert first.session is again.session
    assert _http(params={"key": "K2", "token": "T1"}).session is not first.session
    assert _http(account_key="other").session is not first.session


def _calls(outcome):
    return (
        REGISTRY.get_sample_value(
            "archangel_provider_call_seconds_count", {"provider_type": "trello", "operation": "get", "outcome": outcome}
        )
        or 0
    )


@responses.activate
def test_every_call_is_timed_with_its_outcome():
    responses.get(f"{BASE}/ok", json={})
    responses.get(f"{BASE}/limited", json={}, status=429)
    before_ok, before_limited = _calls("ok"), _calls("rate_limited")
    client = _http()
    client.request("GET", "/ok", operation="get")
    with pytest.raises(RateLimited):
        client.request("GET", "/limited", operation="get")
    assert (_calls("ok"), _calls("rate_limited")) == (before_ok + 1, before_limited + 1)
