"""CHAI: critic-guided decoding (Verma et al., 2022). Trains an utterance-level double-Q critic
offline over candidate sets {data reply} U {K proposals of the proposal LM} (docs/design.md, sections 2 and 5).

The proposal LM (`proposal_model`, frozen) samples K replies for every state of
the data once, embeds contexts and replies, and the result is cached on disk (safetensors + a JSON
of the proposals), so epochs and later runs with the same data and settings reuse it. With
`feature_cache`, the contexts are read instead from a feature cache of the proposal LM's hidden states
over the data's episodes (`trainers/chai_contexts.py`). With `critic_embeddings=False` nothing is
embedded: the critic reads the reply features alone.

A task's numeric features of a reply (`features(messages, reply) -> list[float]`, the task's
`critic_features`) are given to the trainer; a recipe's `critic_features` names the task they come from
(`lmrl.api.build_trainer` passes them).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import default_data_collator

from ..data import load_episodes, validate_row
from ..generation.propose import embed_contexts, embed_replies, sample_replies
from ..losses.chai import chai_loss
from ..models.chai import CHAICritic, CHAICriticConfig
from .base import LMRLConfig, LMRLTrainer, check_ranges
from .callbacks import TargetUpdateCallback
from .chai_contexts import feature_cache_contexts
from .feature_cache import FeatureCacheArguments

logger = logging.getLogger(__name__)


@dataclass
class CHAIConfig(LMRLConfig, FeatureCacheArguments):
    """Configuration of [`CHAITrainer`].

    Parameters that control the model:
        critic_hidden_size, critic_num_layers: the MLP of each Q function.
        critic_features: the task whose `critic_features` the trainer is given as `features` (e.g.
            "negotiation"): a recipe's build passes them; the critic's config keeps the name.
        critic_embeddings: give the critic the proposal LM's embeddings of the context and replies (False:
            the features alone, e.g. to measure what the embeddings add to them).
    Parameters that control the proposals:
        num_proposals: K replies sampled per state (for training and for decoding).
        proposal_temperature, proposal_max_new_tokens, proposal_seed, proposal_batch_size: sampling.
        proposal_cache_dir: where proposals and embeddings are cached (default: output_dir/proposals).
        feature_cache, feature_cache_batch_tokens: read the context embeddings from a feature cache of the
            proposal LM's hidden states over the data's episodes (`FeatureCacheArguments`; shared with an
            ILQL or MC run over the same model, data and max_length) instead of embedding each context.
    Parameters that control the training:
        gamma: discount per agent turn. cql_weight: CQL over each state's candidates (0 = EMaQ only).
        target_includes_data: the target's max also considers the data's next reply (on by default).
        brac_weight: BRAC-style bonus `brac_weight * log pi(a'|s')` in the target (0 = off).
        alpha, target_update_interval: Polyak averaging of the target critics.

    Note: defaults that differ from `TrainingArguments`: `learning_rate=3e-4`,
    `per_device_train_batch_size=64`, `num_train_epochs=20` (the critic is a small MLP).

    Example:
        ```python
        >>> args = CHAIConfig(output_dir="out", num_proposals=4, cql_weight=1.0)
        ```
    """

    gamma: float = field(default=0.99, metadata={"help": "Discount factor per agent turn."})
    num_proposals: int = field(
        default=8, metadata={"help": "Replies sampled from the proposal LM per state (also the number ranked when a "
                             "recipe evaluates by propose-and-rank without rank_proposals)."}
    )
    proposal_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the proposals."})
    proposal_max_new_tokens: int = field(default=32, metadata={"help": "Longest proposal, in tokens."})
    proposal_seed: int = field(default=0, metadata={"help": "Seed of the proposal sampling."})
    proposal_batch_size: int = field(default=16, metadata={"help": "States sampled per generate() call."})
    proposal_cache_dir: str | None = field(
        default=None, metadata={"help": "Cache of proposals and embeddings (default: output_dir/proposals)."}
    )
    cql_weight: float = field(default=1.0, metadata={"help": "Weight of CQL over the candidate set (CHAI: 1.0)."})
    brac_weight: float = field(
        default=0.0, metadata={"help": "Weight of the proposal log-prob bonus in the target (BRAC-style)."}
    )
    target_includes_data: bool = field(
        default=True,
        metadata={"help": "The target's max runs over the next state's proposals and the data's next reply, so "
                  "a weak proposal LM cannot drag the values below what the data achieved."},
    )
    alpha: float = field(default=0.005, metadata={"help": "Polyak rate of the target critics."})
    target_update_interval: int = field(default=1, metadata={"help": "Update the targets every this many steps."})
    critic_hidden_size: int = field(default=256, metadata={"help": "Width of each Q MLP."})
    critic_num_layers: int = field(default=2, metadata={"help": "Hidden layers of each Q MLP."})
    critic_features: str | None = field(
        default=None, metadata={"help": "Task whose critic_features are added per reply, e.g. negotiation (a "
                                "recipe's trainer is given that task's function)."}
    )
    critic_embeddings: bool = field(
        default=True,
        metadata={"help": "Give the critic the proposal LM's embeddings of the context and each reply. False: "
                  "critic_features alone (no embedding pass), the baseline that shows what embeddings add."},
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate of the critic."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Transitions per device and step."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Passes over the transitions."})

    def __post_init__(self):
        super().__post_init__()
        self.check_feature_cache_arguments()
        if not self.critic_embeddings and self.feature_cache:
            raise ValueError("CHAIConfig.feature_cache holds context embeddings, and critic_embeddings=False uses "
                             "none: drop feature_cache, or keep the embeddings.")
        check_ranges(self, {
            "num_proposals": (lambda v: v >= 1, ">= 1"),
            "alpha": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "gamma": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (the discount per agent turn)"),
        })


def episode_states(rows, unlabeled_reward: float | None = None) -> tuple[list[list[dict]], list[dict]]:
    """Every state the critic is trained on, and one transition per assistant turn.

    A state is the conversation before an agent turn. Transition `{state, reply, reward, done,
    next_state}`: `next_state` is the state before the next agent turn, the whole conversation for
    a truncated episode's last turn (bootstrapped), and -1 after a terminal turn."""
    states, transitions, _ = _episode_states(rows, unlabeled_reward)
    return states, transitions


