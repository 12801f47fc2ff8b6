"""`lmrl benchmark SUITE.yaml`: task x algorithm x seed, trained and evaluated, one table per task and
one plot.

A suite file lists tasks; each names how to make its data and the recipes to run on it:

```yaml
output_dir: runs/benchmark
seeds: [0, 1, 2, 3, 4]    # each seed: its own behaviour data, initialization, data order and sampling
episodes: 100             # test episodes per run: seeds EVAL_SEED, EVAL_SEED + 1, ... for every run
tasks:
  maze_fo:
    task: lmrl_gym_maze
    episodes: 25                               # optional: this task's count (25 starts, each played once)
    data: {episodes: 1000, options: {layout: double_t_maze}}
    overrides: {num_train_epochs: 8}           # optional, for every recipe of the task
    # data may also say labeled_share: 0.1 with unlabeled: keep (the rest marked "labeled": false,
    # rewards removed; train them with the override unlabeled_reward: 0.0) or unlabeled: drop
    validation: {options: {layout: umaze}, episodes: 20}   # or {split: validation}, or {seed: 0, episodes: 50}
    choices: "beta 20 of {4, 20, 64}, best mean over seeds on validation (umaze)"   # printed under the table
    references: true                           # evaluate the task's reference policies on the same episodes
    algorithms:
      bc: recipes/maze/bc.yaml
      ilql: recipes/maze/ilql.yaml
      chai: {recipe: recipes/negotiation/chai.yaml, overrides: {model_name_or_path: "{run:bc}"}}
      calm_plan: {recipe: recipes/flight_booking/calm_plan.yaml, checkpoint: calm,   # evaluate only
                  upper_bound: true}           # plans with the true simulator: its own section
    reference:                                 # a published number, only for a task that is their game
      source: "LMRL-Gym (Abdulhai et al., 2023), Table 2, fully observed maze"
      setting: "GPT-2 small, their data"
      scores: {bc: 58.2, ilql: 99.9}
```

`{run:NAME}` in an override is that algorithm's run folder for the same seed, `{data}` the seed's
data file. A run whose `eval.json` exists is skipped, so an interrupted suite resumes where it
stopped; a run that trained but did not evaluate is only evaluated.

Seeds. Suite seed `s` gives each source of chance its own seed ([`derived_seeds`]): the behaviour data
is made with seed `s`, training takes `seed = 100_000 + s` (initialization) and `data_seed =
200_000 + s` (the order of the batches), and the evaluation seeds torch with `300_000 + s` for
policies that sample. The evaluation episodes do not depend on `s`: every run of a task plays the same
enumerated episodes (environment seeds `EVAL_SEED`, ... on the test split; the ported tasks map seed
`k` to start or answer `k % N`, so `episodes: N` plays each once).

Validation and test. `--split test` (the default) evaluates on the test episodes (environment split
"eval", the recipe's options, seeds from `EVAL_SEED`); `--split validation` on the task's
`validation:` episodes, writing to `OUTPUT_DIR/validation/` (the trained models are shared). A
validation spec must differ from the test where it can be checked: other options, another
environment split, or a seed range disjoint from the test's; a suite where they coincide is refused.
Choose settings on validation and record them in `choices:`.

Statistics, per task and row, over the n seeds (each seed's run scored on its own data's anchors,
unclipped: [`lmrl.envs.t_interval`]): the mean of the per-seed normalized scores with a Student-t 95%
interval (n - 1 degrees of freedom), and for every row the paired difference to the same seeds' BC
(`bc`) with its t-interval. Rows with fewer than 5 seeds are marked. Rows of kind "upper_bound" (an
algorithm with `upper_bound: true`, or a reference policy of that kind) and reference policies get
their own sections under the learned rows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .envs.scoring import EVAL_SEED, TaskAnchors, paired_difference, t_interval

MIN_SEEDS = 5  # the protocol's minimum for a reported row
BASELINE = "bc"  # the algorithm every row is paired with
SEED_OFFSETS = {"data": 0, "seed": 100_000, "data_seed": 200_000, "sampling": 300_000}


def derived_seeds(seed: int) -> dict[str, int]:
    """The seeds suite seed `seed` gives its data, training initialization, batch order and evaluation
    sampling.

    Example:
        ```python
        >>> derived_seeds(2)
        {'data': 2, 'seed': 100002, 'data_seed': 200002, 'sampling': 300002}
        ```
    """
    return {name: offset + seed for name, offset in SEED_OFFSETS.items()}


@dataclass
class AlgorithmSpec:
    name: str
    recipe: str
    overrides: dict = field(default_factory=dict)
    checkpoint: str | None = None  # evaluate this other algorithm's model, train nothing
    upper_bound: bool = False  # uses what a learner cannot (the true simulator, the true state)


@dataclass
class EpisodeSet:
    """The episodes a run is evaluated on: the environment split, the options added to the recipe's,
    the first environment seed and the count."""

    split: str = "eval"
    options: dict = field(default_factory=dict)
    seed: int = EVAL_SEED
    episodes: int = 100

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.episodes))


@dataclass
class TaskSpec:
    name: str
    task: str
    data: dict
    algorithms: list[AlgorithmSpec]
    overrides: dict = field(default_factory=dict)
    reference: dict | None = None
    test: EpisodeSet = field(default_factory=EpisodeSet)
    validation: EpisodeSet | None = None
    references: bool = False
    choices: str | None = None


@dataclass
class Suite:
    output_dir: Path
    seeds: list[int]
    episodes: int
    tasks: list[TaskSpec]
    source: str = "suite"
    split: str = "test"

    @property
    def run_dir(self) -> Path:
        """Where this split's evaluations and tables go (the trained models stay in `output_dir`)."""
        return self.output_dir if self.split == "test" else self.output_dir / self.split


