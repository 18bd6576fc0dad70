"""API plumbing shared by every app: the error envelope, pagination, common errors.

Every 4xx (and 5xx) the API answers has one shape::

    {"error": {"status": 400, "code": "invalid",
               "message": "title: This field is required.",
               "fields": {"title": ["This field is required."]}}}

``fields`` maps a dotted field path (``tasks.3.deadline`` inside a bulk request)
to its messages; ``details`` carries extra facts where a client can act on them
(the allowed status transitions of a 409, for instance).
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import IntegrityError
from django.db.models import F
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from archangel.errors import DomainError, InvalidInput

# A canonical UUID in a URL; anything else is a 404 from the URL resolver.
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service temporarily unavailable."
    default_code = "unavailable"


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error structure into ``{"a.b.0.c": ["message", ...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            path = f"{prefix}.{name}" if prefix and name else (prefix or name)
            for field, messages in flatten_errors(value, path).items():
                out.setdefault(field, []).extend(messages)
    elif isinstance(detail, list) and detail and all(isinstance(item, (dict, list)) for item in detail):
        for index, item in enumerate(detail):
            path = f"{prefix}.{index}" if prefix else str(index)
            for field, messages in flatten_errors(item, path).items():
                out.setdefault(field, []).extend(messages)
    elif isinstance(detail, list):
        out.setdefault(prefix, []).extend(str(item) for item in detail)
    elif detail not in (None, "", {}):
        out.setdefault(prefix, []).append(str(detail))
    return out


def error_body(status_code: int, code: str, message: str, fields=None, details=None) -> dict:
    error: dict[str, Any] = {"status": status_code, "code": code, "message": message, "fields": fields or {}}
    if details:
        error["details"] = details
    return {"error": error}


def _summary(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {msgs[0]}" if name else msgs[0] for name, msgs in fields.items() if msgs]
    if not parts:
        return "Invalid input."
    more = len(parts) - 1
    return parts[0] + (f" (and {more} more)" if more else "")


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        fields = {("" if k == "non_field_errors" else k): v for k, v in exc.fields.items()}
        fields = {k: v for k, v in fields.items() if k}
        set_rollback()
        return Response(error_body(exc.status_code, exc.code, exc.message, fields, exc.details), status=exc.status_code)
    if isinstance(exc, IntegrityError):
        # A uniqueness check raced a concurrent insert (or a row vanished under a
        # foreign key): the request conflicts with what is stored now.
        set_rollback()
        return Response(
            error_body(409, "conflict", "The request conflicts with data changed concurrently; retry it."), status=409
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a 500: Django's handler500 renders it (see archangel.urls)
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = {k: v for k, v in flatten_errors(exc.detail).items() if k}
        general = flatten_errors(exc.detail).get("", [])
        message = general[0] if general and not fields else _summary(fields) if fields else "Invalid input."
        response.data = error_body(response.status_code, "invalid", message, fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        if isinstance(detail, (dict, list)):
            fields = {k: v for k, v in flatten_errors(detail).items() if k}
            message = _summary(fields) if fields else "; ".join(flatten_errors(detail).get("", [])) or code
        else:
            fields, message = {}, str(detail)
        response.data = error_body(response.status_code, code, message, fields)
    return response


def json_error(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(status_code, code, message), status=status_code)


class Pagination(PageNumberPagination):
    """``?page=N&page_size=M`` → ``{count, next, previous, results}``; page size capped."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        """A page that is not a positive number, or past the last one, is a 400 naming ``page``
        (DRF answers 404, which reads as "no such endpoint")."""
        try:
            return super().paginate_queryset(queryset, request, view)
        except exceptions.NotFound:
            raw = request.query_params.get(self.page_query_param, "")
            if raw in self.last_page_strings or (raw.isdigit() and int(raw) >= 1):
                pages = self.django_paginator_class(queryset, self.get_page_size(request)).num_pages
                raise InvalidInput({"page": [f"There is no page {raw}; the last page is {pages}."]}) from None
            raise InvalidInput({"page": ["Must be a positive integer."]}) from None


class NullsLastOrderingFilter(OrderingFilter):
    """``?ordering=-score``: rows without a value sort last both ways, and ``id`` breaks ties
    so that pages never overlap or skip rows. An unknown field is a 400 naming ``ordering``
    (DRF drops it silently, which hides a client's typo behind a plausible answer), and the
    schema lists the fields a view sorts by."""

    def remove_invalid_fields(self, queryset, fields, view, request):
        valid = [item[0] for item in self.get_valid_fields(queryset, view, {"request": request})]
        fields = [term for term in fields if term]  # "score," is "score"
        unknown = [term for term in fields if term.removeprefix("-") not in valid]
        if unknown:
            raise InvalidInput(
                {self.ordering_param: [f"Unknown field {unknown[0]!r}; sort by {', '.join(valid)} (- for descending)."]}
            )
        return fields

    def get_schema_operation_parameters(self, view):
        fields = getattr(view, "ordering_fields", None)
        if not fields or fields == "__all__":
            return super().get_schema_operation_parameters(view)
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": f"Comma-separated fields to sort by, - for descending: {', '.join(fields)}.",
                "schema": {"type": "array", "items": {"type": "string", "enum": [*fields, *(f"-{f}" for f in fields)]}},
                "style": "form",
                "explode": False,
            }
        ]

    def filter_queryset(self, request, queryset, view):
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        exprs = [
            F(name[1:]).desc(nulls_last=True) if name.startswith("-") else F(name).asc(nulls_last=True)
            for name in ordering
        ]
        if not any(name.lstrip("-") in ("id", "pk") for name in ordering):
            exprs.append(F("id").asc())
        return queryset.order_by(*exprs)


class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    details = serializers.DictField(required=False)


class ErrorSerializer(serializers.Serializer):
    """The one error envelope of every 4xx and 5xx."""

    error = ErrorDetailSerializer()


def error_responses(*codes: int) -> dict:
    """drf-spectacular ``responses`` entries for the error codes an endpoint can answer
    (with 401 come 403 and 429, which every authenticated endpoint can answer)."""
    from drf_spectacular.utils import OpenApiResponse

    text = {
        400: "Invalid input (names each field and its problem).",
        401: "Missing or invalid token.",
        403: "The token's role does not allow this (read-only, or not an operator).",
        404: "No such object.",
        409: "Conflicts with the object's current state.",
        413: "Request body too large.",
        422: "Idempotency-Key reused with a different body.",
        429: "Too many requests for this token; see Retry-After.",
    }
    if 401 in codes:
        # Every authenticated endpoint can refuse a token's role or throttle it.
        codes = (*codes, 403, 429)
    return {code: OpenApiResponse(ErrorSerializer, description=text.get(code, "Error.")) for code in sorted(set(codes))}
