"""Suite files: their format, how they are read and checked, and the seeds a suite seed derives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..envs.scoring import EVAL_SEED

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
    from ..recipes import read_recipe

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
    from ..recipes import plain_yaml

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
