"""Shared pieces of the benchmark scenarios: a fresh PostgreSQL database, a real gunicorn
server, a concurrent HTTP load generator and percentiles.

Everything a scenario measures is measured in the same run as its baseline, so the
ratio holds even on a noisy machine.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_DATABASE", "archangel_bench")
if not BENCH_DB.startswith("archangel_bench") or not BENCH_DB.replace("_", "").isalnum():
    # The bench drops and re-creates this database: never let it name a real one.
    raise SystemExit(f"BENCH_DATABASE must start with archangel_bench and be alphanumeric, got {BENCH_DB!r}")

# The cache key prefix of the current bench database (CACHE_KEY_PREFIX; fresh_database makes a new
# one). Each fresh database numbers its users from 1 again, while the bench's Redis database keeps
# what earlier runs left: a user's throttle window (12,000 requests a minute) then counted an
# earlier run's requests made under the same user id, and a second ingest run within the same
# minute got 429s. A new namespace per database keeps every run's cache its own; old keys expire.
_cache_prefix = f"archangel-bench-{uuid.uuid4().hex[:8]}"


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    metric: str
    value: float
    unit: str
    baseline: str = ""
    target: str = ""
    ok: bool | None = None
    extra: dict = field(default_factory=dict)


def db_url(name: str = BENCH_DB) -> str:
    parts = urlsplit(ADMIN_URL)
    return parts._replace(path=f"/{name}").geturl()


def fresh_database() -> str:
    """Drop and create the bench database, give it a cache namespace of its own, migrate it,
    return its URL."""
    global _cache_prefix
    _cache_prefix = f"archangel-bench-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    url = db_url()
    manage("migrate", "--no-input", "--verbosity", "0", database_url=url)
    return url


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "archangel.settings",
            "LOG_LEVEL": "warning",
            "DEBUG": "false",
            "CACHE_KEY_PREFIX": _cache_prefix,
        }
    )
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    if port_open(urlsplit(redis_url).hostname, urlsplit(redis_url).port or 6379):
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def manage(*args: str, database_url: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=service_env(database_url),
        check=True,
        capture_output=capture,
        text=True,
    )
    return result.stdout if capture else ""


def make_token(database_url: str) -> str:
    code = (
        "from django.contrib.auth import get_user_model;"
        "from rest_framework.authtoken.models import Token;"
        "u, _ = get_user_model().objects.get_or_create(username='bench', defaults={'is_staff': True});"
        "print(Token.objects.get_or_create(user=u)[0].key)"
    )
    return manage("shell", "-c", code, database_url=database_url, capture=True).strip().splitlines()[-1]


def port_open(host: str | None, port: int) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(database_url: str, *, workers: int | None = None, threads: int | None = None, **env: str) -> Iterator[str]:
    """A real gunicorn serving the project with the production settings
    (``archangel/gunicorn_conf.py``: gthread workers with keep-alive); yields its base URL.
    ``workers``/``threads`` override the configuration's counts (``WEB_CONCURRENCY``,
    ``GUNICORN_THREADS``)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "-c", "python:archangel.gunicorn_conf", "archangel.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning",
    ]  # fmt: skip
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=service_env(database_url, **env))
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each kind of process on this machine, from
    ``/proc``: ``server`` (gunicorn), ``postgres``, ``redis``, ``loadgen`` (this process) and
    ``other``. Two snapshots around a load give what each request cost each of them. Every
    process of a kind counts, the bench's or not (run it with nothing else on the machine), and a
    process that ended between the snapshots does not. Empty where there is no ``/proc``."""
    totals: dict[str, float] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return totals
    ticks = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if entry.name == me:
            kind = "loadgen"
        elif b"gunicorn" in cmdline:
            kind = "server"
        elif name.startswith("postgres"):
            kind = "postgres"
        elif name.startswith("redis"):
            kind = "redis"
        else:
            kind = "other"
        totals[kind] = totals.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request of each kind of process between two ``cpu_seconds()``.
    A process that ended in between is not counted."""
    return {kind: (after[kind] - before.get(kind, 0.0)) * 1000 / requests for kind in after}


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    # Open loop (``load(rate=...)``) only: the offered rate, and how long after its due time
    # each request was sent (waiting for a free connection, or the generator itself late),
    # already inside its latency.
    offered_rate: float | None = None
    send_lag_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies_ms, pct)


