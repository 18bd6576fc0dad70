"""Domain errors raised by services; the API's exception handler turns them into the error envelope.

Services stay free of HTTP and DRF: they raise these, and every entry point
(API, admin, commands, jobs) decides how to show them.
"""

from typing import Any


class DomainError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(
        self, message: str, *, fields: dict[str, list[str]] | None = None, details: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.details = details or {}


class InvalidInput(DomainError):
    """Field-level validation failure; ``fields`` names each field and its problems."""

    def __init__(self, fields: dict[str, list[str]], message: str | None = None):
        if message is None:
            first, msgs = next(iter(fields.items()))
            message = f"{first}: {msgs[0]}" if first and first != "non_field_errors" else msgs[0]
            if len(fields) > 1:
                message += f" (and {len(fields) - 1} more)"
        super().__init__(message, fields=fields)


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Unprocessable(DomainError):
    status_code = 422
    code = "unprocessable"