def _need(mapping: dict, key: str, where: str):
    if key not in mapping:
        raise ValueError(f"{where}: missing field '{key}'.")
    return mapping[key]


def _known(mapping: dict, valid: set[str], where: str) -> None:
    extra = set(mapping) - valid
    if extra:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(extra))}; valid: {', '.join(sorted(valid))}.")


def _count(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where} must be a positive number of episodes, got {value!r}.")
    return value


def _read_reference(reference, where: str) -> dict:
    if not isinstance(reference, dict):
        raise ValueError(f"{where}: a mapping with source, setting and scores, got {reference!r}.")
    _known(reference, {"source", "setting", "scores"}, where)
    for key in ("source", "setting", "scores"):
        _need(reference, key, where)
    if not isinstance(reference["scores"], dict):
        raise ValueError(f"{where}.scores: a mapping of algorithm: published score, got {reference['scores']!r}.")
    return reference


def _test_options(spec: TaskSpec) -> list[dict]:
    """The environment options of each algorithm's test evaluation: its recipe's task_kwargs with the
    suite's overrides."""
    from .recipes import read_recipe

    options = []
    for algo in spec.algorithms:
        recipe = read_recipe(algo.recipe, {**spec.overrides, **algo.overrides})
        options.append(dict(recipe.get("task_kwargs") or {}))
    return options


def _check_apart(spec: TaskSpec, where: str) -> None:
    """Refuse validation episodes that are (or may be) test episodes."""
    validation, test = spec.validation, spec.test
    if validation.split != test.split:
        return
    if any({**options, **validation.options} != options for options in _test_options(spec)):
        return
    seeds, test_seeds = set(validation.seeds), set(test.seeds)
    if seeds & test_seeds:
        shared = sorted(seeds & test_seeds)
        raise ValueError(
            f"{where}.validation: the validation episodes are test episodes (same split '{test.split}', same "
            f"options, seeds {shared[0]}..{shared[-1]} in both). Give it other options (e.g. another layout), "
            f"split: validation where the task has one, or a seed range apart from the test's "
            f"{test.seed}..{test.seed + test.episodes - 1}.")


