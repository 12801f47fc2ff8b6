"""CALM: context-aware language modelling for goal-directed dialogue (Snell et al., 2022);
see docs/design.md, sections 2 and 5.

The LM is trained on the agent's turns conditioned on the rendered task context (as BC), plus:
- an auxiliary outcome head (`lmrl.models.calm.OutcomeHead`) that attends over the context tokens
  from the point where the agent makes its final move, and predicts the dialogue's outcome;
  `L = L_LM + outcome_weight * CrossEntropy(head, outcome)`;
- task relabelling: a failed dialogue's context is rewritten so that what the agent did becomes
  correct (the task's `relabel`), and the LM trains on the successful and the relabelled dialogues
  (and on the failed originals too with `keep_failed`).
The task's two functions, `outcome_label(row)` and `relabel(row)`, are given to the trainer (a recipe's
`outcome_task` names the task they come from: `lmrl.api.build_trainer` passes them).
The saved model is a plain causal LM (`AutoModelForCausalLM.from_pretrained`); the head is saved
beside it (`outcome_head.safetensors`).

With `feature_cache` (docs/guides/feature-cache.md) the trunk, its LM head included, is frozen and never
runs: CALM trains on its cached hidden states h. ILQL's behaviour head stands in for the trainable trunk:
the LM loss trains pi_beta = logits + W_E g(h) + b (g: an MLP, starting at zero), and the outcome head
reads the adapted features h + g(h), so its loss shapes the same adapter that decodes, as CALM's
auxiliary loss shapes the shared trunk. The checkpoint is a heads-only
[`AutoModelForCausalLMWithILQLHeads`] at `beta` 0 (it decodes with that pi_beta), naming its base model
and the base's weights fingerprint, with the outcome head beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..data import load_episodes, prepare_dataset
from ..data.tokenization import episode_segments, tokenize_episode
from ..losses.ilql import bc_loss
from ..models import AutoModelForCausalLMWithILQLHeads
from ..models.adapters import is_peft_model, weights_fingerprint
from ..models.calm import BehaviorHeadWithOutcomeHead, CALMOutput, LMWithOutcomeHead, OutcomeHead
from ..models.policy_logits import linear_output_layer
from .base import LMRLConfig, LMRLTrainer, check_ranges
from .checkpointing import finish_saved_folder
from .feature_cache import FeatureCacheArguments, FrozenTrunkTrainerMixin

logger = logging.getLogger(__name__)


FEATURE_CACHE_WITH_PEFT = (
    "feature_cache freezes the trunk and trains the heads on its cached hidden states, so a PEFT adapter on the "
    "trunk would never train: leave peft_config (use_peft) out, or train the adapter without feature_cache."
)


@dataclass
class CALMConfig(LMRLConfig, FeatureCacheArguments):
    """Configuration of [`CALMTrainer`].

    Parameters that control the model:
        feature_cache, feature_cache_batch_tokens: train on a frozen trunk's cached hidden states
            (`FeatureCacheArguments`): a behaviour head learns the agent's turns, the outcome head reads
            its adapted features, and the checkpoint holds the heads only, naming the base model.
    Parameters that control the data preprocessing:
        outcome_task: the task whose `outcome_label` and `relabel` the trainer is given (e.g. "flight_booking"):
            a recipe's build passes them; recorded with the training arguments.
        relabel: rewrite failed dialogues' contexts so they succeed (with the `relabel` given), and train on them.
        keep_failed: also train the LM on the failed dialogues as logged.
    Parameters that control the training:
        outcome_weight: weight of the outcome head's cross-entropy.

    Example:
        ```python
        >>> args = CALMConfig(output_dir="out", outcome_task="flight_booking", outcome_weight=0.5)
        ```
    """

    outcome_task: str | None = field(
        default=None, metadata={"help": "Task whose outcome labels and relabelling train the outcome head, e.g. "
                                "flight_booking (a recipe's trainer is given that task's functions)."}
    )
    outcome_weight: float = field(default=0.5, metadata={"help": "Weight of the auxiliary outcome loss."})
    relabel: bool = field(default=True, metadata={"help": "Rewrite failed dialogues' contexts to succeed."})
    keep_failed: bool = field(default=False, metadata={"help": "Also imitate the failed dialogues as logged."})

    def __post_init__(self):
        super().__post_init__()
        self.check_feature_cache_arguments()
        check_ranges(self, {
            "outcome_weight": (lambda v: 0.0 <= v < float("inf"), "a finite number >= 0 (0 turns the outcome loss off)"),
        })


def _succeeded(row: dict) -> bool:
    rewards = [m.get("reward") or 0.0 for m in row.get("messages") or [] if m.get("role") == "assistant"]
    return bool(rewards) and rewards[-1] + (row.get("reward") or 0.0) >= 1.0


def relabel_rows(rows: list[dict], relabel, keep_failed: bool = False) -> list[dict]:
    """Successful rows, plus each failed row relabelled (and as logged with `keep_failed`)."""
    out, relabelled, impossible = [], 0, 0
    for row in rows:
        if _succeeded(row):
            out.append(row)
            continue
        new = relabel(row)
        if new is None:
            impossible += 1
        else:
            out.append(new)
            relabelled += 1
        if keep_failed:
            out.append(row)
    logger.warning("CALM relabelling: %d of %d dialogues failed; %d relabelled to succeed, %d could not be "
                   "(their action contradicts the user's goal)%s.", relabelled + impossible, len(rows), relabelled,
                   impossible, "; failed originals kept" if keep_failed else " and were left out")
    return out


class CALMTrainer(FrozenTrunkTrainerMixin, LMRLTrainer):
    """LM loss on agent turns conditioned on the task context, an auxiliary outcome head over the
    context (with `outcome_label`), and task relabelling (with `relabel`).

    `outcome_label(row) -> int` is the class of a dialogue's outcome; `relabel(row) -> row | None`
    rewrites a failed dialogue's context so that it succeeds (None: it cannot). A task gives both
    (`Task.outcome_label`, `Task.relabel`); without them CALM trains the LM alone.

    With `args.feature_cache`, `model` must be a causal LM loaded from a path or hub id (the heads-only
    checkpoint names it); the cache of the tokenized, relabelled rows is built on the first run and reused
    after, and only the behaviour head and the outcome head train ([`BehaviorHeadWithOutcomeHead`]).

    Example:
        ```python
        >>> from lmrl.tasks import get_task
        >>> task = get_task("flight_booking")
        >>> args = CALMConfig(output_dir="out", outcome_task="flight_booking")
        >>> trainer = CALMTrainer(model="gpt2", args=args, train_dataset=rows,
        ...                       outcome_label=task.outcome_label, relabel=task.relabel)
        >>> trainer.train()
        >>> trainer.save_model()  # AutoModelForCausalLM.from_pretrained("out")
        ```
    """

    padded_columns = {"context_mask": 0}  # which tokens are the task context
    stacked_columns = ("outcome", "outcome_query")  # the outcome class, and where it is predicted from

    def __init__(self, model, args: CALMConfig, train_dataset=None, eval_dataset=None, processing_class=None,
                 *, outcome_label: Callable[[dict], int] | None = None,
                 relabel: Callable[[dict], dict | None] | None = None, **kwargs):
        if args.outcome_task and outcome_label is None and relabel is None:
            raise ValueError(
                f"CALMConfig.outcome_task={args.outcome_task!r} names a task, and the trainer does not look tasks "
                f"up by name: pass its functions, e.g. task = lmrl.tasks.get_task({args.outcome_task!r}); CALMTrainer(..., "
                "outcome_label=task.outcome_label, relabel=task.relabel), or train from a recipe (lmrl.api.train).")
        if args.feature_cache and kwargs.get("peft_config") is not None:
            raise ValueError(FEATURE_CACHE_WITH_PEFT)
        self.outcome_label = outcome_label
        self.relabel = relabel
        super().__init__(model, args, train_dataset, eval_dataset, processing_class, **kwargs)

    def _prepare_episodes(self, dataset, tokenizer, args: CALMConfig, train: bool):
        if dataset is None:
            return None
        outcome_label = self.outcome_label
        rows = load_episodes(dataset).to_list()
        if train and args.relabel and self.relabel is not None:
            rows = relabel_rows(rows, self.relabel, args.keep_failed)

        def columns(row, episode, tokenized):
            n = len(tokenized["input_ids"])
            context = 0  # tokens up to the end of the system message (start tokens included)
            if episode.turns[0].role == "system":
                context = sum(len(ids) for ids, _, _ in episode_segments(tokenizer, episode.turns[:1]))
            cut = len(tokenize_episode(tokenizer, episode).input_ids) - n if tokenized["truncated"] else 0
            context = max(0, context - cut)
            actions = tokenized["action_mask"]
            last_start = max(i for i in range(n) if actions[i] and (i == 0 or not actions[i - 1]))
            return {"context_mask": [1] * context + [0] * (n - context),
                    "outcome": outcome_label(row) if outcome_label is not None else -100,
                    "outcome_query": max(0, last_start - 1)}

        dataset = prepare_dataset(rows, tokenizer, args.max_length, args.dataset_num_proc, extra_columns=columns,
                                  truncation_mode=args.truncation_mode, unlabeled_reward=args.unlabeled_reward)
        cut = sum(dataset["truncated"])
        if cut:
            logger.warning("CALM: %d of %d dialogues are longer than max_length=%s, so part of their context "
                           "(e.g. the flight table) was cut. Raise max_length.", cut, len(dataset), args.max_length)
        if args.feature_cache:
            dataset = self._cache_episodes(dataset, tokenizer, args, train)
        return dataset

    # ------------------------------------------------------------ a frozen trunk's feature cache
    def _load_model(self, model_id: str, args: CALMConfig):
        self._model_id = model_id  # what a heads-only checkpoint names as its base
        return super()._load_model(model_id, args)

    def _prepare_model(self, model, args: CALMConfig):
        if not args.feature_cache:
            return model
        if is_peft_model(model):
            raise ValueError(FEATURE_CACHE_WITH_PEFT)
        if isinstance(model, AutoModelForCausalLMWithILQLHeads):
            raise ValueError(f"feature_cache: CALM trains a fresh behaviour head on a plain causal LM, and the model "
                             f"given is a {type(model).__name__}. Pass the base causal LM (a heads-only checkpoint's "
                             "config names it as base_model), and resume_from_checkpoint to continue a run.")
        name = self._trunk_name(model)
        if linear_output_layer(model) is None:
            raise ValueError(f"feature_cache: {type(model).__name__}'s logits are not a plain linear map of its last "
                             "hidden state (a soft-capped or scaled output), so they cannot be computed from cached "
                             "hidden states: train this model without feature_cache.")
        # the heads-only carrier `lmrl eval` decodes: at beta 0 its forward is pi_beta = base + behaviour head;
        # its Q and V heads (one Q head, no targets: the fewest it has) are not CALM's and stay frozen
        carrier = AutoModelForCausalLMWithILQLHeads.from_causal_lm(
            model, behavior_adapter=True, beta=0.0, num_q_heads=1, target_heads=False)
        carrier.freeze_trunk(name, weights_fingerprint(model))
        carrier.q_heads.requires_grad_(False)
        carrier.v_head.requires_grad_(False)
        self._frozen_trunk = carrier
        return carrier

    def _model_to_train(self, model, train_dataset, args: CALMConfig):
        head = None
        if self.outcome_label is not None and train_dataset is not None:
            num_outcomes = max(train_dataset["outcome"]) + 1  # classes the data shows
            hidden = model.config.get_text_config().hidden_size
            head = OutcomeHead(hidden, num_outcomes).to(model.device)
        if args.feature_cache:
            return BehaviorHeadWithOutcomeHead(model, head)
        return model if head is None else LMWithOutcomeHead(model, head)

    def _save(self, output_dir: str | None = None, state_dict=None):
        """The LM as a plain causal LM (on a feature cache: the heads-only checkpoint naming its base), the
        outcome head beside it (`LMWithOutcomeHead.save_pretrained`), the tokenizer and the training arguments."""
        model = self.accelerator.unwrap_model(self.model)
        if not isinstance(model, LMWithOutcomeHead):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=self.args.should_save)
        if not self.args.should_save:
            return
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        finish_saved_folder(output_dir, self.args, self.run_fingerprint())

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        if not isinstance(model, LMWithOutcomeHead):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model.load_checkpoint(resume_from_checkpoint)

    def _load_best_model(self):
        if not isinstance(self.model, LMWithOutcomeHead):
            return super()._load_best_model()
        logger.info("Loading the best model from %s (score: %s).", self.state.best_model_checkpoint,
                    self.state.best_metric)
        self.model.load_checkpoint(self.state.best_model_checkpoint)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("outcome")
        steps = inputs["action_mask"][:, 1:].bool()
        if isinstance(self.accelerator.unwrap_model(model), LMWithOutcomeHead):
            outputs = model(**self.model_inputs(inputs), steps=steps, context_mask=inputs["context_mask"],
                            outcome_query=inputs["outcome_query"])
            logits = outputs.policy_logits
        else:
            outputs, _, logits = self.policy_logits(model, steps, **self.model_inputs(inputs))
        loss_lm = bc_loss(logits, inputs["input_ids"][:, 1:][steps], chunk_size=self.args.loss_chunk_size,
                          memory_budget=self.args.loss_memory_budget)
        loss = loss_lm
        stats = {"loss/lm": loss_lm.detach()}
        if isinstance(outputs, CALMOutput) and outputs.outcome_logits is not None:
            logits, valid = outputs.outcome_logits, labels >= 0
            # rows without a label contribute 0 (not a skipped term), so every process runs the same graph
            loss_outcome = F.cross_entropy(logits[valid], labels[valid]) if valid.any() else logits.sum() * 0.0
            loss = loss + self.args.outcome_weight * loss_outcome
            with torch.no_grad():
                stats["loss/outcome"] = loss_outcome.detach()
                stats["outcome/accuracy"] = (logits[valid].argmax(-1) == labels[valid]).float().mean() \
                    if valid.any() else logits.new_zeros(())
        self.record(stats)
        return (loss, outputs) if return_outputs else loss
