"""The benchmark scripts keep running (tiny shapes); their figures are read, not asserted."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_heads_benchmark_quick_mode_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "heads.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "heads.py"), "--quick", "--output", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| measure | value | ratio | target |" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    measures = " ".join(row["measure"] for row in rows)
    assert "tied" in measures and "fast path" in measures and "train step" in measures