def read_suite(path: str | Path, output_dir: str | None = None, split: str = "test") -> Suite:
    """Parse and check a suite file; every problem is named with its place in the file."""
    from .recipes import plain_yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such suite file.")
    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}.")
    raw = plain_yaml(path.read_text(), str(path)) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a suite is a mapping of field: value, got {type(raw).__name__}.")
    _known(raw, {"output_dir", "seeds", "episodes", "tasks"}, str(path))
    seeds = _need(raw, "seeds", str(path))
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}.")
    episodes = _count(raw.get("episodes", 100), f"{path}: episodes")
    tasks = []
    for name, spec in (_need(raw, "tasks", str(path)) or {}).items():
        where = f"{path}: tasks.{name}"
        _known(spec, {"task", "data", "algorithms", "overrides", "reference", "episodes", "validation",
                      "references", "choices"}, where)
        algorithms = []
        for algo, entry in (_need(spec, "algorithms", where) or {}).items():
            entry = {"recipe": entry} if isinstance(entry, str) else dict(entry)
            _known(entry, {"recipe", "overrides", "checkpoint", "upper_bound"}, f"{where}.algorithms.{algo}")
            recipe = _need(entry, "recipe", f"{where}.algorithms.{algo}")
            if not Path(recipe).is_file():
                raise ValueError(f"{where}.algorithms.{algo}: no such recipe file {recipe}.")
            algorithms.append(AlgorithmSpec(algo, recipe, entry.get("overrides") or {}, entry.get("checkpoint"),
                                            bool(entry.get("upper_bound", False))))
        names = [a.name for a in algorithms]
        for algo in algorithms:
            if algo.checkpoint and algo.checkpoint not in names[: names.index(algo.name)]:
                raise ValueError(f"{where}.algorithms.{algo.name}: checkpoint '{algo.checkpoint}' must name an "
                                 "algorithm listed before it.")
        data = _need(spec, "data", where)
        _known(data, {"episodes", "options", "labeled_share", "unlabeled"}, f"{where}.data")
        if data.get("unlabeled", "keep") not in ("keep", "drop"):
            raise ValueError(f"{where}.data.unlabeled must be 'keep' or 'drop', got {data['unlabeled']!r}.")
        if "unlabeled" in data and "labeled_share" not in data:
            raise ValueError(f"{where}.data: 'unlabeled' needs 'labeled_share' (the share of episodes that keep "
                             "their rewards).")
        test = EpisodeSet(episodes=_count(spec.get("episodes", episodes), f"{where}.episodes"))
        validation = None
        if spec.get("validation") is not None:
            entry = spec["validation"]
            _known(entry, {"options", "split", "seed", "episodes"}, f"{where}.validation")
            validation = EpisodeSet(str(entry.get("split", "eval")), dict(entry.get("options") or {}),
                                    int(entry.get("seed", EVAL_SEED)),
                                    _count(entry.get("episodes", test.episodes), f"{where}.validation.episodes"))
        choices = spec.get("choices")
        if choices is not None and not isinstance(choices, str):
            raise ValueError(f"{where}.choices: free text (what was chosen, among which candidates, on which "
                             f"split), got {type(choices).__name__}.")
        reference = _read_reference(spec["reference"], f"{where}.reference") if spec.get("reference") else None
        task = TaskSpec(name, _need(spec, "task", where), data, algorithms, spec.get("overrides") or {}, reference,
                        test, validation, bool(spec.get("references", False)), choices)
        if validation is not None:
            _check_apart(task, where)
        tasks.append(task)
    return Suite(Path(output_dir or raw.get("output_dir", "runs/benchmark")), seeds, episodes, tasks, str(path),
                 split)


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
    from .evaluation import dataset_returns, evaluate_policy
    from .tasks import get_task

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
    from .api import train
    from .evaluation import evaluate_checkpoint, format_score_line
    from .recipes import parse_recipe, read_recipe
    from .trainers.checkpointing import last_complete_checkpoint

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
    from .api import make_data

    log(f"[benchmark] {task.name} seed {seed}: making data")
    partial = Path(str(data) + ".partial")
    make_data(task.task, int(task.data.get("episodes", 1000)), str(partial), data_seed,
              dict(task.data.get("options") or {}))
    if "labeled_share" in task.data:
        _unlabel_file(partial, float(task.data["labeled_share"]), data_seed, task.data.get("unlabeled", "keep") == "keep")
    partial.replace(data)  # whole or absent: a resumed suite never reads half a file


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


def main(suite_path: str, output_dir: str | None = None, only: list[str] | None = None,
         seeds: list[int] | None = None, split: str = "test") -> int:
    start = time.perf_counter()
    suite = read_suite(suite_path, output_dir, split)
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
    if split == "validation":
        missing = [t.name for t in suite.tasks if t.validation is None]
        if missing:
            raise ValueError(f"{suite_path}: --split validation, and task(s) {', '.join(missing)} have no "
                             "'validation' episodes; add e.g. validation: {options: {layout: ...}} or "
                             "validation: {split: validation}, or leave them out with --task.")
    stem = "benchmark" if not only else "benchmark-" + "-".join(t.name for t in suite.tasks)  # a part keeps its own table
    if seeds:
        stem += "-seed" + "-".join(map(str, suite.seeds))
    rows = summarize(suite, run_suite(suite, log=lambda m: print(m, flush=True)))
    text = table(rows)
    seconds = time.perf_counter() - start
    print(text)
    print(f"{len(suite.seeds)} seed(s) on the {split} episodes; wall time {seconds:.0f} s "
          f"(runs finished before were reused). Plot: {suite.run_dir / (stem + '.png')}")
    plot(rows, suite.run_dir / f"{stem}.png")
    (suite.run_dir / f"{stem}.json").write_text(json.dumps({"suite": suite.source, "split": split, "rows": rows,
                                                           "wall_time_s": seconds}, indent=2))
    (suite.run_dir / f"{stem}.md").write_text(text)
    return 0
