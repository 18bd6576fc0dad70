"""An embedded sandbox on a free port, shared by the module's tests and reset before each."""

import pytest
import requests

from providers_app.sandbox import SandboxServer
from providers_app.sandbox.core import DEFAULT_LIMITS, DEFAULT_MARKER_PATTERN

CLICKUP = {"Authorization": "pk_demo_clickup"}
TRELLO = {"key": "demo-trello-key", "token": "demo-trello-token"}
TODOIST = {"Authorization": "Bearer demo-todoist-token"}
DEMO_LIST = "901"
BOARD = "5a1111111111111111111111"
TODO, DOING, DONE = "5a2222222222222222222222", "5a3333333333333333333333", "5a4444444444444444444444"


@pytest.fixture(scope="session")
def sandbox_server():
    server = SandboxServer(seed=7).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server):
    sandbox_server.sandbox.reset()
    sandbox_server.sandbox.set_limits({"enabled": True, **DEFAULT_LIMITS})
    sandbox_server.sandbox.configure({"marker_pattern": DEFAULT_MARKER_PATTERN})
    yield sandbox_server
    sandbox_server.sandbox.reset()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


class Client:
    """Thin helpers so tests read as the adapters' requests."""

    def __init__(self, server, session):
        self.server = server
        self.s = session

    def clickup(self, method, path, **kw):
        headers = {**CLICKUP, **kw.pop("headers", {})}
        return self.s.request(method, self.server.base_url("clickup") + path, headers=headers, timeout=10, **kw)

    def trello(self, method, path, params=None, **kw):
        return self.s.request(
            method, self.server.base_url("trello") + path, params={**TRELLO, **(params or {})}, timeout=10, **kw
        )

    def todoist(self, method, path, **kw):
        headers = {**TODOIST, **kw.pop("headers", {})}
        return self.s.request(method, self.server.base_url("todoist") + path, headers=headers, timeout=10, **kw)

    def control(self, method, path, **kw):
        return self.s.request(method, f"{self.server.url}/_sandbox/{path}", timeout=10, **kw)

    def state(self, items=True):
        return self.control("GET", "state" + ("" if items else "?items=0")).json()


@pytest.fixture
def client(sandbox, http):
    return Client(sandbox, http)
