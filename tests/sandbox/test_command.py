"""``manage.py run_sandbox`` as its own process, and its place in ``make run`` (run_stack)."""

import os
import subprocess
import sys
import time

import requests

from tests.processes import ROOT, free_port


def test_run_sandbox_serves_with_its_flags_and_stops_on_sigterm():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env["ARCHANGEL_SANDBOX_TODOIST_TOKENS"] = "env-token"
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_sandbox",
            "--port",
            str(port),
            "--clickup-token",
            "pk_extra",
            "--clickup-per-token",
            "2",
            "--fault",
            "trello:error_next=1",
            "--todoist-sync-per-user",
            "7",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(base + "/_sandbox/health", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "the sandbox did not start"
                time.sleep(0.1)
        user = requests.get(base + "/clickup/api/v2/user", headers={"Authorization": "pk_extra"}, timeout=5)
        assert user.status_code == 200 and user.headers["X-RateLimit-Limit"] == "2"
        trello = requests.get(
            base + "/trello/1/members/me", params={"key": "demo-trello-key", "token": "demo-trello-token"}, timeout=5
        )
        assert trello.status_code == 500
        todoist = requests.get(base + "/todoist/api/v1/user", headers={"Authorization": "Bearer env-token"}, timeout=5)
        assert todoist.status_code == 200
        limits = requests.get(base + "/_sandbox/limits", timeout=5).json()
        assert limits["todoist"]["sync_per_user"] == 7
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert f"http://127.0.0.1:{port}/clickup/api/v2" in out


def test_run_stack_starts_the_sandbox_at_the_configured_url_unless_told_not_to(monkeypatch):
    from tasks_app.management.commands.run_stack import Command

    options = {"host": "127.0.0.1", "port": 8000, "workers": 1, "worker_concurrency": 1, "no_sandbox": False}
    monkeypatch.setenv("ARCHANGEL_SANDBOX_URL", "http://127.0.0.1:8123")
    commands = Command().commands(options)
    assert list(commands) == ["sandbox", "web", "worker", "beat"]
    assert commands["sandbox"][-5:] == ["run_sandbox", "--host", "127.0.0.1", "--port", "8123"]
    assert "sandbox" not in Command().commands({**options, "no_sandbox": True})


def test_the_demo_providers_point_at_the_sandbox():
    from tasks_app.management.commands.bootstrap_demo import DEMO_PROVIDERS

    bases = {kind: config["base_url"] for _, kind, config in DEMO_PROVIDERS}
    assert bases["clickup"].endswith(":8001/clickup/api/v2")
    assert bases["trello"].endswith(":8001/trello/1")
    assert bases["todoist"].endswith(":8001/todoist/api/v1")
