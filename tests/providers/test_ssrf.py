"""A provider base_url into our own network is refused unless a setting allows it (SSRF)."""

import pytest

from providers_app.models import Provider
from providers_app.netguard import private_url_problem

PRIVATE = [
    "http://127.0.0.1:8001/clickup/api/v2",
    "http://localhost/api",
    "http://[::1]/x",
    "http://10.1.2.3/",
    "http://192.168.0.10/",
    "http://172.16.5.5/",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://0.0.0.0/",
    "http://2130706433/",  # 127.0.0.1 spelled as one decimal number
    "http://0x7f.1/",  # and in hex
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[fd00::1]/",
    "http://100.64.0.1/",  # carrier-grade NAT
]


@pytest.fixture
def guarded(settings):
    settings.ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS = False


@pytest.mark.parametrize("url", PRIVATE)
def test_non_public_addresses_are_refused(guarded, url):
    assert "non-public" in private_url_problem(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.clickup.com/api/v2",
        "http://93.184.216.34/",
        "https://[2606:4700::1]/",
        "https://no-such-host.invalid/",
    ],
)
def test_public_addresses_and_unresolvable_names_pass(guarded, url):
    assert private_url_problem(url) is None


def test_the_setting_allows_them(settings):
    settings.ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS = True
    assert private_url_problem("http://127.0.0.1:8001/") is None


def test_the_api_refuses_a_loopback_base_url_naming_the_field_and_writes_nothing(operator_api, guarded):
    body = {"name": "Sneaky", "type": "todoist", "config": {"api_token": "t0k", "base_url": "http://127.0.0.1:6379/"}}
    response = operator_api.post("/api/providers", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "non-public" in error["fields"]["config.base_url"][0]
    assert not Provider.objects.filter(name="Sneaky").exists()


def test_credentials_in_a_base_url_are_refused(operator_api):
    body = {"name": "Leaky", "type": "todoist", "config": {"api_token": "t", "base_url": "https://u:p@example.com/"}}
    response = operator_api.post("/api/providers", body, format="json")
    assert response.status_code == 400
    assert "credentials" in response.json()["error"]["fields"]["config.base_url"][0]


def test_a_plain_http_base_url_is_refused_by_default(operator_api, settings):
    settings.ARCHANGEL_PLAIN_HTTP_HOSTS = []
    body = {
        "name": "Plain",
        "type": "todoist",
        "config": {"api_token": "t", "base_url": "http://api.todoist.com/api/v1"},
    }
    response = operator_api.post("/api/providers", body, format="json")
    assert response.status_code == 400
    assert "https" in response.json()["error"]["fields"]["config.base_url"][0]
    assert not Provider.objects.filter(name="Plain").exists()


def test_listed_hosts_may_use_plain_http(settings):
    from providers_app.netguard import plain_http_problem

    settings.ARCHANGEL_PLAIN_HTTP_HOSTS = ["sandbox.internal"]
    assert plain_http_problem("http://sandbox.internal:8001/x") is None
    assert plain_http_problem("http://other.internal/x")
    assert plain_http_problem("https://other.internal/x") is None
