"""A suite's results: per-row statistics over seeds, the table and the plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..envs.scoring import TaskAnchors, paired_difference, t_interval
from .suite import BASELINE, MIN_SEEDS, Suite


def seed_scores(runs: list[dict]) -> dict[int, float]:
    """Each seed's normalized score: its mean return on its own data's anchors, unclipped (a run above
    the best anchor scores above 100)."""
    return {r["suite_seed"]: TaskAnchors(**r["anchors"]).normalize(float(np.mean(r["returns"]))) for r in runs}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def summarize(suite: Suite, reports: list[dict]) -> list[dict]:
    """One row per task and algorithm or reference policy: the mean over seeds of the normalized score
    with its t-interval, the paired difference to BC with its t-interval, per-seed scores, success,
    the published number."""
    rows = []
    for task in suite.tasks:
        reference = task.reference or {}
        mine = [r for r in reports if r["suite_task"] == task.name]
        names = list(dict.fromkeys(r["suite_algorithm"] for r in mine))
        baseline = seed_scores([r for r in mine if r["suite_algorithm"] == BASELINE and r["suite_kind"] == "learned"])
        for name in names:
            runs = sorted((r for r in mine if r["suite_algorithm"] == name), key=lambda r: r["suite_seed"])
            scores = seed_scores(runs)
            mean, low, high = t_interval(list(scores.values()))
            difference = None
            if baseline and name != BASELINE:
                paired = paired_difference(scores, baseline)
                if paired is not None:
                    difference = {"mean": paired[0], "low": _finite(paired[1]), "high": _finite(paired[2]),
                                  "n": paired[3]}
            rows.append({"task": task.name, "algorithm": name, "kind": runs[0]["suite_kind"],
                         "description": runs[0].get("suite_description"), "model": runs[0].get("suite_model"),
                         "train_tokens": runs[0].get("suite_train_tokens"), "normalized": mean,
                         "low": _finite(low), "high": _finite(high), "n": len(scores),
                         "per_seed": list(scores.values()), "seeds": list(scores), "difference": difference,
                         "episodes": runs[0]["episodes"], "split": suite.split,
                         "success": float(np.mean([r["success_rate"] for r in runs])),
                         "reference": (reference.get("scores") or {}).get(name),
                         "reference_source": reference.get("source"), "reference_setting": reference.get("setting"),
                         "choices": task.choices})
    return rows


SECTIONS = {"learned": None,
            "upper_bound": "Upper bounds: they use what a learner cannot (the true simulator, the true state); "
                           "not comparable with the rows above.",
            "reference": "References: fixed policies (random, scripted behaviour modes, the optimal policy) on the "
                         "same episodes."}


def _interval(mean: float, low: float | None, high: float | None, n: int) -> str:
    text = f"{mean:.1f}"
    if low is not None:
        text += f" [{low:.1f}, {high:.1f}]"
    if n < MIN_SEEDS:
        text += f" (n={n}, {'no interval; ' if low is None else ''}below the {MIN_SEEDS} the protocol asks)"
    return text


def _tokens(value) -> str:
    if not value:
        return ""
    return f"{value / 1e9:.1f}B" if value >= 1e9 else f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"


def table(rows: list[dict]) -> str:
    """One markdown table per task: learned rows, then upper bounds and references in their own
    sections; the published number only where the task has one, labelled with its setting."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        published = mine[0]["reference_source"] is not None
        split = mine[0]["split"]
        header = ["algorithm", "model", "training tokens", f"normalized, mean over seeds [95% t-CI] ({split})",
                  f"paired difference to {BASELINE} [95% t-CI]", "per seed", "success"]
        if published:
            header.append(f"published ({mine[0]['reference_setting']})")
        out += [f"### {task}", ""]
        for kind, title in SECTIONS.items():
            section = [r for r in mine if r["kind"] == kind]
            if not section:
                continue
            if title:
                out += ["", f"*{title}*", ""]
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for r in section:
                d = r["difference"]
                paired = "" if d is None else f"{d['mean']:+.1f}" + (
                    f" [{d['low']:+.1f}, {d['high']:+.1f}]" if d["low"] is not None else "") + (
                    f" (n={d['n']})" if d["n"] < MIN_SEEDS else "")
                if r["algorithm"] == BASELINE and kind == "learned":
                    paired = "(baseline)"
                cells = [r["algorithm"], r["model"] or "", _tokens(r["train_tokens"]),
                         _interval(r["normalized"], r["low"], r["high"], r["n"]), paired,
                         ", ".join(f"{v:.1f}" for v in r["per_seed"]), f"{r['success']:.0%}"]
                if published:
                    cells.append("" if r["reference"] is None else f"{r['reference']:.1f}")
                out.append("| " + " | ".join(cells) + " |")
            described = [r for r in section if r["description"]]
            if described:
                out += [""] + [f"- {r['algorithm']}: {r['description']}" for r in described]
        if published:
            out += ["", f"Published: {mine[0]['reference_source']}; setting: {mine[0]['reference_setting']}."]
        if mine[0]["choices"]:
            out += ["", f"Choices: {mine[0]['choices']}"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks) + 1, 3.6), squeeze=False)
    colors = {"learned": "tab:blue", "upper_bound": "tab:grey", "reference": "tab:olive"}
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        x = np.arange(len(mine))
        values = [r["normalized"] for r in mine]
        errors = [[v - r["low"] if r["low"] is not None else 0.0 for v, r in zip(values, mine)],
                  [r["high"] - v if r["high"] is not None else 0.0 for v, r in zip(values, mine)]]
        ax.bar(x, values, yerr=errors, capsize=3, color=[colors[r["kind"]] for r in mine],
               label="mean over seeds, 95% t-CI")
        for i, r in enumerate(mine):
            ax.scatter([i] * len(r["per_seed"]), r["per_seed"], s=8, color="black", zorder=3)
        theirs = [(i, r["reference"]) for i, r in enumerate(mine) if r["reference"] is not None]
        if theirs:
            ax.scatter(*zip(*theirs), marker="_", s=400, color="tab:red", zorder=4,
                       label=f"published ({mine[0]['reference_setting']})")
        ax.axhline(50, color="grey", linestyle="--", linewidth=1)
        ax.axhline(100, color="black", linestyle=":", linewidth=1)
        ax.set_xticks(x, [r["algorithm"] for r in mine], rotation=30)
        ax.set_title(task)
        shown = [v for r in mine for v in (r["low"], r["high"], *r["per_seed"]) if v is not None]
        ax.set_ylim(min(0.0, *shown) - 5, max(105.0, *shown) + 5)  # unclipped scores may leave [0, 100]
        ax.legend(loc="lower right", fontsize=7)
    axes[0][0].set_ylabel("normalized score")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