class _Connection:
    """One persistent HTTP/1.1 connection on a raw socket: the request bytes are built once
    and the answer is read with the least parsing that finds its end (``Content-Length``,
    chunked, or the connection closing). ``http.client`` parses every header through the
    ``email`` package, which on a two-core machine shared with the server cost the server
    a noticeable share of the CPU it is being measured on."""

    def __init__(self, host: str, port: int, timeout: float = 60) -> None:
        self.address = (host, port)
        self.host_header = f"Host: {host}:{port}\r\n".encode()
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def encode(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self.host_header]
        head += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
        if body is not None or method in {"POST", "PUT", "PATCH"}:
            head.append(f"Content-Length: {len(body or b'')}\r\n".encode())
        head.append(b"\r\n")
        return b"".join(head) + (body or b"")

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        return chunk

    def _read_until(self, marker: bytes) -> bytes:
        while (index := self.buffer.find(marker)) < 0:
            self.buffer += self._recv()
        found, self.buffer = self.buffer[:index], self.buffer[index + len(marker) :]
        return found

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self._recv()
        found, self.buffer = self.buffer[:size], self.buffer[size:]
        return found

    def exchange(self, method: str, request: bytes) -> tuple[int, bytes]:
        """Send one request, read its answer: (status, body). Raises OSError on a broken connection."""
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request)
        head = self._read_until(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        close = b"\r\nconnection: close" in lowered or head.startswith(b"HTTP/1.0")
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif (at := lowered.find(b"\r\ncontent-length:")) >= 0:
            line_end = lowered.find(b"\r\n", at + 2)
            body = self._read_exactly(int(lowered[at + 17 : line_end if line_end >= 0 else None]))
        elif b"\r\ntransfer-encoding: chunked" in lowered:
            parts = []
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                parts.append(self._read_exactly(size))
                self._read_exactly(2)
            self._read_until(b"\r\n")  # no trailers are sent to us
            body = b"".join(parts)
        else:
            close = True
            try:
                while True:
                    self.buffer += self._recv()
            except ConnectionError:
                pass
            body, self.buffer = self.buffer, b""
        if close:
            self.close()
        return status, body


def load(
    base_url: str,
    *,
    concurrency: int,
    requests: int,
    make_request: Callable[[int], tuple[str, str, bytes | None, dict[str, str]]],
    ok_statuses: frozenset[int] = frozenset({200, 201, 202, 204}),
    rate: float | None = None,
) -> LoadResult:
    """Send ``requests`` requests from ``concurrency`` threads; ``make_request(i)`` gives
    (method, path, body, headers) for the i-th request.

    Each thread keeps one HTTP/1.1 connection open for as long as the server allows (a
    server that closes it costs a reconnect inside the next request's latency, as a real
    client would see it). Latency is measured per request, from the first byte sent to
    the last byte of the answer; a status outside ``ok_statuses`` or a broken connection
    (status 0) counts as an error.

    Without ``rate`` the load is a closed loop: each thread sends its next request when the
    previous answer is in, so the server sets the pace (saturation throughput; by Little's law
    the mean latency is then ``concurrency / rate``, whatever the server does per request).

    With ``rate`` (requests per second, all threads together) the load is open: request ``i``
    is due at ``start + i / rate`` whatever happened before, the next free thread sends it
    (sleeping until it is due), and its latency runs from when it was **due**, not from when it
    was sent. A stall therefore counts against every request that waited behind it instead of
    delaying (and so hiding) them (no coordinated omission). ``concurrency`` threads bound the
    requests in flight; when all are busy, due requests wait and the wait is in their latency.
    The result's rate is what was achieved (answers over the time to the last one), and
    ``send_lag_ms`` how long after its due time each request went out (no connection free, or
    the generator itself late: it shares the machine).
    """
    parts = urlsplit(base_url)
    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lags: list[float] = []
    errors = 0
    start = 0.0  # set before the threads start

    def worker():
        nonlocal errors
        conn = _Connection(parts.hostname, parts.port)
        mine: list[float] = []
        my_lags: list[float] = []
        my_statuses: dict[int, int] = {}
        my_errors = 0
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            method, path, body, headers = make_request(i)
            request = conn.encode(method, path, body, headers)
            if rate:
                due = start + i / rate
                if (delay := due - time.perf_counter()) > 0:
                    time.sleep(delay)
                my_lags.append((time.perf_counter() - due) * 1000)
                started = due
            else:
                started = time.perf_counter()
            try:
                status, _ = conn.exchange(method, request)
            except (OSError, ValueError):
                conn.close()
                status = 0
            mine.append((time.perf_counter() - started) * 1000)
            my_statuses[status] = my_statuses.get(status, 0) + 1
            if status not in ok_statuses:
                my_errors += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            lags.extend(my_lags)
            for status, count in my_statuses.items():
                statuses[status] = statuses.get(status, 0) + count
            errors += my_errors

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoadResult(requests, errors, time.perf_counter() - start, latencies, statuses, rate, lags)


def json_request(method: str, path: str, payload, token: str, **headers: str):
    body = json.dumps(payload).encode()
    return method, path, body, {"Content-Type": "application/json", "Authorization": f"Token {token}", **headers}


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
