"""Run the whole system in the foreground: web server, Celery worker, Celery beat and the
provider sandbox (ClickUp, Trello and Todoist in memory, which the demo providers point at).

Used by `make run`. Ctrl-C (or SIGTERM) stops every process; if one of them dies,
the others are stopped too and the command exits non-zero, so a broken stack
never half-runs.
"""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand

SANDBOX_URL = "http://127.0.0.1:8001"


class Command(BaseCommand):
    help = "Start gunicorn, a Celery worker, Celery beat and the provider sandbox; stop them all on Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
        parser.add_argument("--worker-concurrency", type=int, default=int(os.environ.get("CELERY_CONCURRENCY", "2")))
        parser.add_argument(
            "--no-sandbox",
            action="store_true",
            help="do not start the provider sandbox (its URL comes from ARCHANGEL_SANDBOX_URL)",
        )

    def commands(self, options) -> dict[str, list[str]]:
        python = sys.executable
        commands = {}
        if not options.get("no_sandbox"):
            # First, so the demo providers' base_url answers before the worker delivers to it.
            sandbox = urlsplit(os.environ.get("ARCHANGEL_SANDBOX_URL") or SANDBOX_URL)
            commands["sandbox"] = [
                python,
                str(settings.BASE_DIR / "manage.py"),
                "run_sandbox",
                "--host",
                sandbox.hostname or "127.0.0.1",
                "--port",
                str(sandbox.port or 8001),
            ]
        return commands | {
            "web": [
                python,
                "-m",
                "gunicorn",
                # The production worker model (gthread with keep-alive), as docker-compose runs it.
                "-c",
                "python:archangel.gunicorn_conf",
                "archangel.wsgi:application",
                "--bind",
                f"{options['host']}:{options['port']}",
                "--workers",
                str(options["workers"]),
                "--access-logfile",
                "-",
                "--graceful-timeout",
                "10",
            ],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "archangel",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(options["worker_concurrency"]),
            ],
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "archangel",
                "beat",
                "--loglevel",
                "INFO",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
            ],
        }

    def handle(self, *args, **options):
        procs: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(signum=None, frame=None):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, cmd in self.commands(options).items():
            # Own process group, so a terminal's Ctrl-C reaches us first and we stop them in order.
            procs[name] = subprocess.Popen(cmd, start_new_session=True)
            self.stdout.write(f"started {name} (pid {procs[name].pid})")
        self.stdout.write(
            self.style.SUCCESS(
                f"Archangel is running on http://{options['host']}:{options['port']}/ — Ctrl-C stops it."
            )
        )
        if "sandbox" in procs:
            sandbox_url = os.environ.get("ARCHANGEL_SANDBOX_URL") or SANDBOX_URL
            self.stdout.write(f"Provider sandbox (the demo providers deliver there): {sandbox_url}/_sandbox/state")

        exit_code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with status {proc.returncode}; stopping the others")
                    exit_code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.5)

        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        self.stdout.write("stopped")
        if exit_code:
            sys.exit(exit_code)
