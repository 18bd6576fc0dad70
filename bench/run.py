"""`make bench`: run the benchmark scenarios against PostgreSQL and print one table.

    python bench/run.py                 # every scenario
    python bench/run.py --only ingest   # some of them

Each scenario returns rows (figure, the baseline measured beside it in the same run,
the target); the table is printed and written to bench/results/latest.json. The
figures in docs/benchmarks.md come from this command.
"""

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gateway, ingest, orchestration, outbox_drain, quota, sandbox, sustained, webhooks
from bench.common import ROOT, Row, fresh_database

SCENARIOS = {
    "ingest": ingest.run,
    "webhooks": webhooks.run,
    "gateway": gateway.run,
    "sandbox": sandbox.run,
    "routing": orchestration.routing_run,
    "rescoring": orchestration.rescoring_run,
    "planner": orchestration.planner_run,
    "outbox_drain": outbox_drain.run,
    "quota": quota.run,
    # Ten minutes by default (BENCH_SUSTAINED_SECONDS): last, so the others run on a cool machine.
    "sustained": sustained.run,
}


def table(rows: list[Row]) -> str:
    lines = [
        "| Scenario | Metric | Figure | Baseline measured in the same run | Target | Met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "" if r.ok is None else ("yes" if r.ok else "**no**")
        lines.append(f"| {r.scenario} | {r.metric} | {r.value:,.1f} {r.unit} | {r.baseline} | {r.target} | {met} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="scenarios to run (default: all)")
    args = parser.parse_args()
    rows: list[Row] = []
    # The interpreter's build changes every CPU figure (docs/benchmarks.md, "Interpreter").
    print(f"== Python {platform.python_version()} ({sys.executable}), compiled with {platform.python_compiler()}")
    for name in args.only or SCENARIOS:
        database_url = fresh_database()
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        rows.extend(SCENARIOS[name](database_url))
        print(f"   done in {time.perf_counter() - started:.0f} s", flush=True)
    print()
    print(table(rows))
    # BENCH_RESULTS_DIR: the test suite's smoke run keeps its files out of a developer's results.
    out = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "python_build": " ".join(platform.python_build()),
        "machine": platform.machine(),
        "time": time.strftime("%Y-%m-%d %H:%M"),
    }
    (out / "latest.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    # One file per scenario too, so a long run (sustained) keeps its figures when others run later.
    for name in args.only or SCENARIOS:
        mine = [asdict(r) for r in rows if r.scenario == name or r.scenario.startswith(f"{name} ")]
        (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": mine}, indent=2))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
