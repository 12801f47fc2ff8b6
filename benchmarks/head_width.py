"""Task scores of the value-learning rows with the heads' two widths, side by side (issue 19).

    python benchmarks/head_width.py runs/benchmark_h4 runs/benchmark

The first folder holds default-suite runs made with narrow heads (h/4 wide), the second the same rows'
runs with the default heads (the paper's 2h), folder layout as `lmrl benchmark` writes it:
TASK/ALGORITHM/seedN/eval.json. Every row is scored as `lmrl benchmark` scores it (mean normalized score
over the seeds, hierarchical bootstrap interval); a row that only one folder has is left out. Prints one
markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmrl.benchmark import bootstrap_normalized


def scores(folder: Path) -> dict[tuple[str, str], tuple[float, float, float, list[float]]]:
    """(task, algorithm) -> (mean, low, high, per-seed scores) for every algorithm folder with evaluated seeds."""
    found = {}
    for algo in sorted(p for p in folder.glob("*/*") if p.is_dir() and p.name != "data"):
        runs = [json.loads(path.read_text()) for path in sorted(algo.glob("seed*/eval.json"))]
        if runs:
            found[(algo.parent.name, algo.name)] = (*bootstrap_normalized(runs), [r["normalized"] for r in runs])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("narrow", type=Path, help="runs with narrow heads (h/4)")
    parser.add_argument("wide", type=Path, help="the same rows' runs with the default heads (2h)")
    args = parser.parse_args()
    narrow, wide = scores(args.narrow), scores(args.wide)
    print("| task | algorithm | h/4 heads [95% CI] | per seed | 2h heads (default) [95% CI] | per seed |")
    print("|---|---|---|---|---|---|")
    for key in [k for k in narrow if k in wide]:
        cells = []
        for mean, low, high, seeds in (narrow[key], wide[key]):
            cells += [f"{mean:.1f} [{low:.1f}, {high:.1f}]", ", ".join(f"{s:.1f}" for s in seeds)]
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
