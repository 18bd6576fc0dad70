"""archangel.urls plus ``POST /bench/bare``: a plain Django view that reads the body and answers
a small JSON object (no signature, no database, no broker), through the same middleware."""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from archangel.urls import *  # noqa: F403
from archangel.urls import urlpatterns as _app_patterns


@csrf_exempt
def bare(request):
    return JsonResponse({"status": "accepted", "bytes": len(request.body)})


urlpatterns = [path("bench/bare", bare), *_app_patterns]
