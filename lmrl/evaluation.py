"""Online evaluation of a trained checkpoint on its task, and comparison of several runs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .data import is_unlabeled, load_episodes, validate_row
from .data.outputs import atomic_output
from .envs import EVAL_SEED, format_normalized, mean_ci, rollout, score_episodes
from .generation import GeneratePolicy
from .tasks import get_task

FREE_CHAT_TOKENS = 64  # reply length without a task (lmrl play on a chat model)


def dataset_returns(source) -> list[float]:
    """Every labelled episode's return (their mean is the 50 anchor of the normalized score); episodes
    marked `"labeled": false` have none and are left out of it."""
    rows = load_episodes(source)
    returns = [validate_row(row, i).total_reward for i, row in enumerate(rows) if not is_unlabeled(row)]
    if not returns:
        raise ValueError(f"{source}: every episode is unlabeled ('labeled': false), so the data has no average "
                         "return to anchor the normalized score; label some of them.")
    return returns


def _checkpoint_dir(checkpoint: str | Path) -> Path:
    from .models.model_files import check_safetensors_files
    from .trainers.checkpointing import require_safetensors

    path = Path(checkpoint)
    if not path.is_dir():
        raise ValueError(f"{path}: no such checkpoint directory. Train first (lmrl train RECIPE) or fix the path.")
    require_safetensors(path)
    check_safetensors_files(path)
    return path


def _model_source(source: str, field: str) -> None:
    """Check a recipe's model field (`proposal_model`, `steer_model`): a folder that exists, with whole
    safetensors weights, or a hub id the hub (or, offline, its cache) can give."""
    from .models.model_files import check_model_source

    check_model_source(source, field)
    if Path(source).expanduser().is_dir():
        _checkpoint_dir(Path(source).expanduser())


def load_policy_model(checkpoint: str | Path, algorithm: str, device: str | torch.device = "cpu",
                      trust_remote_code: bool = False, config=None):
    """The trained model (on `device`) and its tokenizer, weights from safetensors only. For ILQL and MC,
    the decoding settings `config` (the recipe's) sets, e.g. `lmrl eval ... --beta 16`, replace the
    saved ones for this evaluation (logged when they differ)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import AutoModelForCausalLMWithILQLHeads
    from .models.configuration import DECODING_FIELDS, apply_head_settings

    path = _checkpoint_dir(checkpoint)
    model_class = AutoModelForCausalLMWithILQLHeads if algorithm in ("ilql", "mc") else AutoModelForCausalLM
    model = model_class.from_pretrained(path, use_safetensors=True, trust_remote_code=trust_remote_code)
    if config is not None and model_class is AutoModelForCausalLMWithILQLHeads:
        settings = {key: getattr(config, key) for key in DECODING_FIELDS if getattr(config, key, None) is not None}
        apply_head_settings(model.config, settings, where="The evaluation recipe")
    return model.to(device), AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def rank_policy(script, config, checkpoint: str | Path, max_new_tokens: int, device: str | torch.device = "cpu"):
    """Propose-and-rank: a proposal LM samples replies, the checkpoint (a CHAI critic, or an ILQL
    model scoring by the sum of advantages) picks one, or with `rank_rule` the task's hand-written rule
    (no checkpoint is read). A critic trained with reply features gets the function of the recipe's
    `critic_features` task (else of its `task`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .generation import ProposeAndRank, RuleScorer
    from .models import CHAICritic
    from .trainers.chai import CHAIConfig

    trust = config.trust_remote_code
    features = None
    if script.rank_rule:
        task = get_task(script.task)
        if task.rank_rule is None:
            raise ValueError(f"rank_rule: task {task.name!r} has no rank_rule (a hand-written score of a reply) to "
                             "rank the proposals by; drop rank_rule, or rank with a trained model.")
        critic, critic_tokenizer, source = RuleScorer(task.rank_rule), None, script.proposal_model
    elif script.algorithm == "chai":
        critic = CHAICritic.from_pretrained(_checkpoint_dir(checkpoint), use_safetensors=True).to(device)
        critic_tokenizer = None
        source = script.proposal_model or script.model_name_or_path or critic.config.proposal_model
        if critic.config.num_features:
            features = _critic_features(getattr(config, "critic_features", None) or script.task)
    else:
        critic, critic_tokenizer = load_policy_model(checkpoint, script.algorithm, device, trust, config)
        source = script.proposal_model
    if not source:
        raise ValueError("Propose-and-rank needs a proposal LM: set 'proposal_model' in the recipe.")
    _model_source(source, "proposal_model")
    proposal = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, trust_remote_code=trust).to(device)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
    k = script.rank_proposals or getattr(config, "num_proposals", CHAIConfig.num_proposals)
    return ProposeAndRank(proposal, tokenizer, critic, k=k, temperature=script.rank_temperature,
                          max_new_tokens=max_new_tokens, critic_tokenizer=critic_tokenizer,
                          max_length=getattr(config, "max_length", None), features=features)


def _critic_features(task_name: str | None):
    """The reply features of the task a CHAI critic was trained with (None without a task: the critic
    then says that it needs them)."""
    if not task_name:
        return None
    task = get_task(task_name)
    if task.critic_features is None:
        raise ValueError(f"The CHAI critic was trained with reply features, and task {task_name!r} has none "
                         "(Task.critic_features): set the recipe's critic_features to the task it was trained with.")
    return task.critic_features


def steer_policy(script, config, checkpoint: str | Path, max_new_tokens: int, device: str | torch.device = "cpu"):
    """A frozen LM (`steer_model`) decoding greedily, steered by the checkpoint's ILQL values."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if script.algorithm not in ("ilql", "mc"):
        raise ValueError(f"steer_model: only an ILQL or MC value model can steer a frozen LM; this recipe's "
                         f"algorithm is {script.algorithm!r}.")
    trust = config.trust_remote_code
    value_model, value_tokenizer = load_policy_model(checkpoint, script.algorithm, device, trust, config)
    _model_source(script.steer_model, "steer_model")
    frozen = AutoModelForCausalLM.from_pretrained(script.steer_model, use_safetensors=True,
                                                  trust_remote_code=trust).to(device)
    tokenizer = AutoTokenizer.from_pretrained(script.steer_model, trust_remote_code=trust)
    if tokenizer.get_vocab() != value_tokenizer.get_vocab():
        raise ValueError(
            f"steer_model {script.steer_model} and the value model {checkpoint} have different tokenizers "
            f"({len(tokenizer)} vs {len(value_tokenizer)} tokens): a value model steers only an LM whose token ids "
            "it shares. Train it with tokenizer_name_or_path set to the frozen LM.")
    return GeneratePolicy(frozen, tokenizer, max_new_tokens=max_new_tokens, steer=value_model,
                          do_sample=script.do_sample, reuse_cache=script.reuse_cache,
                          max_length=getattr(config, "max_length", None))


def learned_user(script, config, task, device: str | torch.device = "cpu"):
    """The learned user model of a planning recipe: `plan_user_model` answers, `plan_value_model` scores."""
    from .generation.planning import LearnedUser

    if not script.plan_value_model:
        raise ValueError("plan_user_model needs plan_value_model: an ILQL or MC model trained on the agent's rows "
                         "that scores each simulated continuation.")
    if task.ends_episode is None:
        raise ValueError(f"Task {task.name!r} does not say which agent replies end an episode (Task.ends_episode), "
                         "so a learned user model cannot be planned with; plan with the simulator instead.")
    trust = config.trust_remote_code
    user_model, user_tokenizer = load_policy_model(script.plan_user_model, "bc", device, trust)
    value_algorithm = "ilql"  # an MC model has the same heads: both load as AutoModelForCausalLMWithILQLHeads
    value_model, value_tokenizer = load_policy_model(script.plan_value_model, value_algorithm, device, trust)
    return LearnedUser(user_model, user_tokenizer, value_model, value_tokenizer, task.ends_episode,
                       max_new_tokens=task.max_new_tokens, max_length=getattr(config, "max_length", None))


def build_policy(script, config, checkpoint: str | Path, task=None, device: str | torch.device = "cpu",
                 returns: list[float] | None = None):
    """The policy a recipe decodes with, for `lmrl eval` and `lmrl play` alike: greedy (guided)
    `generate()` (sampled with `do_sample`), propose-and-rank (CHAI, or `proposal_model` set), a frozen LM steered by the
    checkpoint's values (`steer_model` set), or CALM planning (`plan_candidates > 0`). `task` (None: a
    free chat) sets the reply length; `returns`, the data's episode returns, give reward-conditioned BC
    its target (read from the recipe's dataset when not given)."""
    max_new_tokens = task.max_new_tokens if task is not None else FREE_CHAT_TOKENS
    if script.algorithm == "chai" or script.proposal_model or script.rank_rule:
        return rank_policy(script, config, checkpoint, max_new_tokens, device)
    if script.steer_model:
        return steer_policy(script, config, checkpoint, max_new_tokens, device)
    model, tokenizer = load_policy_model(checkpoint, script.algorithm, device, config.trust_remote_code, config)
    if script.plan_candidates:
        from .generation import PlanningPolicy

        if task is None:
            raise ValueError("plan_candidates: planning simulates the task's user, and this recipe has no 'task'.")
        user = learned_user(script, config, task, device) if script.plan_user_model else None
        return PlanningPolicy(model, tokenizer, num_candidates=script.plan_candidates, horizon=script.plan_horizon,
                              temperature=script.plan_temperature, max_new_tokens=max_new_tokens,
                              max_length=getattr(config, "max_length", None), user=user)
    conditioning = None
    if getattr(config, "reward_conditioned", False):  # ask for the best return the data shows
        from .trainers.bc import conditioned_messages

        target = max(returns if returns is not None else dataset_returns(script.dataset))
        conditioning = lambda conversation: conditioned_messages(conversation, target, config.return_template)  # noqa: E731
    return GeneratePolicy(model, tokenizer, max_new_tokens=max_new_tokens, conditioning=conditioning,
                          do_sample=script.do_sample, reuse_cache=script.reuse_cache,
                          max_length=getattr(config, "max_length", None))


def evaluate_policy(task, task_kwargs: dict | None, policy, seeds: list[int], dataset_returns: list[float],
                    split: str = "eval", sampling_seed: int | None = None, state=None, progress: bool = True,
                    desc: str = "Evaluating") -> dict:
    """Roll out one episode of `task` per seed with any [`Policy`] (a trained model's, a reference's) and
    score it on the anchors of the data whose returns are `dataset_returns`: the one rollout-and-score
    path of `lmrl eval` and `lmrl benchmark`. `split` is the task's environment split ("eval": the
    test starts; a task may have "validation"); `sampling_seed` seeds torch before the rollout, for
    policies that sample. Under `torchrun`/`accelerate launch` (`state`, an accelerate `PartialState`),
    each process rolls out its share of the seeds and the episodes are gathered, so the report is the
    same as from one process.

    Example:
        ```python
        >>> report = evaluate_policy(get_task("maze"), {}, my_policy, list(range(EVAL_SEED, EVAL_SEED + 25)),
        ...                          dataset_returns("runs/data/maze.jsonl"))
        >>> report["normalized"], report["returns"][:3]
        ```
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    task_kwargs = dict(task_kwargs or {})
    task.check_options(task_kwargs)
    state = state or PartialState()
    if sampling_seed is not None:
        torch.manual_seed(sampling_seed)
    with state.split_between_processes(list(seeds)) as mine:
        results = rollout(lambda: task.make_env(split, **task_kwargs), policy, mine, task.max_turns,
                          progress=progress and state.is_main_process, desc=desc)
    if state.num_processes > 1:
        results = sorted(gather_object(results), key=lambda result: result.seed)
    data_return = mean_ci(dataset_returns)[0]
    anchors = task.anchors(data_return, **task_kwargs)
    return {
        "task": task.name,
        "task_kwargs": task_kwargs,
        "split": split,
        "dataset_return": data_return,
        "processes": state.num_processes,
        "first_seed": min(seeds) if seeds else None,
        "seeds": [r.seed for r in results],
        "sampling_seed": sampling_seed,
        **score_episodes(results, anchors).as_dict(),
        "anchors": {"minimum": anchors.minimum, "dataset": anchors.dataset, "best": anchors.best},
        "returns": [r.total_reward for r in results],  # per episode, in seed order (for intervals over runs)
        "successes": [bool(r.success) for r in results],
        "examples": [r.messages for r in results[:3]],
    }


def evaluate_checkpoint(script, config, checkpoint: str | Path, episodes: int, seed: int = EVAL_SEED,
                        progress: bool = True, out_dir: str | Path | None = None, split: str = "eval",
                        options: dict | None = None, sampling_seed: int | None = None) -> dict:
    """Roll out `episodes` evaluation episodes (seeds `seed`, `seed + 1`, ...) with the checkpoint's
    policy ([`build_policy`]) through [`evaluate_policy`]. `options` are added to the recipe's
    `task_kwargs` for this evaluation (e.g. a validation layout). The report goes to
    `out_dir/eval.json` (default: the checkpoint)."""
    from accelerate import PartialState

    if not script.task:
        raise ValueError("The recipe has no 'task' field, so there is no environment to evaluate in.")
    task = get_task(script.task)
    task_kwargs = {**(script.task_kwargs or {}), **(options or {})}
    task.check_options(task_kwargs)  # a misspelt option: an error before the model is loaded
    returns = dataset_returns(script.dataset)
    state = PartialState(cpu=config.use_cpu)  # the config's device choice (see LMRLConfig.use_cpu)
    policy = build_policy(script, config, checkpoint, task, state.device, returns)
    score = evaluate_policy(task, task_kwargs, policy, list(range(seed, seed + episodes)), returns, split=split,
                            sampling_seed=sampling_seed, state=state, progress=progress,
                            desc=f"Evaluating {Path(out_dir or checkpoint).name}")
    report = {"run": Path(out_dir or checkpoint).name, "algorithm": script.algorithm, **score}
    if state.is_main_process:
        Path(out_dir or checkpoint).mkdir(parents=True, exist_ok=True)
        with atomic_output(Path(out_dir or checkpoint, "eval.json")) as partial:
            partial.write_text(json.dumps(report, indent=2))
    return report


def format_score_line(report: dict) -> str:
    """One run's score: the return with its 95% interval, success, the normalized score (its interval
    only where it stays below 100, see [`lmrl.envs.score_episodes`]) and invalid actions."""
    return (f"{report['run']}: return {report['mean_return']:.2f} [{report['ci_low']:.2f}, {report['ci_high']:.2f}], "
            f"success {report['success_rate']:.0%}, normalized {format_normalized(report)}, "
            f"invalid actions {report['invalid_action_rate']:.0%}")


def compare_runs(run_dirs: list[str | Path], plot_path: str | Path | None = None) -> str:
    """A markdown table of several evaluated runs, and a bar chart of their normalized scores."""
    reports = []
    for run in run_dirs:
        path = Path(run) / "eval.json"
        if not path.is_file():
            raise ValueError(f"{path}: missing. Evaluate the run first: lmrl eval RECIPE --checkpoint {run}")
        reports.append(json.loads(path.read_text()))
    lines = [
        "| run | algorithm | mean return [95% CI] | success | normalized [95% CI where it stays below 100] "
        "| episodes |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r['run']} | {r['algorithm']} | {r['mean_return']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] | "
            f"{r['success_rate']:.0%} | {format_normalized(r)} | {r['episodes']} |"
        )
    if plot_path is not None:
        _bar_chart(reports, Path(plot_path))
    return "\n".join(lines)


def _bar_chart(reports: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["run"] for r in reports]
    values = [r["normalized"] for r in reports]
    shown = [not r.get("normalized_note") for r in reports]  # no bar where the interval passes 100
    errors = [[v - r["normalized_low"] if ok else 0.0 for v, r, ok in zip(values, reports, shown)],
              [r["normalized_high"] - v if ok else 0.0 for v, r, ok in zip(values, reports, shown)]]
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.5))
    ax.bar(names, values, yerr=errors, capsize=4, color="tab:blue")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="dataset average (50)")
    ax.axhline(100, color="black", linestyle=":", linewidth=1, label="best possible (100)")
    ax.set_ylabel("normalized score")
    task = reports[0].get("task", "")
    ax.set_title(f"{task}: normalized score, 95% CI")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
