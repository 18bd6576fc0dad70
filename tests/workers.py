"""Real Celery worker processes for the integration and reliability tests, and the waiting and
database helpers those tests share.

Each :class:`Workers` consumes a queue of its own (other tests' workers never take its jobs),
runs against the test database (named in its ``DATABASE_URL`` with an ``application_name``, so
a test can find and kill exactly its workers' connections) and the Redis it is given.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# Debugging a failing test: IT_WORKER_LOGLEVEL=INFO (with WORKER_LOG_DIR, below) keeps more of the workers' logs.
LOGLEVEL = os.environ.get("IT_WORKER_LOGLEVEL", "WARNING")


def worker_database_url(application_name: str = "") -> str:
    """The URL of the database this test runs in (pytest-django's ``test_`` database)."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"{url}?application_name={application_name}" if application_name else url


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Workers:
    """Celery workers (prefork) on queue ``outbox-it-<prefix>``.

    ``settings_module`` picks the worker's Django settings (default: the fake provider door of
    tests/integration); ``redis_url`` its broker and cache (default: the tests' Redis).
    """

    def __init__(
        self,
        prefix: str,
        *,
        settings_module: str = "tests.integration.worker_settings",
        redis_url: str | None = None,
        **env: str,
    ):
        self.queue = f"outbox-it-{prefix}"
        self.prefix = prefix
        self.settings_module = settings_module
        self.redis_url = redis_url or settings.REDIS_URL
        self.application_name = f"it-worker-{prefix}"
        self.env = env
        self.procs: list[subprocess.Popen] = []
        self._app = None

    def _env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PROMETHEUS_", "OTEL_"))}
        return {
            **base,
            "DATABASE_URL": worker_database_url(self.application_name),
            "REDIS_URL": self.redis_url,
            "DJANGO_SETTINGS_MODULE": self.settings_module,
            "FAKE_PROVIDER_PREFIX": self.prefix,
            "CELERY_METRICS_PORT": "0",
            "LOG_LEVEL": LOGLEVEL.lower(),
            **self.env,
        }

    def start(self, n: int = 1, concurrency: int = 2, pool: str = "prefork") -> None:
        for _ in range(n):
            # A name per worker, so wait_ready() can tell their answers apart.
            name = f"{self.queue}-{len(self.procs)}@%h"
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "archangel", "worker", "-Q", self.queue,
                     "--pool", pool, "--concurrency", str(concurrency), "--without-heartbeat",
                     "--without-gossip", "--without-mingle", "--loglevel", LOGLEVEL, "--hostname", name],
                    cwd=ROOT, env=self._env(), stdout=subprocess.DEVNULL, stderr=self._log(),
                    start_new_session=True,  # its own process group: SIGKILL reaches the pool children
                )
            )  # fmt: skip

    def _log(self):
        # WORKER_LOG_DIR=<dir> keeps each worker's log there (to see why one died); else nothing is kept.
        directory = os.environ.get("WORKER_LOG_DIR")
        if not directory:
            return subprocess.DEVNULL
        return open(Path(directory) / f"{self.queue}-{len(self.procs)}.log", "ab")

    def wait_ready(self, timeout: float = 30) -> None:
        """Until every started worker answers a ping: a test that times or races the workers
        should not be timing their start-up. The ping runs in a process of its own: after a
        Celery remote-control call in this process, a later ``fork`` (tests that fork do) can
        hang in the child."""
        names = sorted(f"{self.queue}-{i}" for i in range(len(self.procs)))
        code = (
            "import sys, time\n"
            "from celery import Celery\n"
            "app = Celery('ping', broker=sys.argv[1], set_as_current=False)\n"
            "names, deadline = set(sys.argv[3:]), time.monotonic() + float(sys.argv[2])\n"
            "while time.monotonic() < deadline:\n"
            "    replies = app.control.ping(timeout=0.5) or []\n"
            "    if names <= {n.split('@')[0] for reply in replies for n in reply}:\n"
            "        sys.exit(0)\n"
            "sys.exit(1)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, self.redis_url, str(timeout), *names], cwd=ROOT, timeout=timeout + 30
        )
        if result.returncode != 0:
            raise AssertionError(f"{len(names)} workers did not answer a ping within {timeout:.0f} s")

    def drain(self, times: int = 1) -> None:
        """Queue ``times`` drain jobs (as beat ticks and wake-ups would), on this pool's broker."""
        from outbox_app.jobs import outbox_drain

        if self.redis_url == settings.REDIS_URL:
            for _ in range(times):
                outbox_drain.apply_async(queue=self.queue)
            return
        # Another broker (a test's own redis-server): publish there, and never wait for it.
        with self.celery_app().connection_for_write(self.redis_url) as conn:
            for _ in range(times):
                outbox_drain.apply_async(queue=self.queue, connection=conn, retry=False)

    def celery_app(self):
        if self._app is None:
            from archangel.celery import app

            self._app = app
        return self._app

    def pool_children(self) -> list[int]:
        return [child for proc in self.procs for child in children(proc.pid)]

    def kill(self) -> None:
        """SIGKILL every worker: main processes and pool children, mid-delivery."""
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.procs.clear()

    def kill_one(self, rng: random.Random) -> str:
        """SIGKILL one worker process chosen by ``rng``: a whole worker (main process and pool
        children) or one pool child (its main process forks a new one). Returns what was killed."""
        victims = [("worker", proc) for proc in self.procs] + [("child", pid) for pid in self.pool_children()]
        kind, victim = rng.choice(victims)
        if kind == "worker":
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            self.procs.remove(victim)
            return f"worker {victim.pid}"
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return "nothing (the child had already gone)"
        return f"pool child {victim}"

    def supervise(self, concurrency: int = 2) -> list[tuple[int, int]]:
        """Start a new worker for each one that exited, as the deployment's supervisor does
        (docker-compose's ``restart: unless-stopped``); returns the (pid, exit code) of those."""
        exited = [(proc.pid, proc.returncode) for proc in self.procs if proc.poll() is not None]
        if exited:
            self.procs = [proc for proc in self.procs if proc.returncode is None]
            self.start(len(exited), concurrency=concurrency)
        return exited

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):  # it may have died already
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
        self.disconnect()

    def disconnect(self) -> None:
        """End the database sessions this pool's processes left (a killed worker's may linger)."""
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                # Ending a session is asynchronous: wait until they are gone, so that the test
                # database can be dropped at the end of the run.
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = %s",
                    [self.application_name],
                )
                if not cursor.fetchone()[0]:
                    return
                time.sleep(0.1)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.25, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s: {message}")
