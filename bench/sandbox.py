"""Sandbox: how many requests per second the provider sandbox serves, so the drain benchmark
can show the sandbox is not its bottleneck.

The sandbox runs as its own process (``manage.py run_sandbox --no-rate-limits``), exactly as
``make run`` starts it; the load generator keeps one HTTP/1.1 connection per client thread, as
the adapters' pooled sessions do. Each request creates a ClickUp task (small JSON in and out,
the effect under the sandbox's lock). Beside it, in the same run: a bare stdlib HTTP server
answering ``{}`` to the same load (what Python's http.server costs by itself), and, with 20 ms
of injected latency, the ceiling ``clients / 20 ms``.

Target: at least 1,000 requests/s with 4 clients and no latency (issue 3).
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import requests

from bench.common import ROOT, Row, free_port, load, port_open, service_env

REQUESTS = int(os.environ.get("BENCH_SANDBOX_REQUESTS", "6000"))
LATENCY_REQUESTS = int(os.environ.get("BENCH_SANDBOX_LATENCY_REQUESTS", "1200"))
BODY = json.dumps({"name": "bench task", "description": "archangel-ref: bench", "priority": 3}).encode()
HEADERS = {"Authorization": "pk_demo_clickup", "Content-Type": "application/json"}

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            head = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\n\\r\\n"
            self.wfile.write(head + b"{}")

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def _create(i):
    return "POST", "/clickup/api/v2/list/901/task", BODY, HEADERS


def _start(cmd, port, env):
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{cmd[1:3]} did not start")
        time.sleep(0.1)
    return proc


def _stop(proc):
    proc.terminate()
    proc.wait(timeout=30)


def run(database_url: str) -> list[Row]:
    env = service_env(database_url)
    port, bare_port = free_port(), free_port()
    sandbox = _start([sys.executable, "manage.py", "run_sandbox", "--port", str(port), "--no-rate-limits"], port, env)
    bare = _start([sys.executable, "-c", BARE_SERVER, str(bare_port)], bare_port, env)
    url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
    try:
        load(url, concurrency=4, requests=500, make_request=_create)  # warm up
        fast = load(url, concurrency=4, requests=REQUESTS, make_request=_create)
        floor = load(bare_url, concurrency=4, requests=REQUESTS, make_request=_create)
        print(f"   0 ms, 4 clients: {fast.rate:,.0f} req/s (bare http.server {floor.rate:,.0f})", flush=True)
        requests.post(f"{url}/_sandbox/faults", json={"clickup": {"latency_ms": 20}}, timeout=5).raise_for_status()
        rows_20 = []
        for clients in (4, 16):
            result = load(url, concurrency=clients, requests=LATENCY_REQUESTS, make_request=_create)
            rows_20.append((clients, result))
            print(f"   20 ms, {clients} clients: {result.rate:,.0f} req/s, p99 {result.p(99):.0f} ms", flush=True)
        state = requests.get(f"{url}/_sandbox/state?items=0", timeout=5).json()
    finally:
        _stop(sandbox)
        _stop(bare)
    errors = fast.errors + sum(r.errors for _, r in rows_20)
    rows = [
        Row(
            "sandbox",
            "ClickUp creates, 4 clients, no latency",
            fast.rate,
            "req/s",
            f"bare http.server answering {{}}: {floor.rate:,.0f} req/s (sandbox = {fast.rate / floor.rate:.0%}); "
            f"p50 {fast.p(50):.1f} ms, p99 {fast.p(99):.1f} ms",
            ">= 1,000 req/s",
            fast.rate >= 1000 and errors == 0,
            {"p50_ms": fast.p(50), "p99_ms": fast.p(99), "bare_rate": floor.rate, "errors": errors},
        )
    ]
    for clients, result in rows_20:
        ceiling = clients / 0.020
        rows.append(
            Row(
                "sandbox",
                f"ClickUp creates, {clients} clients, 20 ms latency",
                result.rate,
                "req/s",
                f"ceiling {clients} / 20 ms = {ceiling:,.0f} req/s ({result.rate / ceiling:.0%}); "
                f"p99 {result.p(99):.0f} ms",
                "",
                None,
                {"p99_ms": result.p(99), "ceiling": ceiling},
            )
        )
    rows[0].extra["creates_in_sandbox"] = state["creates"]["clickup"]
    return rows
