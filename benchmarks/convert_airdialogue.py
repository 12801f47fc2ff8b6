"""Streaming conversion at scale: generate AirDialogue-format lines (30-flight kb, a 16-turn dialogue,
the corpus's own field types), convert them with `lmrl convert flight_booking` in a fresh process per
size, and report lines/s and the process's peak RSS at each size (flat = streaming). Then, optionally,
read the converted file the way training does (`load_episodes` into datasets' Arrow cache, then
`prepare_dataset` tokenizing with `num_proc` processes) and report its time and peak RSS.

    python benchmarks/convert_airdialogue.py --lines 12500 50000            # conversion only
    python benchmarks/convert_airdialogue.py --lines 50000 --train-read 10000 40000 --num-proc 1 2

Results go to benchmarks/results/convert_airdialogue.json (and are printed as a markdown table).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec")
AIRPORTS = ("ATL", "BOS", "CLT", "DEN", "DFW", "DTW", "EWR", "HOU", "IAD", "JFK", "LAS", "LAX", "MSP", "ORD", "SFO")
AIRLINES = ("UA", "AA", "Delta", "Hawaiian", "Southwest", "Frontier", "JetBlue", "Spirit")
NAMES = ("Edward Hall", "Stephen Evans", "Gary Taylor", "Donna Evans", "Gregory Allen", "Richard Perez", "Emily Edwards")


def airdialogue_pair(rng: random.Random) -> tuple[dict, dict]:
    """One (data line, kb line) in AirDialogue's format, with a `correct_sample` that follows the official rule."""
    month = rng.choice(MONTHS)
    origin, destination = rng.sample(AIRPORTS, 2)
    day = rng.randint(1, 25)
    kb = [{"return_airport": rng.choice((destination, rng.choice(AIRPORTS))), "airline": rng.choice(AIRLINES),
           "departure_day": str(day + rng.randint(-1, 1)), "departure_airport": rng.choice((origin, rng.choice(AIRPORTS))),
           "flight_number": 1000 + i, "departure_month": month, "departure_time_num": rng.randint(0, 23),
           "class": rng.choice(("economy", "business")), "return_time_num": rng.randint(0, 23), "return_month": month,
           "return_day": str(day + rng.randint(1, 3)), "num_connections": rng.randint(0, 2),
           "price": 100 * rng.randint(1, 15)} for i in range(30)]
    name = rng.choice(NAMES)
    goal = rng.choice(("book", "book", "change", "cancel"))
    reservation = rng.choice((0, 1000 + rng.randint(0, 29)))
    if goal != "book" and not reservation:
        expected = {"status": "no_reservation", "name": name, "flight": []}
    elif goal == "cancel":
        expected = {"status": "cancel", "name": name, "flight": []}
    else:
        cheapest = min(flight["price"] for flight in kb[:5])
        expected = {"status": goal, "name": name, "flight": [f["flight_number"] for f in kb[:5] if f["price"] == cheapest]}
    action = dict(expected, flight=expected["flight"][:1])
    correct = rng.random() < 0.8
    if not correct:
        if rng.random() < 0.5:
            action["name"] = name[:-1]
        else:
            action = {"status": "no_flight", "name": name, "flight": []} if expected["status"] != "no_flight" else \
                {"status": "cancel", "name": name, "flight": []}
    speakers = ("customer", "agent")
    dialogue = [f"{speakers[i % 2]}: " + " ".join(rng.choice(("please", "flight", "book", "thanks", "the", "dates",
                                                               "help", "name", "ticket", "travel", "I", "need")) for _ in range(12))
                for i in range(16)]
    intent = {"return_month": month, "return_day": str(day + 2), "max_price": 100 * rng.randint(2, 15),
              "departure_airport": origin, "max_connections": rng.randint(0, 2), "departure_day": str(day),
              "goal": goal, "departure_month": month, "name": name, "return_airport": destination}
    data = {"action": action, "intent": intent, "timestamps": list(range(16)), "dialogue": dialogue,
            "expected_action": expected, "correct_sample": correct}
    return data, {"kb": kb, "reservation": reservation}


