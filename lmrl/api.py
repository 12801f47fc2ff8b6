"""The functions a script or a notebook calls; `lmrl <command>` (`lmrl.cli`) only parses arguments and
calls them.

    >>> from lmrl.api import make_data, train, evaluate                      # doctest: +SKIP
    >>> make_data("maze", episodes=1000, out="runs/data/maze.jsonl")
    >>> train("recipes/maze/ilql.yaml", {"num_train_epochs": 2})
    >>> evaluate("recipes/maze/ilql.yaml", episodes=100)

A recipe is one YAML file: the script fields ([`lmrl.recipes.ScriptArguments`]) plus any field of the
algorithm's config (`ILQLConfig`, `BCConfig`, `MCConfig`, `CHAIConfig`, `CALMConfig`, which extend
`transformers.TrainingArguments`). `overrides` replace fields of the file: a dict of field -> value,
or the command line's `["--field", "value", ...]`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .data.outputs import atomic_output, check_outputs
from .envs import EVAL_SEED
from .recipes import ALGORITHMS, ScriptArguments, get_peft_config, parse_recipe, read_recipe, save_recipe

Overrides = Mapping[str, object] | Sequence[str] | None


def _local_paths(value) -> list[Path]:
    """The local files and folders among a recipe's dataset value(s) (hub ids are left out)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [Path(v) for v in values if isinstance(v, (str, Path)) and Path(v).exists()]


def _check_run_folder(recipe_path: str | Path, script: ScriptArguments, config) -> None:
    """Training writes its files at the top of `output_dir`: nothing it reads may be there."""
    from .data.outputs import same_file

    output_dir = Path(config.output_dir)
    inputs = [("the recipe", Path(recipe_path))]
    inputs += [("dataset", p) for p in _local_paths(script.dataset)]
    inputs += [("eval_dataset", p) for p in _local_paths(script.eval_dataset)]
    for label, path in inputs:
        if same_file(path, output_dir) or same_file(path.parent, output_dir):
            raise ValueError(f"{label} ({path}) is in output_dir ({output_dir}), where training writes its model, "
                             "checkpoints and recipe.yaml: it could be overwritten. Move it, or choose another "
                             "output_dir.")


def build_trainer(script: ScriptArguments, config):
    """The trainer a parsed recipe describes: its data loaded, its model and tokenizer built or loaded."""
    from transformers import AutoTokenizer

    from .data import load_episodes
    from .models.model_files import check_model_source
    from .models.tiny import build_tiny, tiny_for_tokenizer

    algorithm = ALGORITHMS[script.algorithm]
    train = load_episodes(script.dataset, split=script.dataset_split)
    evaluation = load_episodes(script.eval_dataset) if script.eval_dataset else None
    if script.tiny_model is not None:
        if script.tokenizer_name_or_path:  # e.g. a small value model that steers a frozen LM
            check_model_source(script.tokenizer_name_or_path, "tokenizer_name_or_path")
            tokenizer = AutoTokenizer.from_pretrained(script.tokenizer_name_or_path,
                                                      trust_remote_code=config.trust_remote_code)
            model = tiny_for_tokenizer(tokenizer, **script.tiny_model)
        else:
            model, tokenizer = build_tiny(train, **script.tiny_model)
        if script.use_peft:  # the adapter names its base model: write the in-memory one to disk
            base = Path(config.output_dir) / "base_model"
            model.save_pretrained(base)
            tokenizer.save_pretrained(base)
            model.name_or_path = str(base)
    else:
        model = script.model_name_or_path
        gguf = {}
        if script.gguf_file:
            config.model_init_kwargs = {**(config.model_init_kwargs or {}), "gguf_file": script.gguf_file}
            gguf = {} if script.tokenizer_name_or_path else {"gguf_file": script.gguf_file}
        check_model_source(model, "model_name_or_path", (config.model_init_kwargs or {}).get("cache_dir"))
        if script.tokenizer_name_or_path:
            check_model_source(script.tokenizer_name_or_path, "tokenizer_name_or_path")
        tokenizer = AutoTokenizer.from_pretrained(
            script.tokenizer_name_or_path or script.model_name_or_path, trust_remote_code=config.trust_remote_code,
            **gguf,
        )
    # CHAI trains a critic over a frozen proposal LM; every other algorithm trains the model itself
    models = {"proposal_model": model} if algorithm.trains_critic else {"model": model}
    return algorithm.trainer(**models, args=config, train_dataset=train, eval_dataset=evaluation,
                             processing_class=tokenizer, peft_config=get_peft_config(script),
                             **_task_functions(config))


def _task_functions(config) -> dict:
    """What a trainer takes from the task its config names (the trainers look no task up by name):
    CALM's `outcome_label` and `relabel` (`outcome_task`), CHAI's reply `features` (`critic_features`)."""
    from .tasks import get_task

    functions = {}
    if getattr(config, "outcome_task", None):
        task = get_task(config.outcome_task)
        if task.outcome_label is None:
            raise ValueError(f"outcome_task: task {config.outcome_task!r} has no outcome labels for CALM "
                             "(Task.outcome_label); name a task that has, or leave the field out.")
        functions.update(outcome_label=task.outcome_label, relabel=task.relabel)
    if getattr(config, "critic_features", None):
        features = get_task(config.critic_features).critic_features
        if features is None:
            raise ValueError(f"critic_features: task {config.critic_features!r} defines no critic features "
                             "(Task.critic_features); leave the field out.")
        functions["features"] = features
    return functions


