"""Tasks: what lmrl needs to know about a task ([`Task`]), the registry that finds one by name, and the
tasks shipped with lmrl: LMRL-Gym's maze and Wordle ported exactly (lmrl_gym_maze, lmrl_gym_wordle), and
lmrl's own diagnostic tasks (maze, wordle, negotiation, flight_booking).

A task of your own plugs in without editing lmrl, in one of three ways:
- `register_task(MY_TASK)`, in the process that uses it (a script, a notebook);
- published by an installed package under the entry-point group `lmrl.tasks`, in its pyproject.toml:
  `[project.entry-points."lmrl.tasks"]` then `my_task = "my_package.tasks:MY_TASK"`;
- named by reference, `"my_package.tasks:MY_TASK"`, wherever a task name goes (a recipe's `task:`,
  `lmrl make-data`), so a command started in another process finds it too.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from ..envs.base import TextEnv
from ..envs.reference import ReferencePolicy
from ..envs.rollout import EpisodeResult
from ..envs.scoring import TaskAnchors

ENTRY_POINT_GROUP = "lmrl.tasks"

# The factories that take the task's options (a recipe's `task_kwargs` go to each of them), with the
# arguments their callers give of their own: how many leading positional ones, and which keywords.
_FACTORIES = {"make_env": (1, ()), "make_data": (1, ("seed", "progress")), "anchors": (1, ()),
              "human_side": (0, ()), "reference_policies": (1, ("seed",))}


@dataclass
class Task:
    """What lmrl needs to know about a task: how to make its environment, its behaviour data and the anchors
    of its normalized score, and the optional parts some algorithms and commands use.

    make_env(split, **options): a fresh environment; split "eval" uses held-out starts/answers.
    make_data(n, seed=0, progress=True, **options): n behaviour-policy episodes.
    anchors(dataset_return, **options): the normalized-score anchors.
    critic_features(messages, reply): optional numeric features of a reply for the CHAI critic.
    rank_rule(messages, reply): optional hand-written score of a reply (e.g. from its critic features),
        ranking proposals with no training: the baseline a learned reranker is measured against.
    load_corpus(path, on_error=None, **options): optional loader of the task's human corpus (its
        published format): yields rows one at a time; a malformed record raises `lmrl.data.corpus.CorpusError`,
        or goes to `on_error(error)` when given.
    corpus_schema(): the pyarrow schema of those rows, for writing them as Parquet (optional).
    relabel(row), outcome_label(row): CALM's task relabelling and the class of a dialogue's outcome
        for its outcome head (optional).
    ends_episode(reply): whether an agent reply ends the episode (e.g. a final action), for planning
        with a learned user model (optional).
    human_side(**options): the other side of the dialogue for a person to play (`lmrl play`), a
        [`lmrl.envs.human.HumanSide`] (optional).
    reference_policies(rows, seed=0, **options): scripted policies that place the learners' scores (random,
        the data's player, the best player), each a [`lmrl.envs.ReferencePolicy`] whose `kind` says whether
        it only uses what the agent sees ("reference") or is an oracle ("upper_bound"); `rows` are the
        seed's behaviour data as row dicts (optional).

    The task's options are the keyword parameters of make_env, make_data, anchors, human_side and
    reference_policies (`Task.options`, in that order): the same options (a recipe's `task_kwargs`, `lmrl make-data
    --option`) go to each of them, each receiving those it takes, and an option none of them takes is
    an error that names it. So the factories name their options and take no `**kwargs`.

    Example:
        ```python
        >>> task = Task("coin", make_env=lambda split="eval", sides=2: CoinEnv(sides),
        ...             make_data=lambda n, seed=0, sides=2: coin_episodes(n, seed, sides),
        ...             anchors=lambda dataset_return: TaskAnchors(0.0, dataset_return, 1.0), max_turns=3)
        >>> task.options
        ('sides',)
        >>> task.make_env("eval", sieds=3)
        ValueError: Task 'coin' has no option 'sieds'; its options: sides (did you mean 'sides'?).
        ```
    """

    name: str
    make_env: Callable[..., TextEnv]
    make_data: Callable[..., list[EpisodeResult]]
    anchors: Callable[..., TaskAnchors]
    max_turns: int
    max_new_tokens: int = 16
    critic_features: Callable[[list[dict], str], list[float]] | None = None
    rank_rule: Callable[[list[dict], str], float] | None = None
    load_corpus: Callable[..., Iterable[dict]] | None = None
    corpus_schema: Callable[[], Any] | None = None
    relabel: Callable[[dict], dict | None] | None = None
    outcome_label: Callable[[dict], int] | None = None
    ends_episode: Callable[[str], bool] | None = None
    human_side: Callable[..., Any] | None = None
    reference_policies: Callable[..., list[ReferencePolicy]] | None = None
    options: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self):
        calls = {}
        for role, (leading, keywords) in _FACTORIES.items():
            factory = getattr(self, role)
            if factory is not None:
                if isinstance(factory, _TakesOptions):  # dataclasses.replace() of a task
                    factory = factory.factory
                calls[role] = _TakesOptions(self, role, factory, leading, keywords)
        self.options = tuple(dict.fromkeys(option for call in calls.values() for option in call.options))
        for role, call in calls.items():
            setattr(self, role, call)

    def check_options(self, options: Mapping[str, Any] | None) -> None:
        """Raise a ValueError naming any of `options` that is not an option of this task."""
        unknown = [name for name in options or {} if name not in self.options]
        if unknown:
            raise ValueError(_no_such_option(f"Task {self.name!r}", unknown, self.options))


class _TakesOptions:
    """One of a task's factories, called with the task's options: each one the task does not have is an
    error, and the factory receives those it takes."""

    def __init__(self, task: Task, role: str, factory: Callable, leading: int, keywords: tuple[str, ...]):
        self.task, self.factory = task, factory
        where = f"Task {task.name!r}: {role}"
        try:
            parameters = list(inspect.signature(factory).parameters.values())
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a function whose signature names its options "
                             "(inspect.signature cannot read it).") from None
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            raise ValueError(f"{where} takes **kwargs, so its options cannot be checked: name each option it takes "
                             "as a keyword parameter with a default.")
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < leading and not any(p.kind is p.VAR_POSITIONAL for p in parameters):
            first = {"make_env": "the split", "make_data": "the number of episodes",
                     "anchors": "the dataset's average return", "reference_policies": "the behaviour data's rows"}[role]
            raise ValueError(f"{where} must take {first} as its first argument.")
        named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        own = {p.name for p in positional[:leading]} | set(keywords)
        self.own, self.takes = own, set(named)
        self.options = [name for name in named if name not in own]

    def __call__(self, *args, **kwargs):
        self.task.check_options({k: v for k, v in kwargs.items() if k not in self.own})
        return self.factory(*args, **{k: v for k, v in kwargs.items() if k in self.takes})

    def __repr__(self) -> str:
        return repr(self.factory)


def _no_such_option(what: str, unknown: list[str], options: Iterable[str]) -> str:
    options = list(options)
    text = f"{what} has no option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
    text += f"its options: {', '.join(options)}" if options else "it takes none"
    hints = [(name, close[0]) for name in unknown if (close := get_close_matches(name, options, n=1))]
    if hints:
        text += " (did you mean " + ", ".join(repr(c) if len(unknown) == 1 else f"{c!r} for {n!r}"
                                              for n, c in hints) + "?)"
    return text + "."


_BUILTIN = {"flight_booking": "lmrl.tasks.flight_booking", "maze": "lmrl.tasks.maze",
            "negotiation": "lmrl.tasks.negotiation", "wordle": "lmrl.tasks.wordle",
            "lmrl_gym_maze": "lmrl.tasks.lmrl_gym_maze", "lmrl_gym_wordle": "lmrl.tasks.lmrl_gym_wordle"}
_REGISTERED: dict[str, Task] = {}


def register_task(task: Task, replace: bool = False) -> Task:
    """Make `task` known by its name to `get_task` (so to `make_data`, `evaluate`, recipes) in this process.
    A name already taken (by a registered or a built-in task) is an error unless `replace=True`.

    Example:
        ```python
        >>> register_task(Task("coin", make_env=..., make_data=..., anchors=..., max_turns=3))
        >>> make_data("coin", episodes=100, out="coin.jsonl")
        ```
    """
    if not isinstance(task, Task):
        raise TypeError(f"register_task takes an lmrl.tasks.Task, got {type(task).__name__}.")
    if ":" in task.name:
        raise ValueError(f"Task name {task.name!r}: a ':' would read as a 'package.module:ATTRIBUTE' reference; "
                         "choose a name without one.")
    if not replace and (task.name in _REGISTERED or task.name in _BUILTIN):
        taken = "a registered" if task.name in _REGISTERED else "a built-in"
        raise ValueError(f"Task name {task.name!r} is taken by {taken} task; pass replace=True to put yours in its "
                         "place, or choose another name.")
    _REGISTERED[task.name] = task
    return task


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """The names `get_task` knows: the built-in tasks, the registered ones and those installed packages
    publish (a `"package.module:ATTRIBUTE"` reference works as well, without being listed)."""
    return sorted({*_BUILTIN, *_REGISTERED, *_entry_points()})


def get_task(name: str) -> Task:
    """The task called `name`: a registered task ([`register_task`]), a built-in one, one an installed
    package publishes under the entry-point group `lmrl.tasks`, or the Task object a
    `"package.module:ATTRIBUTE"` reference names."""
    if ":" in name:
        return _task_by_reference(name)
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return importlib.import_module(_BUILTIN[name]).TASK
    points = _entry_points()
    if name in points:
        point = points[name]
        package = f"package {point.dist.name!r}" if getattr(point, "dist", None) else "an installed package"
        task = _must_be_task(point.load(), f"Entry point {name!r} ({point.value}) of {package}")
        if task.name != name:
            raise ValueError(f"Entry point {name!r} ({point.value}) of {package} gives the task named {task.name!r}; "
                             "the entry point and the task must have the same name.")
        return task
    available = sorted({*_BUILTIN, *_REGISTERED, *points})
    close = get_close_matches(name, available, n=1)
    raise ValueError(f"Unknown task {name!r}; available: {', '.join(available)}"
                     + (f" (did you mean {close[0]!r}?)" if close else "")
                     + ". A task of your own: register it (lmrl.tasks.register_task), publish it under the "
                     f"entry-point group {ENTRY_POINT_GROUP!r}, or name it as 'package.module:ATTRIBUTE'.")


def _task_by_reference(reference: str) -> Task:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"Task {reference!r}: a reference is 'package.module:ATTRIBUTE', e.g. 'my_tasks:COIN'.")
    value = _import(module_name, reference)
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValueError(f"Task {reference!r}: module {module_name!r} has no {attribute!r}.")
        value = getattr(value, part)
    return _must_be_task(value, f"Task {reference!r}")


def _import(module_name: str, reference: str):
    """The module, looked for on sys.path and then, like `python -m` does, in the working directory."""
    parts = module_name.split(".")
    itself = {".".join(parts[: i + 1]) for i in range(len(parts))}  # not found: the module, not what it imports
    for attempt in ("sys.path", "the working directory"):
        if attempt != "sys.path":
            if "" in sys.path or os.getcwd() in sys.path:
                break
            sys.path.append(os.getcwd())
            importlib.invalidate_caches()
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name not in itself:
                raise
    raise ValueError(f"Task {reference!r}: no module {module_name!r} to import. Install the package that holds it, "
                     "run from the folder that holds it, or add that folder to PYTHONPATH.")


def _must_be_task(value, where: str) -> Task:
    if not isinstance(value, Task):
        raise ValueError(f"{where} is a {type(value).__name__}, not an lmrl.tasks.Task.")
    return value


def convert_corpus(task_name: str, source, out, on_error: str = "stop", rejected=None, progress=None,
                   **options) -> dict:
    """Convert a task's human corpus file (its published format) into training rows at `out` (.jsonl, or
    .parquet), streaming (`lmrl.data.corpus.convert_records`); `options` go to the task's loader (e.g.
    `success_rule="flight_status"`).

    Example:
        >>> convert_corpus("negotiation", "train.json", "rows.jsonl")["rows"]  # doctest: +SKIP
        5247
    """
    from ..data.corpus import convert_records

    task = get_task(task_name)
    if task.load_corpus is None:
        raise ValueError(f"Task {task_name!r} has no human-corpus loader.")
    parameters = list(inspect.signature(task.load_corpus).parameters.values())
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        takes = [p.name for p in parameters[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and p.name != "on_error"]
        unknown = [name for name in options if name not in takes]
        if unknown:
            raise ValueError(_no_such_option(f"The corpus loader of task {task_name!r}", unknown, takes))
    parquet = str(out).lower().endswith(".parquet")
    schema = task.corpus_schema() if parquet and task.corpus_schema is not None else None
    return convert_records(task.load_corpus, source, out, on_error=on_error, rejected=rejected, progress=progress,
                           schema=schema, name=task_name, **options)
