"""Running a suite: each seed's data, the trained and evaluated runs, the reference policies; resumable."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .suite import EpisodeSet, Suite, TaskSpec, derived_seeds


def _fill(value, runs: dict[str, Path], data: Path):
    if not isinstance(value, str):
        return value
    for name, folder in runs.items():
        value = value.replace(f"{{run:{name}}}", str(folder))
    return value.replace("{data}", str(data))


def _unlabel_file(path: Path, labeled_share: float, seed: int, keep: bool) -> None:
    from ..data import unlabel

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(row) + "\n" for row in unlabel(rows, labeled_share, seed, keep)))


def _read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _model_info(folder: Path) -> dict:
    """The model of a run folder, e.g. "GPT-2 2x64 (0.1M)", and its training tokens, from its
    `config.json` and `train_summary.json` (None where they do not say)."""
    summary = json.loads((folder / "train_summary.json").read_text()) if (folder / "train_summary.json").is_file() else {}
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    config = config.get("text_config") or config
    names = {"gpt2": "GPT-2", "llama": "Llama", "qwen2": "Qwen2", "gpt_neox": "GPT-NeoX"}
    kind = config.get("model_type")
    layers = config.get("n_layer") or config.get("num_hidden_layers")
    width = config.get("n_embd") or config.get("hidden_size")
    label = names.get(kind, kind) if kind else None
    if label and layers and width:
        label += f" {layers}x{width}"
    total = summary.get("total_parameters")
    if total:
        size = f"{total / 1e9:.1f}B" if total >= 1e9 else f"{total / 1e6:.1f}M"
        label = f"{label} ({size})" if label else size
    return {"model": label, "train_tokens": summary.get("train_tokens") or None}


def _suite_report(report: dict, task: TaskSpec, name: str, kind: str, seed: int, description: str | None = None,
                  model: dict | None = None) -> dict:
    return {**report, "suite_task": task.name, "suite_algorithm": name, "suite_kind": kind, "suite_seed": seed,
            "suite_description": description, **{f"suite_{k}": v for k, v in (model or {}).items()}}


def _evaluate_references(suite: Suite, task: TaskSpec, seed: int, data: Path, episodes: EpisodeSet,
                         options: dict, log) -> list[dict]:
    """Every reference policy of the task, on the same episodes as the runs, for this seed's data."""
    from ..evaluation import dataset_returns, evaluate_policy
    from ..tasks import get_task

    task_object = get_task(task.task)
    factory = getattr(task_object, "reference_policies", None)
    if factory is None:
        raise ValueError(f"tasks.{task.name}: references: true, and task {task.task!r} has no reference policies "
                         "(Task.reference_policies); leave the field out.")
    reports = []
    for_seed = derived_seeds(seed)
    folder = suite.run_dir / task.name / "references"
    done = {p.parent.parent.name: p for p in folder.glob(f"*/seed{seed}/eval.json")}
    returns = dataset_returns(str(data))
    policies = factory(_read_rows(data), seed=for_seed["sampling"], **options)
    if not policies:
        log(f"[benchmark] {task.name}: task {task.task!r} has no reference policies for these options")
    for reference in policies:
        out = folder / reference.name / f"seed{seed}" / "eval.json"
        if reference.name in done:
            log(f"[benchmark] {task.name}/{reference.name} (reference) seed {seed}: evaluated before, skipped")
            report = json.loads(out.read_text())
        else:
            log(f"[benchmark] {task.name}/{reference.name} (reference) seed {seed}: evaluating "
                f"{episodes.episodes} episodes")
            report = {"run": reference.name, "algorithm": reference.name,
                      **evaluate_policy(task_object, options, reference.policy, episodes.seeds, returns,
                                        split=episodes.split, sampling_seed=for_seed["sampling"], progress=False)}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
        reports.append(_suite_report(report, task, reference.name, reference.kind, seed, reference.description))
    return reports