def train(recipe_path: str | Path, overrides: Overrides = None) -> dict:
    """Train the recipe, save the model, its `train_summary.json` and the recipe to `output_dir`."""
    recipe = read_recipe(recipe_path, overrides)
    script, config = parse_recipe(recipe, str(recipe_path))
    if script.rank_rule:
        raise ValueError(f"{recipe_path}: 'rank_rule' ranks proposals by the task's hand-written rule, so there is "
                         "nothing to train: evaluate it (lmrl eval) once its proposal_model is trained.")
    _check_run_folder(recipe_path, script, config)
    trainer = build_trainer(script, config)
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model()
    summary = {"algorithm": script.algorithm, "output_dir": config.output_dir, **trainer.parameter_counts,
               **result.metrics}
    if trainer.state.num_input_tokens_seen:  # counted when the config's include_num_input_tokens_seen is set
        summary["train_tokens"] = int(trainer.state.num_input_tokens_seen)
    if trainer.is_world_process_zero():  # one writer under torchrun / accelerate launch
        Path(config.output_dir, "train_summary.json").write_text(json.dumps(summary, indent=2))
        save_recipe(recipe, config.output_dir)  # lmrl play OUTPUT_DIR reads the task and decoding from it
    return summary


def cache_features(recipe_path: str | Path, overrides: Overrides = None) -> dict:
    """Build (or finish, or check) the feature cache a recipe's `feature_cache` names: its frozen model run
    once over its dataset. `lmrl train` builds it too when it is missing; returns what the cache holds."""
    import time

    from .trainers.feature_cache import FeatureCache

    script, config = parse_recipe(read_recipe(recipe_path, overrides), str(recipe_path))
    if not getattr(config, "feature_cache", None):
        raise ValueError(f"{recipe_path}: no feature_cache folder is set; add feature_cache: FOLDER (ILQL, MC, CHAI or CALM) "
                         "to train heads on a frozen model's cached hidden states.")
    start = time.perf_counter()
    build_trainer(script, config)  # tokenizes the data and builds the cache it reads
    seconds = time.perf_counter() - start
    caches = {split: FeatureCache(Path(config.feature_cache) / split) for split in ("train", "eval")
              if (Path(config.feature_cache) / split / "feature_cache.json").is_file()}
    summary = {"feature_cache": config.feature_cache, "seconds": round(seconds, 1)}
    for split, cache in caches.items():
        summary[split] = {"rows": len(cache), "bytes": cache.nbytes(), "model": cache.manifest["model"],
                          "hidden_size": cache.manifest["hidden_size"], "dtype": cache.manifest["dtype"]}
    return summary


def make_data(task_name: str, episodes: int, out: str | Path, seed: int = 0, task_kwargs: dict | None = None) -> dict:
    """`episodes` behaviour-policy episodes of a task, written as JSONL rows to `out`; returns their statistics."""
    from .envs import mean_ci
    from .tasks import get_task

    task = get_task(task_name)
    results = task.make_data(episodes, seed=seed, **(task_kwargs or {}))
    path = Path(out)
    with atomic_output(path) as partial, partial.open("w") as handle:
        for result in results:
            handle.write(json.dumps(result.as_row()) + "\n")
    mean, low, high = mean_ci([r.total_reward for r in results])
    return {"task": task_name, "episodes": len(results), "out": str(path), "mean_return": mean,
            "ci": [low, high], "success_rate": sum(r.success for r in results) / len(results)}


def write_user_side(dataset: str, out: str | Path) -> dict:
    """Rows of the user's side of each episode of `dataset` ([`lmrl.data.user_side`]), as JSON lines."""
    from .data import load_episodes, user_side, validate_row

    path = Path(out)
    check_outputs(inputs=_local_paths(dataset), outputs={"--out": path})
    rows = 0
    with atomic_output(path) as partial, partial.open("w") as handle:
        for index, row in enumerate(load_episodes(dataset)):
            messages = validate_row(row, index).messages()
            handle.write(json.dumps({"messages": user_side(messages), "done": True}) + "\n")
            rows += 1
    return {"rows": rows, "out": str(path)}


def evaluate(recipe_path: str | Path, checkpoint: str | None = None, episodes: int = 100, overrides: Overrides = None,
             out_dir: str | None = None, seed: int = EVAL_SEED) -> dict:
    """Evaluate a checkpoint (default: the recipe's `output_dir`) online in the recipe's task; prints one
    score line and writes `eval.json` to `out_dir` (default: the checkpoint). A policy that samples is
    seeded with `seed`, so the same command gives the same episodes."""
    from .evaluation import evaluate_checkpoint, format_score_line

    script, config = parse_recipe(read_recipe(recipe_path, overrides), str(recipe_path))
    report_path = Path(out_dir or checkpoint or config.output_dir, "eval.json")
    check_outputs(inputs=[Path(recipe_path), *_local_paths(script.dataset)], outputs={"eval.json": report_path})
    report = evaluate_checkpoint(script, config, checkpoint or config.output_dir, episodes, seed=seed, out_dir=out_dir,
                                 sampling_seed=seed)
    if config.process_index == 0:
        print(format_score_line(report))
    return report


def convert(task_name: str, source: str, out: str, on_error: str = "stop", rejected: str | None = None,
            options: dict | None = None) -> dict:
    """Stream a task's human corpus into rows ([`lmrl.tasks.convert_corpus`]); with on_error="skip",
    also print the rejected records' counts by reason."""
    from .tasks import convert_corpus

    summary = convert_corpus(task_name, source, out, on_error=on_error, rejected=rejected, **(options or {}))
    if summary.get("rejected"):
        print(f"lmrl convert: left out {summary['rejected']} record(s), listed in {summary['rejected_file']}:",
              file=sys.stderr)
        for reason, count in summary["rejected_by_reason"].items():
            print(f"  {count:>8}  {reason}", file=sys.stderr)
    return summary


__all__ = ["EVAL_SEED", "build_trainer", "cache_features", "convert", "evaluate", "make_data", "train", "write_user_side"]
