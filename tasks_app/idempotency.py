"""``Idempotency-Key`` for POST endpoints that create things.

A retry with the same key and the same body gets the first response again and
creates nothing; the same key with a different body is a 422. Keys are scoped to
the authenticated user and remembered for ``ARCHANGEL["IDEMPOTENCY_TTL_HOURS"]``.
Only successful (2xx) responses are remembered: a request that failed
validation can be corrected and retried under the same key.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from archangel.errors import InvalidInput, Unprocessable
from tasks_app.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEPT_HEADERS = ("Location", "X-Archangel-Duplicate")


def _request_hash(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _replay(record: IdempotencyRecord, request_hash: str) -> Response:
    if record.request_hash != request_hash:
        raise Unprocessable(f"This {HEADER} was already used with a different request body.")
    headers = {**record.response_headers, REPLAYED_HEADER: "true"}
    return Response(record.response_body, status=record.response_status, headers=headers)


def idempotent(request: Request, handler: Callable[[], Response]) -> Response:
    key = request.headers.get(HEADER)
    if key is None:
        return handler()
    key = key.strip()
    if not key or len(key) > 255 or not key.isprintable():
        raise InvalidInput({HEADER: ["Must be 1 to 255 printable characters."]})
    request_hash = _request_hash(request)
    expiry = timezone.now() - dt.timedelta(hours=settings.ARCHANGEL["IDEMPOTENCY_TTL_HOURS"])
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
            if record is not None and record.created_at >= expiry:
                return _replay(record, request_hash)
            response = handler()
            if 200 <= response.status_code < 300:
                if record is not None:
                    record.delete()  # expired: the key starts a new life
                IdempotencyRecord.objects.create(
                    user=request.user,
                    key=key,
                    request_hash=request_hash,
                    response_status=response.status_code,
                    response_body=json.loads(json.dumps(response.data, default=str)),
                    response_headers={h: response[h] for h in _KEPT_HEADERS if h in response},
                )
            return response
    except IntegrityError:
        # A concurrent request with the same key committed first; everything this one
        # wrote was rolled back with the transaction. Answer as that request did.
        record = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
        if record is None:
            raise
        return _replay(record, request_hash)
