"""`lmrl benchmark SUITE.yaml`: task x algorithm x seed, trained and evaluated, one table and one plot.

A suite file lists tasks; each names how to make its data and the recipes to run on it:

```yaml
output_dir: runs/benchmark
seeds: [0, 1, 2]          # each seed: its own behaviour data, training seed and run
episodes: 100             # evaluation episodes per run (the same evaluation seeds for every run)
tasks:
  maze_fo:
    task: maze
    data: {episodes: 1000, options: {layout: ring}}
    overrides: {num_train_epochs: 8}           # optional, for every recipe of the task
    # data may also say labeled_share: 0.1 with unlabeled: keep (the rest marked "labeled": false,
    # rewards removed; train them with the override unlabeled_reward: 0.0) or unlabeled: drop
    algorithms:
      bc: recipes/maze/bc.yaml
      ilql: recipes/maze/ilql.yaml
      chai: {recipe: recipes/negotiation/chai.yaml, overrides: {model_name_or_path: "{run:bc}"}}
      calm_plan: {recipe: recipes/flight_booking/calm_plan.yaml, checkpoint: calm}   # evaluate only
    reference: {source: "LMRL-Gym, fully observed maze, GPT-2", scores: {bc: 58.2, ilql: 99.9}}
```

`{run:NAME}` in an override is that algorithm's run folder for the same seed, `{data}` the seed's
data file. A run whose `eval.json` exists is skipped, so an interrupted suite resumes where it
stopped; a run that trained but did not evaluate is only evaluated.

Intervals account for both sources of chance: a hierarchical bootstrap resamples the seeds, then the
evaluation episodes within each resampled seed, and normalizes each seed's mean return on that
seed's own anchors (its data's average is the 50 point). The 95% interval is the 2.5th and 97.5th
percentiles of the mean over seeds, so it stays within the scores the runs can reach.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .envs.scoring import TaskAnchors


@dataclass
class AlgorithmSpec:
    name: str
    recipe: str
    overrides: dict = field(default_factory=dict)
    checkpoint: str | None = None  # evaluate this other algorithm's model, train nothing


@dataclass
class TaskSpec:
    name: str
    task: str
    data: dict
    algorithms: list[AlgorithmSpec]
    overrides: dict = field(default_factory=dict)
    reference: dict | None = None


@dataclass
class Suite:
    output_dir: Path
    seeds: list[int]
    episodes: int
    tasks: list[TaskSpec]
    source: str = "suite"


def _need(mapping: dict, key: str, where: str):
    if key not in mapping:
        raise ValueError(f"{where}: missing field '{key}'.")
    return mapping[key]


def read_suite(path: str | Path, output_dir: str | None = None) -> Suite:
    """Parse and check a suite file; every problem is named with its place in the file."""
    from .recipes import plain_yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such suite file.")
    raw = plain_yaml(path.read_text(), str(path)) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a suite is a mapping of field: value, got {type(raw).__name__}.")
    known = {"output_dir", "seeds", "episodes", "tasks"}
    if set(raw) - known:
        raise ValueError(f"{path}: unknown field(s) {', '.join(sorted(set(raw) - known))}; valid: {', '.join(sorted(known))}.")
    seeds = _need(raw, "seeds", str(path))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}.")
    tasks = []
    for name, spec in (_need(raw, "tasks", str(path)) or {}).items():
        where = f"{path}: tasks.{name}"
        algorithms = []
        for algo, entry in (_need(spec, "algorithms", where) or {}).items():
            entry = {"recipe": entry} if isinstance(entry, str) else dict(entry)
            extra = set(entry) - {"recipe", "overrides", "checkpoint"}
            if extra:
                raise ValueError(f"{where}.algorithms.{algo}: unknown field(s) {', '.join(sorted(extra))}.")
            recipe = _need(entry, "recipe", f"{where}.algorithms.{algo}")
            if not Path(recipe).is_file():
                raise ValueError(f"{where}.algorithms.{algo}: no such recipe file {recipe}.")
            algorithms.append(AlgorithmSpec(algo, recipe, entry.get("overrides") or {}, entry.get("checkpoint")))
        names = [a.name for a in algorithms]
        for algo in algorithms:
            if algo.checkpoint and algo.checkpoint not in names[: names.index(algo.name)]:
                raise ValueError(f"{where}.algorithms.{algo.name}: checkpoint '{algo.checkpoint}' must name an "
                                 "algorithm listed before it.")
        data = _need(spec, "data", where)
        extra = set(data) - {"episodes", "options", "labeled_share", "unlabeled"}
        if extra:
            raise ValueError(f"{where}.data: unknown field(s) {', '.join(sorted(extra))}; valid: episodes, options, "
                             "labeled_share, unlabeled.")
        if data.get("unlabeled", "keep") not in ("keep", "drop"):
            raise ValueError(f"{where}.data.unlabeled must be 'keep' or 'drop', got {data['unlabeled']!r}.")
        if "unlabeled" in data and "labeled_share" not in data:
            raise ValueError(f"{where}.data: 'unlabeled' needs 'labeled_share' (the share of episodes that keep "
                             "their rewards).")
        tasks.append(TaskSpec(name, _need(spec, "task", where), data, algorithms,
                              spec.get("overrides") or {}, spec.get("reference")))
    return Suite(Path(output_dir or raw.get("output_dir", "runs/benchmark")), seeds, int(raw.get("episodes", 100)),
                 tasks, str(path))


def _fill(value, runs: dict[str, Path], data: Path):
    if not isinstance(value, str):
        return value
    for name, folder in runs.items():
        value = value.replace(f"{{run:{name}}}", str(folder))
    return value.replace("{data}", str(data))


def _unlabel_file(path: Path, labeled_share: float, seed: int, keep: bool) -> None:
    from .data import unlabel

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(row) + "\n" for row in unlabel(rows, labeled_share, seed, keep)))


def run_suite(suite: Suite, log=print) -> list[dict]:
    """Make each seed's data, train and evaluate every run not yet evaluated; returns the reports."""
    from .api import evaluate, make_data, train
    from .trainers.checkpointing import last_complete_checkpoint

    reports = []
    for task in suite.tasks:
        for seed in suite.seeds:
            folder = suite.output_dir / task.name
            data = folder / "data" / f"seed{seed}.jsonl"
            runs = {a.name: folder / a.name / f"seed{seed}" for a in task.algorithms}
            if not data.is_file():
                log(f"[benchmark] {task.name} seed {seed}: making data")
                make_data(task.task, int(task.data.get("episodes", 1000)), str(data) + ".partial", seed,
                          dict(task.data.get("options") or {}))
                if "labeled_share" in task.data:
                    _unlabel_file(Path(str(data) + ".partial"), float(task.data["labeled_share"]), seed,
                                  task.data.get("unlabeled", "keep") == "keep")
                Path(str(data) + ".partial").replace(data)  # whole or absent: a resumed suite never reads half a file
            for algo in task.algorithms:
                out = runs[algo.name]
                report_path = out / "eval.json"
                if report_path.is_file():
                    log(f"[benchmark] {task.name}/{algo.name} seed {seed}: evaluated before, skipped")
                    reports.append({**json.loads(report_path.read_text()), "suite_task": task.name,
                                    "suite_algorithm": algo.name, "suite_seed": seed})
                    continue
                fields = {**task.overrides, **algo.overrides}
                overrides = {"dataset": str(data), "seed": seed,
                             **{key: _fill(value, runs, data) for key, value in fields.items()}}
                checkpoint = runs[algo.checkpoint] if algo.checkpoint else out
                if algo.checkpoint is None and not (out / "train_summary.json").is_file():
                    log(f"[benchmark] {task.name}/{algo.name} seed {seed}: training")
                    start = time.perf_counter()
                    # a run stopped mid-training resumes from its last complete checkpoint; one stopped before
                    # its first checkpoint starts over in its own folder
                    resume = {"resume_from_checkpoint": True} if last_complete_checkpoint(out) else \
                        {"overwrite_output_dir": True}
                    train(algo.recipe, {**overrides, "output_dir": str(out), "disable_tqdm": True, **resume})
                    log(f"[benchmark] {task.name}/{algo.name} seed {seed}: trained in {time.perf_counter() - start:.0f} s")
                log(f"[benchmark] {task.name}/{algo.name} seed {seed}: evaluating {suite.episodes} episodes")
                evaluate(algo.recipe, str(checkpoint), suite.episodes, overrides, out_dir=str(out))
                reports.append({**json.loads(report_path.read_text()), "suite_task": task.name,
                                "suite_algorithm": algo.name, "suite_seed": seed})
    return reports