def write_corpus(folder: Path, lines: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    data_path, kb_path = folder / f"bench{lines}_data.json", folder / f"bench{lines}_kb.json"
    with data_path.open("w") as data_file, kb_path.open("w") as kb_file:
        for _ in range(lines):
            data, kb = airdialogue_pair(rng)
            data_file.write(json.dumps(data) + "\n")
            kb_file.write(json.dumps(kb) + "\n")
    return data_path, kb_path


CONVERT = """
import json, resource, sys, time
from lmrl.tasks import convert_corpus
start = time.perf_counter()
summary = convert_corpus("flight_booking", sys.argv[1], sys.argv[2])
summary["wall_s"] = time.perf_counter() - start
summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rewards = [json.loads(line)["messages"][-1]["reward"] for line in open(sys.argv[2])]
truth = [json.loads(line)["correct_sample"] for line in open(sys.argv[1])]
summary["rewards_equal_correct_sample"] = rewards == [float(t) for t in truth]
print(json.dumps(summary))
"""

TRAIN_READ = """
import json, resource, sys, time
from itertools import islice
import pyarrow.compute as pc
from pathlib import Path
from lmrl.data import load_episodes, prepare_dataset
from lmrl.models.tiny import episode_texts, train_tokenizer
def rss_now():  # resident memory now: anonymous (the process's own) and file-backed (mapped Arrow files)
    status = Path("/proc/self/status")
    if not status.exists():
        return {}
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    return {f"{key.lower()}_mib": int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile") if key in fields}
rows, num_proc, cache = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with rows.open() as handle:
    sample = [json.loads(line) for line in islice(handle, 200)]
tokenizer = train_tokenizer(episode_texts(sample), 500)
start = time.perf_counter()
dataset = load_episodes(str(rows), cache_dir=cache)
loaded = time.perf_counter() - start
tokenized = prepare_dataset(dataset, tokenizer, max_length=4096, num_proc=num_proc if num_proc > 1 else None)
print(json.dumps({"rows": len(tokenized), "num_proc": num_proc, "load_s": loaded,
                  "tokenize_s": time.perf_counter() - start - loaded,
                  "tokens": pc.sum(pc.list_value_length(tokenized.data.column("input_ids"))).as_py(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  **rss_now()}))
"""


def run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[12500, 50000], help="Corpus sizes to convert.")
    parser.add_argument("--train-read", type=int, nargs="*", default=[],
                        help="Row counts (from the largest converted file) to read and tokenize as training does.")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1], help="Tokenization processes to try.")
    parser.add_argument("--workdir", default=None, help="Where the generated files go (default: a temporary folder).")
    parser.add_argument("--output", default="benchmarks/results/convert_airdialogue.json")
    args = parser.parse_args(argv)
    results = {"command": "python benchmarks/convert_airdialogue.py " + " ".join(argv or sys.argv[1:]),
               "convert": [], "train_read": []}
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        folder = Path(folder)
        largest = None
        for lines in sorted(args.lines):
            data_path, _ = write_corpus(folder, lines)
            out = folder / f"rows{lines}.jsonl"
            summary = run(CONVERT, str(data_path), str(out))
            summary.update(lines=lines, lines_per_s=lines / summary["wall_s"], input_mib=(
                data_path.stat().st_size + data_path.with_name(data_path.name.replace("_data", "_kb")).stat().st_size)
                / 2**20, output_mib=out.stat().st_size / 2**20)
            results["convert"].append(summary)
            print(f"convert {lines:>7} lines: {summary['lines_per_s']:8.0f} lines/s, peak RSS "
                  f"{summary['peak_rss_mib']:7.1f} MiB, in {summary['input_mib']:.0f} MiB -> out "
                  f"{summary['output_mib']:.0f} MiB, rewards = correct_sample: {summary['rewards_equal_correct_sample']}",
                  flush=True)
            data_path.unlink()
            data_path.with_name(data_path.name.replace("_data", "_kb")).unlink()
            largest = out
        for rows in sorted(args.train_read):
            subset = folder / f"train{rows}.jsonl"
            with largest.open() as source, subset.open("w") as target:
                for _, line in zip(range(rows), source):
                    target.write(line)
            for num_proc in args.num_proc:
                start = time.perf_counter()
                summary = run(TRAIN_READ, str(subset), str(num_proc), str(folder / f"cache{rows}-{num_proc}"))
                summary["wall_s"] = time.perf_counter() - start
                results["train_read"].append(summary)
                print(f"train read {rows:>7} rows, num_proc {num_proc}: load {summary['load_s']:.1f} s, tokenize "
                      f"{summary['tokenize_s']:.1f} s, peak RSS {summary['peak_rss_mib']:.1f} MiB (main process; at the "
                      f"end {summary.get('rssanon_mib', 0):.1f} MiB anonymous, {summary.get('rssfile_mib', 0):.1f} MiB "
                      "file-backed)",
                      flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
