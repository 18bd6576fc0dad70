"""Serve the provider sandbox: ClickUp, Trello and Todoist as the adapters use them, in memory.

`make run` starts it through run_stack; the demo providers (bootstrap_demo) point at it.
Everything set by a flag here can also be changed while it runs through the control API
(docs/operations.md, "The provider sandbox").
"""

import os
import signal
import threading
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from providers_app.sandbox import PREFIXES, Sandbox, SandboxServer
from providers_app.sandbox.core import PROVIDERS, Faults

DEFAULT_URL = "http://127.0.0.1:8001"

EPILOG = """
Credentials: the demo's are always accepted (ClickUp pk_demo_clickup; Trello key demo-trello-key,
token demo-trello-token; Todoist demo-todoist-token). Add more with the flags or with comma-separated
ARCHANGEL_SANDBOX_CLICKUP_TOKENS, ARCHANGEL_SANDBOX_TRELLO_KEYS, ARCHANGEL_SANDBOX_TRELLO_TOKENS,
ARCHANGEL_SANDBOX_TODOIST_TOKENS. Unknown credentials get the provider's real 401.

Rate limits (defaults are the providers'): ClickUp 100/60 s per token, Trello 100/10 s per token and
300/10 s per key (and 100/900 s per token on /1/members/), Todoist 1000/900 s per user.

Faults (per provider with --fault PROVIDER:KNOB=VALUE, for all with the shortcuts):
  latency_ms, jitter_ms   delay every request by latency_ms + uniform(0, jitter_ms)
  error_rate, error_next  answer error_status (5xx, default 500) before any effect, to a fraction
                          of requests / to the next N
  error_seconds           answer error_status to every request for N seconds ("down for a while")
  timeout_rate, timeout_next, timeout_seconds
                          perform the effect, then hold the answer timeout_seconds (default 30)
  drop_rate, drop_next    writes only: perform the effect, then close the connection unanswered
  malformed_rate, malformed_next
                          perform the effect, then answer 2xx with its JSON body cut short
  reset_rate, reset_next  reset the connection (TCP RST) before any effect
  storm_seconds           answer the provider's 429 to every request for N seconds

Control API (JSON, loopback only: it has no authentication):
  GET  /_sandbox/state[?items=0]   tasks per provider, request counts by status, over_limit,
                                   creates_by_marker, creates_by_request_id, duplicates, faults
  GET  /_sandbox/effects[?since=SEQ&provider=P]   every create/update/close/delete in order
  POST /_sandbox/reset             forget tasks, counters, windows and faults
  GET|POST|DELETE /_sandbox/faults {"trello": {"error_seconds": 60}} or {"provider": "*", ...}
  GET|POST /_sandbox/limits        {"enabled": true, "clickup": {"per_token": 5, "period": 60}}
  GET|POST /_sandbox/credentials   {"clickup_tokens": ["pk_x"], "trello_keys": [...], ...}
  GET|POST /_sandbox/config        {"marker_pattern": "...", "idempotency_window": 3600,
                                    "request_id_max": 36, "clickup": {"lists": ["902"]},
                                    "trello": {"boards": {"<board>": ["<list>", ...]}},
                                    "todoist": {"projects": ["6Other"]}}
"""


