"""Write the toy "doors" dataset used by recipes/doors_ilql.yaml and the quickstart example.

Three prompts; the logged replies are mostly the zero-reward one, and the rewarded reply is rare.
Imitation (BC) learns the common reply; offline RL should learn the rare rewarded one.

    python examples/make_doors_data.py examples/data/doors.jsonl
"""

import json
import sys

CHOICES = {
    "Pick a door:": (" red", " blue"),
    "Pick a fruit:": (" apple", " pear"),
    "Pick a pet:": (" cat", " dog"),
}


def doors_rows(repeats: int = 100, every: int = 7) -> list[dict]:
    rows = []
    for i in range(repeats):
        for prompt, (common, rewarded) in CHOICES.items():
            good = i % every == 0
            rows.append({"messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": rewarded if good else common, "reward": float(good)},
            ]})
    return rows


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "examples/data/doors.jsonl"
    with open(path, "w") as handle:
        for row in doors_rows():
            handle.write(json.dumps(row) + "\n")
    print(f"wrote {path}")
