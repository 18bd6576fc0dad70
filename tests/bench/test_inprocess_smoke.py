"""``bench/inprocess.py`` (a request's own cost, in-process: docs/benchmarks.md, "Ingest") runs and
reports each part, so the figures docs/benchmarks.md quotes from it stay reproducible."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.conftest import bench_env

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^(POST .+?) +CPU best +([0-9.]+) / median +([0-9.]+) ms"
    r" +wall best +([0-9.]+) / median +([0-9.]+) ms +\((\d+) requests\)"
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]


def test_the_in_process_measurement_reports_creates_the_floor_and_imports(bench_database):
    env = bench_env(bench_database, "the in-process measurement")
    proc = subprocess.run(
        [sys.executable, "bench/inprocess.py", "--creates", "30", "--imports", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    parts = {match.group(1): match for match in map(LINE.match, proc.stdout.splitlines()) if match}
    assert set(parts) == {"POST /api/tasks", "POST /bench/floor (DRF floor)", "POST /api/tasks/bulk (1,000 tasks)"}
    counts = {name: int(match.group(6)) for name, match in parts.items()}
    assert counts == {
        "POST /api/tasks": 30,
        "POST /bench/floor (DRF floor)": 30,
        "POST /api/tasks/bulk (1,000 tasks)": 2,
    }
    for match in parts.values():
        cpu_best, cpu_median, wall_best, wall_median = (float(match.group(i)) for i in range(2, 6))
        assert 0 < cpu_best <= cpu_median and 0 < wall_best <= wall_median
