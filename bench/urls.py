"""archangel.urls plus two floors a scenario measures beside the endpoint under test:

- ``POST /bench/bare``: a plain Django view that reads the body and answers a small JSON object
  (no signature, no database, no broker), through the same middleware;
- ``POST /bench/floor``: the same through DRF with the API's defaults (token authentication,
  roles, the per-token throttle, JSON parsing and rendering) and no work: what any
  authenticated API request costs before its view does anything.
"""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response
from rest_framework.views import APIView

from archangel.urls import *  # noqa: F403
from archangel.urls import urlpatterns as _app_patterns


@csrf_exempt
def bare(request):
    return JsonResponse({"status": "accepted", "bytes": len(request.body)})


class Floor(APIView):
    def post(self, request):
        return Response({"status": "accepted", "fields": len(request.data)}, status=201)


urlpatterns = [path("bench/bare", bare), path("bench/floor", Floor.as_view()), *_app_patterns]
