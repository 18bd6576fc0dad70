"""The request path's own cost, in-process: no server, no load generator, one request at a time.

    python bench/inprocess.py                      # creates, the DRF floor, 1,000-task imports
    python bench/inprocess.py --profile create     # the same, with a cProfile of the creates
    BENCH_PROFILE_SORT=tottime python bench/inprocess.py --profile create   # by own time, not cumulative

Load benchmarks (bench/run.py) share two cores between the server, PostgreSQL and the load
generator, so a change's effect on a create hides in their noise. This measures what one request
costs the Python process itself, through Django's test client against a freshly migrated
PostgreSQL database (``BENCH_DATABASE``) and Redis (``BENCH_REDIS_URL``): CPU
(``time.process_time``) and wall time per request, best and median. Run it on two commits back
to back (``git stash`` / ``git checkout``) to compare them; docs/benchmarks.md quotes such pairs.
"""

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_database, make_token, service_env


def _timed(fn, count: int) -> tuple[list[float], list[float]]:
    cpu, wall = [], []
    for i in range(count):
        c0, w0 = time.process_time(), time.perf_counter()
        fn(i)
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return cpu, wall


def _line(name: str, cpu: list[float], wall: list[float]) -> str:
    return (
        f"{name:<36} CPU best {min(cpu):7.2f} / median {statistics.median(cpu):7.2f} ms   "
        f"wall best {min(wall):7.2f} / median {statistics.median(wall):7.2f} ms   ({len(cpu)} requests)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=3000, help="single creates measured (default 3000)")
    parser.add_argument("--imports", type=int, default=20, help="imports of 1,000 tasks measured (default 20)")
    parser.add_argument("--profile", choices=["create", "floor", "import"], help="print a cProfile of that part")
    args = parser.parse_args()

    database_url = fresh_database()
    token = make_token(database_url)
    # The throttle still runs (its cost is part of a request) but never refuses: the figures of
    # one run must not depend on what earlier runs left in Redis.
    os.environ.update(
        service_env(database_url, DJANGO_SETTINGS_MODULE="bench.settings_bench", ARCHANGEL_THROTTLE_RATE="10000000/min")
    )
    import django

    django.setup()
    from django.test import Client

    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Token {token}", "content_type": "application/json"}
    run = uuid.uuid4().hex[:8]

    def post(path: str, body, expected: int) -> None:
        response = client.post(path, json.dumps(body), **auth)
        if response.status_code != expected:
            raise SystemExit(f"{path} answered {response.status_code}: {response.content[:300]!r}")

    def create(i: int) -> None:
        post("/api/tasks", {"title": f"In-process {run} {i}", "priority": 2, "description": "measured"}, 201)

    def floor(i: int) -> None:
        post("/bench/floor", {"title": f"Floor {i}"}, 201)

    def bulk(i: int) -> None:
        items = [{"title": f"Import {run} {i} {n}", "priority": 1 + n % 4} for n in range(1000)]
        post("/api/tasks/bulk", {"tasks": items}, 201)

    def measured(part: str, label: str, fn, count: int) -> str:
        fn(10**6)  # warm: imports, connections, caches (an index no measured request uses)
        profiler = cProfile.Profile() if args.profile == part else None
        if profiler:
            profiler.enable()
        cpu, wall = _timed(fn, count)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(40)
        return _line(label, cpu, wall)

    lines = [
        measured("create", "POST /api/tasks", create, args.creates),
        measured("floor", "POST /bench/floor (DRF floor)", floor, args.creates),
        measured("import", "POST /api/tasks/bulk (1,000 tasks)", bulk, args.imports),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
