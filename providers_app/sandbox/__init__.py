"""The provider sandbox: ClickUp, Trello and Todoist as the adapters use them, in memory, with
their auth checks, error bodies and rate limits, and with fault injection (docs/operations.md,
"The provider sandbox"). ``python manage.py run_sandbox`` runs it as a process; tests embed
:class:`SandboxServer` in a thread."""

from providers_app.sandbox.core import Faults
from providers_app.sandbox.engine import Sandbox
from providers_app.sandbox.server import PREFIXES, SandboxServer

__all__ = ["PREFIXES", "Faults", "Sandbox", "SandboxServer"]
