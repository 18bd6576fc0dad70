"""Request body cap for the API, enforced before anything parses the body.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not apply to DRF's JSON parsing
(docs/reliability.md, "Webhooks"), so an oversized body is refused here from its
Content-Length with a 413 in the API's error envelope.
"""

from django.conf import settings

from archangel.api import json_error


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error(400, "invalid", "Content-Length is not a number.")
            limit = settings.ARCHANGEL["MAX_BODY_BYTES"]
            if length > limit:
                return json_error(413, "too_large", f"Request body is {length} bytes; the limit is {limit}.")
        return self.get_response(request)