def _episode_states(rows, unlabeled_reward: float | None) -> tuple[list[list[dict]], list[dict], list[int]]:
    """[`episode_states`], and the row each state comes from."""
    states: list[list[dict]] = []
    transitions: list[dict] = []
    state_rows: list[int] = []
    for index, row in enumerate(rows):
        episode = validate_row(row, index, unlabeled_reward)
        messages = episode.messages()
        actions = [i for i, t in enumerate(episode.turns) if t.is_action]
        first = len(states)
        states += [messages[:i] for i in actions]
        for j, i in enumerate(actions):
            last = j == len(actions) - 1
            next_state = first + j + 1 if not last else -1
            if last and not episode.done:
                states.append(messages)
                next_state = len(states) - 1
            transitions.append({"state": first + j, "reply": episode.turns[i].content,
                                "reward": episode.turns[i].reward, "done": last and episode.done,
                                "next_state": next_state})
        state_rows += [index] * (len(states) - first)
    return states, transitions, state_rows


class CHAITransitions(torch.utils.data.Dataset):
    """Transitions with everything the critic's loss needs, gathered from the proposal cache."""

    def __init__(self, tensors: dict[str, torch.Tensor], proposals: list[list[str]], transitions: list[dict],
                 target_includes_data: bool = True):
        self.tensors = tensors
        self.proposals = proposals
        self.transitions = transitions
        self.target_includes_data = target_includes_data
        # the data's reply in each state (-1 for bootstrap states of truncated rows, where there is none)
        self.state_reply = torch.full((len(proposals),), -1, dtype=torch.long)
        for i, t in enumerate(transitions):
            self.state_reply[t["state"]] = i

    def __len__(self) -> int:
        return len(self.transitions)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        t = self.tensors
        s = int(t["transition_state"][i])
        n = int(t["transition_next"][i])
        m = max(n, 0)
        terminal = float(n < 0)
        data = int(self.state_reply[m])  # the data's reply in the next state, a candidate of the target's max
        has_data = float(self.target_includes_data and data >= 0 and n >= 0)
        data = max(data, 0)
        return {
            "context": t["state_embedding"][s],
            "candidates": torch.cat([t["reply_embedding"][i, None], t["proposal_embedding"][s]]),
            "features": torch.cat([t["reply_features"][i, None], t["proposal_features"][s]]),
            "rewards": t["transition_reward"][i],
            "dones": t["transition_done"][i],
            "next_context": t["state_embedding"][m] * (1 - terminal),
            "next_candidates": torch.cat([t["reply_embedding"][data, None], t["proposal_embedding"][m]]) * (1 - terminal),
            "next_features": torch.cat([t["reply_features"][data, None], t["proposal_features"][m]]) * (1 - terminal),
            "next_logp": torch.cat([torch.zeros(1), t["proposal_logp"][m]]) * (1 - terminal),
            "next_mask": torch.cat([torch.tensor([has_data]), torch.ones(t["proposal_logp"].shape[1])]),
        }