def bootstrap_normalized(runs: list[dict], samples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean normalized score over seeds and its 95% interval by a hierarchical bootstrap (seeds, then
    episodes within each seed); each run is normalized on its own anchors.

    The score's expectation lies in [0, 100]: 100 is the best return averaged over the task's
    evaluation starts, which no policy can pass on average. A finite sample of episodes can (a draw
    heavy in easy starts beats the average optimum), so each run's normalized mean, in the estimate
    and in every resample, is clipped to [0, 100]: the estimate projected onto the scores that exist."""
    rng = np.random.default_rng(seed)
    returns = [np.asarray(r["returns"], dtype=float) for r in runs]
    anchors = [TaskAnchors(**r["anchors"]) for r in runs]

    def score(i: int, mean_return: float) -> float:
        return min(100.0, max(0.0, anchors[i].normalize(mean_return)))

    point = float(np.mean([score(i, float(x.mean())) for i, x in enumerate(returns)]))
    means = np.empty(samples)
    for b in range(samples):
        picked = rng.integers(0, len(runs), len(runs))
        means[b] = np.mean([score(i, float(rng.choice(returns[i], len(returns[i])).mean())) for i in picked])
    low, high = np.percentile(means, [2.5, 97.5])
    return point, float(low), float(high)


def summarize(suite: Suite, reports: list[dict]) -> list[dict]:
    """One row per task and algorithm: mean normalized score [95% CI], per-seed scores, reference."""
    rows = []
    for task in suite.tasks:
        reference = task.reference or {}
        for algo in task.algorithms:
            runs = [r for r in reports if r["suite_task"] == task.name and r["suite_algorithm"] == algo.name]
            runs.sort(key=lambda r: r["suite_seed"])
            mean, low, high = bootstrap_normalized(runs)
            rows.append({"task": task.name, "algorithm": algo.name, "normalized": mean, "low": low, "high": high,
                         "per_seed": [r["normalized"] for r in runs], "seeds": [r["suite_seed"] for r in runs],
                         "episodes": runs[0]["episodes"],
                         "success": float(np.mean([r["success_rate"] for r in runs])),
                         "reference": (reference.get("scores") or {}).get(algo.name),
                         "reference_source": reference.get("source")})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| task | algorithm | normalized, mean over seeds [95% CI] | per seed | success | LMRL-Gym (theirs) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        theirs = f"{r['reference']:.1f}" if r["reference"] is not None else ""
        seeds = ", ".join(f"{v:.1f}" for v in r["per_seed"])
        lines.append(f"| {r['task']} | {r['algorithm']} | {r['normalized']:.1f} [{r['low']:.1f}, {r['high']:.1f}] | "
                     f"{seeds} | {r['success']:.0%} | {theirs} |")
    sources = sorted({f"{r['task']}: {r['reference_source']}" for r in rows if r["reference_source"]})
    if sources:
        lines += ["", "Theirs: " + "; ".join(sources) + " (their environments and data, not these)."]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1, 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        x = np.arange(len(mine))
        values = [r["normalized"] for r in mine]
        errors = [[v - r["low"] for v, r in zip(values, mine)], [r["high"] - v for v, r in zip(values, mine)]]
        ax.bar(x, values, yerr=errors, capsize=3, color="tab:blue", label="lmrl (mean, 95% CI)")
        for i, r in enumerate(mine):
            ax.scatter([i] * len(r["per_seed"]), r["per_seed"], s=8, color="black", zorder=3)
        theirs = [(i, r["reference"]) for i, r in enumerate(mine) if r["reference"] is not None]
        if theirs:
            ax.scatter(*zip(*theirs), marker="_", s=400, color="tab:red", zorder=4, label="LMRL-Gym (theirs)")
        ax.axhline(50, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(x, [r["algorithm"] for r in mine], rotation=30)
        ax.set_title(task)
        ax.set_ylim(0, 105)  # one scale for every task: the normalized score runs from 0 to 100
    axes[0][0].set_ylabel("normalized score")
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(suite_path: str, output_dir: str | None = None, only: list[str] | None = None,
         seeds: list[int] | None = None) -> int:
    start = time.perf_counter()
    suite = read_suite(suite_path, output_dir)
    if only:
        unknown = sorted(set(only) - {t.name for t in suite.tasks})
        if unknown:
            raise ValueError(f"{suite_path}: no task {', '.join(unknown)}; it has {', '.join(t.name for t in suite.tasks)}.")
        suite.tasks = [t for t in suite.tasks if t.name in only]
    if seeds:
        unknown = sorted(set(seeds) - set(suite.seeds))
        if unknown:
            raise ValueError(f"{suite_path}: no seed {', '.join(map(str, unknown))}; it has "
                             f"{', '.join(map(str, suite.seeds))}.")
        suite.seeds = [s for s in suite.seeds if s in seeds]
    stem = "benchmark" if not only else "benchmark-" + "-".join(t.name for t in suite.tasks)  # a part keeps its own table
    if seeds:
        stem += "-seed" + "-".join(map(str, suite.seeds))
    rows = summarize(suite, run_suite(suite, log=lambda m: print(m, flush=True)))
    text = table(rows)
    seconds = time.perf_counter() - start
    print(text)
    print(f"\n{len(suite.seeds)} seed(s), {suite.episodes} evaluation episodes per run; wall time {seconds:.0f} s "
          f"(runs finished before were reused). Plot: {suite.output_dir / (stem + '.png')}")
    plot(rows, suite.output_dir / f"{stem}.png")
    (suite.output_dir / f"{stem}.json").write_text(json.dumps({"suite": suite.source, "rows": rows,
                                                              "wall_time_s": seconds}, indent=2))
    (suite.output_dir / f"{stem}.md").write_text(text + "\n")
    return 0
