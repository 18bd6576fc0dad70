"""docs/benchmarks.md keeps a row for every scenario `make bench` runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_summary_has_a_row_for_every_scenario_of_make_bench():
    run = (ROOT / "bench" / "run.py").read_text()
    block = run[run.index("SCENARIOS = {") : run.index("}", run.index("SCENARIOS = {"))]
    scenarios = re.findall(r'^\s+"(\w+)":', block, flags=re.MULTILINE)
    assert "sustained" in scenarios and len(scenarios) >= 10
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    summary = doc[doc.index("## Summary") : doc.index("\n## ", doc.index("## Summary") + 1)]
    rows = [line for line in summary.splitlines() if line.startswith("| `")]
    named = {re.match(r"\| `(\w+)` ·", row).group(1) for row in rows}
    missing, stale = set(scenarios) - named, named - set(scenarios)
    assert not missing and not stale, f"rows missing for {missing}, rows of no scenario: {stale}"
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 5 and all(cells[:3]), row  # what, the figure, and what was measured beside it