def _model_fingerprint(model) -> str:
    digest = hashlib.sha256(str(getattr(model.config, "_name_or_path", "")).encode())
    digest.update(model.config.to_json_string().encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            digest.update(f"{name}:{float(param.double().sum()):.10e}".encode())
    return digest.hexdigest()


def build_chai_dataset(rows, proposal_model, tokenizer, args: CHAIConfig, features=None,
                       progress: bool = True, split: str = "train") -> CHAITransitions:
    """Sample proposals, embed contexts and replies, compute features; cached by content. With
    `args.feature_cache`, the contexts come from the feature cache of the rows' episodes in
    `FOLDER/split` (built when missing: [`feature_cache_contexts`]) and are not stored with the proposals."""
    states, transitions, state_rows = _episode_states(rows, args.unlabeled_reward)
    key_source = json.dumps({
        "states": states, "transitions": transitions, "model": _model_fingerprint(proposal_model),
        "k": args.num_proposals, "temperature": args.proposal_temperature, "seed": args.proposal_seed,
        "max_new_tokens": args.proposal_max_new_tokens, "max_length": args.max_length,
        "features": args.critic_features, "features_code": _source(features), "embeddings": args.critic_embeddings,
    }, sort_keys=True)
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    cache = Path(args.proposal_cache_dir or Path(args.output_dir, "proposals"))
    tensor_path, text_path = cache / f"{key}.safetensors", cache / f"{key}.json"
    progress = progress and not args.disable_tqdm
    contexts = None
    if args.feature_cache:  # first: a cache of another model or data is refused before any sampling
        contexts = feature_cache_contexts(rows, states, state_rows, Path(args.feature_cache) / split, proposal_model,
                                          tokenizer, args, progress)
    if tensor_path.is_file() and text_path.is_file():
        logger.info("Reusing cached proposals %s", tensor_path)
        tensors, proposals = load_file(tensor_path), json.loads(text_path.read_text())["proposals"]
    else:
        tensors, proposals = _propose_and_embed(states, transitions, proposal_model, tokenizer, args, features,
                                                progress)
        _save_proposals(tensors, proposals, tensor_path, text_path)
    if contexts is not None:
        tensors["state_embedding"] = contexts
    elif "state_embedding" not in tensors:  # cached by a run that read its contexts from a feature cache
        tensors["state_embedding"] = embed_contexts(proposal_model, tokenizer, states, args.max_length)
        _save_proposals(tensors, proposals, tensor_path, text_path)
    return CHAITransitions(tensors, proposals, transitions, args.target_includes_data)


def _propose_and_embed(states, transitions, proposal_model, tokenizer, args: CHAIConfig, features,
                       progress: bool) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """K proposals per state, their log-probabilities, the reply features and the embeddings of proposals,
    replies and (without a feature cache) contexts; without `critic_embeddings`, empty ones (width 0)."""
    torch.manual_seed(args.proposal_seed)
    proposals, logp = sample_replies(proposal_model, tokenizer, states, args.num_proposals,
                                     args.proposal_temperature, args.proposal_max_new_tokens,
                                     args.proposal_batch_size, args.max_length, progress=progress)
    k = args.num_proposals
    flat = [p for ps in proposals for p in ps]
    replies = [t["reply"] for t in transitions]
    if args.critic_embeddings:  # the same embedding functions as CriticScorer uses at decoding
        embedded = {"proposal_embedding": embed_replies(proposal_model, tokenizer, flat).view(len(states), k, -1),
                    "reply_embedding": embed_replies(proposal_model, tokenizer, replies)}
        if not args.feature_cache:
            embedded["state_embedding"] = embed_contexts(proposal_model, tokenizer, states, args.max_length)
    else:
        embedded = {"proposal_embedding": torch.zeros(len(states), k, 0), "reply_embedding": torch.zeros(len(replies), 0),
                    "state_embedding": torch.zeros(len(states), 0)}
    tensors = {
        **embedded,
        "proposal_logp": logp.float(),
        "transition_state": torch.tensor([t["state"] for t in transitions]),
        "transition_next": torch.tensor([t["next_state"] for t in transitions]),
        "transition_reward": torch.tensor([float(t["reward"]) for t in transitions]),
        "transition_done": torch.tensor([float(t["done"]) for t in transitions]),
    }
    if features is not None:
        tensors["proposal_features"] = torch.tensor(
            [[features(s, p) for p in ps] for s, ps in zip(states, proposals)], dtype=torch.float32)
        tensors["reply_features"] = torch.tensor(
            [features(states[t["state"]], t["reply"]) for t in transitions], dtype=torch.float32)
    else:
        tensors["proposal_features"] = torch.zeros(len(states), k, 0)
        tensors["reply_features"] = torch.zeros(len(transitions), 0)
    return tensors, proposals


def _save_proposals(tensors: dict[str, torch.Tensor], proposals: list[list[str]], tensor_path: Path,
                    text_path: Path) -> None:
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tensor_path.with_suffix(".tmp")
    save_file({name: value.contiguous() for name, value in tensors.items()}, str(tmp))
    text_path.write_text(json.dumps({"proposals": proposals, "states": len(proposals)}))
    tmp.replace(tensor_path)  # written last and atomically: a half-written cache is never read


def _qualified_name(function) -> str:
    return f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"


def _source(features) -> str | None:
    """The feature function's code, so that the cache is not reused after it changes."""
    if features is None:
        return None
    try:
        return inspect.getsource(features)
    except (OSError, TypeError):  # defined where its source cannot be read (a REPL, a builtin)
        return _qualified_name(features)


def build_candidate_sets(train_dataset, eval_dataset, proposal_model, tokenizer, args: CHAIConfig,
                         features: Callable[[list[dict], str], list[float]] | None = None
                         ) -> tuple[CHAITransitions | None, CHAITransitions | None]:
    """The training and evaluation transitions with their candidate sets ([`build_chai_dataset`] on
    each dataset given, with the reply `features` when given; `None` for a dataset that is not). Under
    several processes the first samples and caches the proposals and the others read its cache."""
    sets = []
    for split, dataset in (("train", train_dataset), ("eval", eval_dataset)):
        if dataset is None:
            sets.append(None)
            continue
        with args.main_process_first(desc="CHAI proposals"):
            sets.append(build_chai_dataset(load_episodes(dataset), proposal_model, tokenizer, args, features,
                                           split=split))
    return sets[0], sets[1]


def new_critic(candidates: CHAITransitions, args: CHAIConfig, proposal_model, features=None) -> CHAICritic:
    """A freshly initialized critic sized for the candidate set's embeddings and features, naming the
    proposal LM it was trained over and (for information) its `features`."""
    if candidates is None:
        raise ValueError("CHAITrainer needs train_dataset= to size a new critic (or pass a trained one as critic=).")
    tensors = candidates.tensors
    return CHAICritic(CHAICriticConfig(
        embedding_size=tensors["state_embedding"].shape[-1],
        num_features=tensors["reply_features"].shape[-1],
        hidden_size=args.critic_hidden_size,
        num_layers=args.critic_num_layers,
        features=(args.critic_features or _qualified_name(features)) if features is not None else None,
        proposal_model=str(getattr(proposal_model.config, "_name_or_path", "") or "") or None,
    ))


class CHAITrainer(LMRLTrainer):
    """Trains a [`CHAICritic`] offline for propose-and-rank decoding over the frozen `proposal_model`
    (id, path or object). `critic=` continues training a saved critic; without it a new one is sized
    for the candidate set. `features(messages, reply) -> list[float]` adds a task's numbers per reply
    (the task's `critic_features`); decoding with the critic needs the same function. The candidate
    sets are built once, by [`build_candidate_sets`], before training; the critic is the module the
    optimizer trains.

    Example:
        ```python
        >>> from lmrl.tasks import get_task
        >>> features = get_task("negotiation").critic_features
        >>> args = CHAIConfig(output_dir="out", critic_features="negotiation")
        >>> trainer = CHAITrainer(proposal_model="runs/bc", args=args, train_dataset=rows, features=features)
        >>> trainer.train()
        >>> trainer.save_model()  # CHAICritic.from_pretrained("out"); ProposeAndRank(lm, tok, critic, features=features)
        ```
    """

    def __init__(self, proposal_model=None, args: CHAIConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, critic: CHAICritic | None = None, *,
                 features: Callable[[list[dict], str], list[float]] | None = None, peft_config=None, **kwargs):
        if proposal_model is None:
            raise ValueError("CHAITrainer needs the frozen proposal LM: pass proposal_model= (an id, path or model).")
        if args is None:
            raise ValueError("CHAITrainer needs args=CHAIConfig(output_dir=...).")
        if args.critic_features and features is None:
            raise ValueError(
                f"CHAIConfig.critic_features={args.critic_features!r} names a task, and the trainer does not look "
                f"tasks up by name: pass its function, e.g. CHAITrainer(..., features=lmrl.tasks.get_task("
                f"{args.critic_features!r}).critic_features), or train from a recipe (lmrl.api.train).")
        if not args.critic_embeddings and features is None:
            raise ValueError("CHAIConfig.critic_embeddings=False leaves the critic only the reply features, and none "
                             "are given: pass features= (in a recipe, critic_features), or keep the embeddings.")
        if peft_config is not None:
            raise ValueError("CHAI trains a small critic over the frozen proposal LM's embeddings; the LM is not "
                             "trained, so there is nothing for peft_config to adapt. Drop peft_config (or use_peft).")
        proposal_model, processing_class = self._language_model(proposal_model, args, processing_class)
        self.proposal_model = proposal_model.to(args.device).eval().requires_grad_(False)
        train_dataset, eval_dataset = build_candidate_sets(train_dataset, eval_dataset, self.proposal_model,
                                                           processing_class, args, features)
        if critic is None:
            critic = new_critic(train_dataset, args, self.proposal_model, features)
        elif train_dataset is not None and train_dataset.tensors["reply_features"].shape[-1] != critic.config.num_features:
            raise ValueError(f"The critic given reads {critic.config.num_features} features per reply "
                             f"({critic.config.features or 'no feature function'}), and the features given make "
                             f"{train_dataset.tensors['reply_features'].shape[-1]}: pass the function it was trained "
                             "with as features= (None for a critic without features).")
        kwargs.setdefault("data_collator", default_data_collator)
        self._setup_trainer(critic, args, train_dataset, eval_dataset, processing_class, **kwargs)
        self.add_callback(TargetUpdateCallback(args.alpha, args.target_update_interval, trainer=self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        features = inputs["features"] if inputs["features"].shape[-1] else None
        next_features = inputs["next_features"] if inputs["next_features"].shape[-1] else None
        q = model(inputs["context"], inputs["candidates"], features)  # [n, B, 1 + K]
        with torch.no_grad():
            next_q = model(inputs["next_context"], inputs["next_candidates"], next_features, target=True)
        args = self.args
        loss, stats = chai_loss(q, next_q, inputs["rewards"], inputs["dones"], inputs["next_logp"],
                                inputs["next_mask"], gamma=args.gamma, cql_weight=args.cql_weight,
                                brac_weight=args.brac_weight)
        self.record(stats)
        return (loss, q) if return_outputs else loss