def run_suite(suite: Suite, log=print) -> list[dict]:
    """Make each seed's data, train and evaluate every run not yet evaluated on the suite's split;
    returns the reports."""
    from ..api import train
    from ..evaluation import evaluate_checkpoint, format_score_line
    from ..recipes import parse_recipe, read_recipe
    from ..trainers.checkpointing import last_complete_checkpoint

    reports = []
    for task in suite.tasks:
        episodes = task.test if suite.split == "test" else task.validation
        for seed in suite.seeds:
            seeds = derived_seeds(seed)
            folder = suite.output_dir / task.name
            data = folder / "data" / f"seed{seed}.jsonl"
            runs = {a.name: folder / a.name / f"seed{seed}" for a in task.algorithms}
            if not data.is_file():
                _make_data(task, data, seeds["data"], log, seed)
            options = None
            for algo in task.algorithms:
                out = runs[algo.name]
                checkpoint = runs[algo.checkpoint] if algo.checkpoint else out
                evaluated = suite.run_dir / task.name / algo.name / f"seed{seed}"
                kind = "upper_bound" if algo.upper_bound else "learned"
                fields = {**task.overrides, **algo.overrides}
                overrides = {"dataset": str(data), "seed": seeds["seed"], "data_seed": seeds["data_seed"],
                             **{key: _fill(value, runs, data) for key, value in fields.items()}}
                script, config = parse_recipe(read_recipe(algo.recipe, overrides), algo.recipe)
                if options is None:  # the references play the first algorithm's environment
                    options = {**(script.task_kwargs or {}), **episodes.options}
                report_path = evaluated / "eval.json"
                if report_path.is_file():
                    log(f"[benchmark] {task.name}/{algo.name} seed {seed}: evaluated before, skipped")
                    reports.append(_suite_report(json.loads(report_path.read_text()), task, algo.name, kind, seed,
                                                 model=_model_info(checkpoint)))
                    continue
                if algo.checkpoint is None and not (out / "train_summary.json").is_file():
                    log(f"[benchmark] {task.name}/{algo.name} seed {seed}: training")
                    start = time.perf_counter()
                    # a run stopped mid-training resumes from its last complete checkpoint; one stopped before
                    # its first checkpoint starts over in its own folder
                    resume = {"resume_from_checkpoint": True} if last_complete_checkpoint(out) else \
                        {"overwrite_output_dir": True}
                    train(algo.recipe, {**overrides, "output_dir": str(out), "disable_tqdm": True,
                                        "include_num_input_tokens_seen": "non_padding", **resume})
                    log(f"[benchmark] {task.name}/{algo.name} seed {seed}: trained in {time.perf_counter() - start:.0f} s")
                log(f"[benchmark] {task.name}/{algo.name} seed {seed}: evaluating {episodes.episodes} "
                    f"{suite.split} episodes")
                report = evaluate_checkpoint(script, config, checkpoint, episodes.episodes, seed=episodes.seed,
                                             progress=False, out_dir=evaluated, split=episodes.split,
                                             options=episodes.options, sampling_seed=seeds["sampling"])
                log(f"[benchmark] {format_score_line(report)}")
                reports.append(_suite_report(report, task, algo.name, kind, seed, model=_model_info(checkpoint)))
            if task.references:
                reports += _evaluate_references(suite, task, seed, data, episodes, options or dict(episodes.options),
                                                log)
    return reports


def _make_data(task: TaskSpec, data: Path, data_seed: int, log, seed: int) -> None:
    from ..api import make_data

    log(f"[benchmark] {task.name} seed {seed}: making data")
    partial = Path(str(data) + ".partial")
    make_data(task.task, int(task.data.get("episodes", 1000)), str(partial), data_seed,
              dict(task.data.get("options") or {}))
    if "labeled_share" in task.data:
        _unlabel_file(partial, float(task.data["labeled_share"]), data_seed, task.data.get("unlabeled", "keep") == "keep")
    partial.replace(data)  # whole or absent: a resumed suite never reads half a file