def _csv_env(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def _fault(value: str) -> tuple[str, str, str]:
    target, _, assignment = value.rpartition(":") if ":" in value.split("=")[0] else ("*", "", value)
    knob, sep, raw = assignment.partition("=")
    if not sep or knob not in Faults.KNOBS or (target != "*" and target not in PROVIDERS):
        raise CommandError(
            f"--fault {value!r}: expected [PROVIDER:]KNOB=VALUE with a knob in {', '.join(Faults.KNOBS)}"
        )
    return target, knob, raw


class Command(BaseCommand):
    help = "Serve the ClickUp, Trello and Todoist sandbox (in memory, with rate limits and fault injection)."
    requires_system_checks: list = []
    requires_migrations_checks = False

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser):
        from argparse import RawDescriptionHelpFormatter

        parser.formatter_class = RawDescriptionHelpFormatter
        default = urlsplit(os.environ.get("ARCHANGEL_SANDBOX_URL") or DEFAULT_URL)
        parser.add_argument("--host", default=default.hostname or "127.0.0.1")
        parser.add_argument("--port", type=int, default=default.port or 8001)
        parser.add_argument("--clickup-token", action="append", default=[], help="accept this ClickUp token too")
        parser.add_argument("--trello-key", action="append", default=[], help="accept this Trello API key too")
        parser.add_argument("--trello-token", action="append", default=[], help="accept this Trello token too")
        parser.add_argument("--todoist-token", action="append", default=[], help="accept this Todoist token too")
        parser.add_argument("--clickup-list", action="append", default=[], help="another ClickUp list id")
        parser.add_argument(
            "--trello-board", action="append", default=[], help="another Trello board: BOARD_ID:LIST_ID,LIST_ID"
        )
        parser.add_argument("--todoist-project", action="append", default=[], help="another Todoist project id")
        parser.add_argument("--no-rate-limits", action="store_true", help="answer every request (benchmarks)")
        parser.add_argument("--clickup-per-token", type=float, help="ClickUp requests per period per token")
        parser.add_argument("--clickup-period", type=float, help="ClickUp window in seconds (60)")
        parser.add_argument("--trello-per-token", type=float, help="Trello requests per period per token")
        parser.add_argument("--trello-per-key", type=float, help="Trello requests per period per key")
        parser.add_argument("--trello-period", type=float, help="Trello window in seconds (10)")
        parser.add_argument("--todoist-per-user", type=float, help="Todoist requests per period per user")
        parser.add_argument("--todoist-period", type=float, help="Todoist window in seconds (900)")
        parser.add_argument(
            "--todoist-sync-per-user", type=float, help="Todoist POST /sync requests per period per user (1000)"
        )
        parser.add_argument("--latency-ms", type=float, help="fault for all providers: fixed latency")
        parser.add_argument("--jitter-ms", type=float, help="fault for all providers: extra uniform jitter")
        parser.add_argument("--error-rate", type=float, help="fault for all providers: fraction of 5xx")
        parser.add_argument("--error-status", type=int, help="the 5xx status of injected errors (500)")
        parser.add_argument("--timeout-rate", type=float, help="fault for all providers: fraction held")
        parser.add_argument("--timeout-seconds", type=float, help="how long a held answer waits (30)")
        parser.add_argument("--drop-rate", type=float, help="fault for all providers: writes dropped after effect")
        parser.add_argument("--storm-seconds", type=float, help="fault for all providers: 429 to everything")
        parser.add_argument(
            "--fault", action="append", default=[], metavar="[PROVIDER:]KNOB=VALUE", help="any fault knob"
        )
        parser.add_argument("--seed", type=int, help="seed the fault dice, to replay a run")
        parser.add_argument("--marker-pattern", help="regex whose group 1 is the adapters' reference marker")
        parser.add_argument(
            "--idempotency-window", type=float, default=3600.0, help="seconds a Todoist X-Request-Id is remembered"
        )
        parser.add_argument("--request-id-max", type=int, default=36, help="max X-Request-Id bytes (0: no cap)")
        parser.add_argument("--access-log", action="store_true", help="log every request")

    def handle(self, *args, **options):
        server = SandboxServer(
            options["host"], options["port"], access_log=options["access_log"], sandbox=self._sandbox(options)
        )
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        server.start()
        self.stdout.write(f"Provider sandbox on {server.url} (control API: {server.url}/_sandbox/state)")
        for provider, prefix in PREFIXES.items():
            self.stdout.write(f"  {provider:8} base_url {server.url}{prefix}")
        self.stdout.flush()
        stop.wait()
        server.stop()
        self.stdout.write("sandbox stopped")

    def _sandbox(self, options) -> Sandbox:
        credentials = {
            "clickup_tokens": options["clickup_token"] + _csv_env("ARCHANGEL_SANDBOX_CLICKUP_TOKENS"),
            "trello_keys": options["trello_key"] + _csv_env("ARCHANGEL_SANDBOX_TRELLO_KEYS"),
            "trello_tokens": options["trello_token"] + _csv_env("ARCHANGEL_SANDBOX_TRELLO_TOKENS"),
            "todoist_tokens": options["todoist_token"] + _csv_env("ARCHANGEL_SANDBOX_TODOIST_TOKENS"),
        }
        limits: dict[str, dict] = {}
        for flag, provider, key in (
            ("clickup_per_token", "clickup", "per_token"),
            ("clickup_period", "clickup", "period"),
            ("trello_per_token", "trello", "per_token"),
            ("trello_per_key", "trello", "per_key"),
            ("trello_period", "trello", "period"),
            ("todoist_per_user", "todoist", "per_user"),
            ("todoist_period", "todoist", "period"),
            ("todoist_sync_per_user", "todoist", "sync_per_user"),
        ):
            if options[flag] is not None:
                limits.setdefault(provider, {})[key] = options[flag]
        faults: dict[str, dict] = {}
        for knob in (
            "latency_ms",
            "jitter_ms",
            "error_rate",
            "error_status",
            "timeout_rate",
            "timeout_seconds",
            "drop_rate",
            "storm_seconds",
        ):
            if options[knob] is not None:
                faults.setdefault("*", {})[knob] = options[knob]
        for value in options["fault"]:
            target, knob, raw = _fault(value)
            faults.setdefault(target, {})[knob] = raw
        containers: dict[str, dict] = {}
        if options["clickup_list"]:
            containers["clickup"] = {"lists": options["clickup_list"]}
        if options["trello_board"]:
            boards = {}
            for spec in options["trello_board"]:
                board, _, lists = spec.partition(":")
                boards[board] = [x for x in lists.split(",") if x]
            containers["trello"] = {"boards": boards}
        if options["todoist_project"]:
            containers["todoist"] = {"projects": options["todoist_project"]}
        config = {
            "credentials": credentials,
            "limits": limits,
            "rate_limits": not options["no_rate_limits"],
            "seed": options["seed"],
            "idempotency_window": options["idempotency_window"],
            "request_id_max": options["request_id_max"],
            "containers": containers,
        }
        if options["marker_pattern"]:
            config["marker_pattern"] = options["marker_pattern"]
        try:
            sandbox = Sandbox(**config)
            if faults:
                # "*" first, so a provider-specific knob overrides the shortcut for that provider.
                ordered = {"*": faults.pop("*")} if "*" in faults else {}
                ordered.update(faults)
                for target, knobs in ordered.items():
                    sandbox.set_faults({target: knobs})
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return sandbox
