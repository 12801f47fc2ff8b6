"""Tasks by name, for `lmrl make-data` and `lmrl eval`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .base import TextEnv
from .rollout import EpisodeResult
from .scoring import TaskAnchors


@dataclass
class Task:
    """What the CLI needs to know about a task.

    make_env(split, **kwargs): a fresh environment; split "eval" uses held-out starts/answers.
    make_data(n, seed, **kwargs): n behaviour-policy episodes.
    anchors(dataset_return, **kwargs): the normalized-score anchors.
    critic_features(messages, reply): optional numeric features of a reply for the CHAI critic.
    load_corpus(path, on_error=None, **options): optional loader of the task's human corpus (its
        published format): yields rows one at a time; a malformed record raises `lmrl.data.corpus.CorpusError`,
        or goes to `on_error(error)` when given.
    corpus_schema(): the pyarrow schema of those rows, for writing them as Parquet (optional).
    relabel(row), outcome_label(row): CALM's task relabelling and the class of a dialogue's outcome
        for its outcome head (optional).
    ends_episode(reply): whether an agent reply ends the episode (e.g. a final action), for planning
        with a learned user model (optional).
    human_side(**kwargs): the other side of the dialogue for a person to play (`lmrl play`), a
        [`lmrl.envs.human.HumanSide`] taking the task's options (optional).
    """

    name: str
    make_env: Callable[..., TextEnv]
    make_data: Callable[..., list[EpisodeResult]]
    anchors: Callable[..., TaskAnchors]
    max_turns: int
    max_new_tokens: int = 16
    critic_features: Callable[[list[dict], str], list[float]] | None = None
    load_corpus: Callable[..., Iterable[dict]] | None = None
    corpus_schema: Callable[[], Any] | None = None
    relabel: Callable[[dict], dict | None] | None = None
    outcome_label: Callable[..., int] | None = None
    ends_episode: Callable[[str], bool] | None = None
    human_side: Callable[..., Any] | None = None


_MODULES = {"flight_booking": "lmrl.tasks.flight_booking", "maze": "lmrl.tasks.maze",
            "negotiation": "lmrl.tasks.negotiation", "wordle": "lmrl.tasks.wordle"}


def get_task(name: str) -> Task:
    if name not in _MODULES:
        raise ValueError(f"Unknown task {name!r}; available: {', '.join(sorted(_MODULES))}.")
    return importlib.import_module(_MODULES[name]).TASK


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
    parquet = str(out).lower().endswith(".parquet")
    schema = task.corpus_schema() if parquet and task.corpus_schema is not None else None
    return convert_records(task.load_corpus, source, out, on_error=on_error, rejected=rejected, progress=progress,
                           schema=schema, name=task_name, **options)
