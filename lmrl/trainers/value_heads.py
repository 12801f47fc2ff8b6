"""What the trainers that learn Q and V heads share (ILQL, Monte-Carlo regression): their settings and
how they get an [`AutoModelForCausalLMWithILQLHeads`] to train.

Who owns which setting: the head and decoding settings (`head_type`, `beta`, `advantage_clip`,
`guidance_top_k`, `guidance_top_p`) belong to the model's config, which is saved with it and used by
`generate()`. The trainer config's fields for them default to `None`, which keeps the model's; a
value set there overrides the model's (and says so in the log). A model given as an id or path gets
them at loading, as TRL passes `model_init_kwargs`. `head_type` shapes the weights: asking for
another head type than a given model has is an error, never a silent rebuild.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import PreTrainedModel

from ..models import AutoModelForCausalLMWithILQLHeads
from ..models.adapters import load_heads, weights_fingerprint
from ..models.configuration import (
    DECODING_FIELDS,
    HEAD_TYPES,
    STRUCTURAL_FIELDS,
    ILQLHeadsConfig,
    apply_head_settings,
    check_head_settings,
)
from .base import LMRLConfig, LMRLTrainer, check_ranges
from .feature_cache import FeatureCacheArguments, FrozenTrunkTrainerMixin

logger = logging.getLogger(__name__)

HEAD_SETTINGS = ("head_type", "head_hidden_size", "behavior_adapter", *DECODING_FIELDS)  # the model-owned settings a trainer config can override


@dataclass
class ValueLearningConfig(LMRLConfig, FeatureCacheArguments):
    """Settings shared by the trainers that learn Q and V heads (ILQL, Monte-Carlo regression).

    Parameters that control the model (owned by the model's config; `None` keeps the model's, a value
    overrides it and is logged; for a fresh model, `None` means `ILQLHeadsConfig`'s default):
        head_type: `"tied"` Q heads (a few % of the base parameters) or `"untied"` vocabulary heads.
            Fresh heads only: a model that already has heads of the other type is refused.
        head_hidden_size: width of the Q and V heads' hidden layer, for fresh heads (`None`: the model's;
            twice the hidden size for fresh heads, the paper's shape; a quarter of it has about 7x fewer
            parameters, see docs/benchmarks.md). Like head_type, a model with heads of another width is refused.
        beta, advantage_clip, guidance_top_k, guidance_top_p: decoding settings saved with the model
            (their defaults and ranges are `ILQLHeadsConfig`'s).
    Parameters that control the training:
        gamma: discount per action token, in [0, 1]. reward_scale: rewards are multiplied by it (> 0) for
            value learning.
        cql_weight: weight of the conservative (CQL) term; its pull does not shrink with the rewards,
            so lower it together with reward_scale.
        bc_weight: weight of the LM cross-entropy that keeps the model's own logits a good
            behaviour policy pi_beta, which guided decoding reweights.
        pessimistic_init: fresh Q and V heads start at the lowest episode return in the data.
        feature_cache, feature_cache_batch_tokens: train on a frozen trunk's cached hidden states
            (`FeatureCacheArguments`); the checkpoint holds the heads and names the base model.
        behavior_adapter: with a frozen trunk, a behaviour head trained by the BC term makes pi_beta the
            data's policy rather than the base model's (fresh heads only).

    Example:
        ```python
        >>> args = ValueLearningConfig(output_dir="out", beta=8.0)  # overrides the model's beta
        >>> args.head_kwargs()
        {'beta': 8.0}
        ```
    """

    gamma: float = field(default=0.99, metadata={"help": "Discount factor per action token, in [0, 1]."})
    reward_scale: float = field(
        default=1.0,
        metadata={"help": "Multiply rewards by this before learning values. Keeps the TD loss on the scale of "
                  "the LM loss they share a trunk with (e.g. 0.1 for -1-per-step tasks); beta then acts on "
                  "the scaled values."},
    )
    cql_weight: float = field(default=0.1, metadata={"help": "Weight of the CQL term (ILQL paper: 0.1)."})
    bc_weight: float = field(
        default=1.0, metadata={"help": "Weight of the LM cross-entropy on actions (learns pi_beta)."}
    )
    head_type: str | None = field(
        default=None,
        metadata={"help": "'tied' or 'untied' Q heads, for fresh heads. None: the model's ('tied' when fresh).",
                  "choices": list(HEAD_TYPES)},
    )
    head_hidden_size: int | None = field(
        default=None,
        metadata={"help": "Width of the Q and V heads' hidden layer, for fresh heads. None: the model's (twice "
                  "the hidden size when fresh, the paper's shape)."},
    )
    beta: float | None = field(
        default=None,
        metadata={"help": "Guidance strength at decoding (>= 0; 0 decodes as the base LM), saved with the model. None: "
                  f"the model's ({ILQLHeadsConfig.beta} when fresh)."},
    )
    advantage_clip: float | None = field(
        default=None,
        metadata={"help": "Clip of the advantage in guided decoding (> 0). None: the model's "
                  f"({ILQLHeadsConfig.advantage_clip} when fresh)."},
    )
    guidance_top_k: int | None = field(
        default=None,
        metadata={"help": "Guide only the base policy's top-k tokens (0 = full vocabulary). None: the model's "
                  f"({ILQLHeadsConfig.guidance_top_k} when fresh)."},
    )
    pessimistic_init: bool = field(
        default=True,
        metadata={"help": "Start fresh Q and V heads at the lowest episode return in the data (if below 0), so "
                  "tokens the data never takes are not valued above the ones it does."},
    )
    behavior_adapter: bool | None = field(
        default=None,
        metadata={"help": "Add a behaviour head (logits + W_E g(h) + b) trained by the BC term, so that pi_beta is the "
                  "data's policy when the trunk is frozen. None: the model's (False when fresh)."},
    )
    guidance_top_p: float | None = field(
        default=None,
        metadata={"help": "Nucleus filter of the base policy inside the top-k, in (0, 1] (1.0 keeps all). None: the "
                  f"model's ({ILQLHeadsConfig.guidance_top_p} when fresh)."},
    )

    def __post_init__(self):
        super().__post_init__()
        check_head_settings(self.head_kwargs(), where=type(self).__name__)
        self.check_feature_cache_arguments()
        check_ranges(self, {
            "gamma": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (the discount per action token)"),
            "reward_scale": (lambda v: 0.0 < v < float("inf"), "a finite number > 0"),
            "cql_weight": (lambda v: 0.0 <= v < float("inf"), "a finite number >= 0 (0 turns CQL off)"),
            "bc_weight": (lambda v: 0.0 <= v < float("inf"), "a finite number >= 0 (0 turns BC off)"),
        })
        if self.feature_cache and self.bc_weight > 0 and not self.behavior_adapter:
            raise ValueError(
                f"{type(self).__name__}: feature_cache freezes the trunk, so the BC term (bc_weight {self.bc_weight}) "
                "would train nothing. Set bc_weight: 0 (pi_beta is the base model) or behavior_adapter: true "
                "(a behaviour head learns the data's policy).")
        if self.behavior_adapter and not self.feature_cache and self.bc_weight > 0:
            logger.info("behavior_adapter with a trained trunk: the BC term trains the trunk and the behaviour head.")

    def head_kwargs(self) -> dict:
        """The head and decoding settings this config sets (those left at `None` are not included)."""
        return {key: getattr(self, key) for key in HEAD_SETTINGS if getattr(self, key) is not None}


class ValueHeadsTrainer(FrozenTrunkTrainerMixin, LMRLTrainer):
    """Base of [`ILQLTrainer`] and [`MCTrainer`]: trains an [`AutoModelForCausalLMWithILQLHeads`].

    `model` may be that model (its heads and settings are kept, except the settings `args` sets), a
    plain causal LM (fresh heads are added, built with the settings `args` sets) or an id/path of
    either. Subclasses write `compute_loss`.
    """

    uses_target_heads = True  # whether the algorithm learns by TD against Polyak target Q heads

    def _load_model(self, model_id: str, args: ValueLearningConfig) -> PreTrainedModel:
        structural = {k: v for k, v in args.head_kwargs().items() if k in STRUCTURAL_FIELDS}
        self._model_id = model_id
        return AutoModelForCausalLMWithILQLHeads.from_pretrained(model_id, **structural, **args.load_kwargs())

    def _prepare_model(self, model, args: ValueLearningConfig):
        model = self._with_heads(model, args)
        if args.feature_cache:
            self._freeze_trunk(model)
            self._frozen_trunk = model
        return model

    def _freeze_trunk(self, model) -> None:
        if model.config.base_model:  # already heads-only (e.g. resumed): its base is named and checked
            model.pretrained_model.requires_grad_(False)
            return
        trunk = model.pretrained_model
        model.freeze_trunk(self._trunk_name(trunk), weights_fingerprint(trunk))

    def _with_heads(self, model, args: ValueLearningConfig):
        where = type(args).__name__
        if not isinstance(model, AutoModelForCausalLMWithILQLHeads):  # a plain causal LM: fresh heads
            return AutoModelForCausalLMWithILQLHeads.from_causal_lm(
                model, target_heads=self.uses_target_heads, **args.head_kwargs())
        apply_head_settings(model.config, args.head_kwargs(), where)  # keep its heads and its settings
        if self.uses_target_heads and model.target_q_heads is None:
            logger.info("%s: the model has no target heads (trained by Monte-Carlo regression?); they start as "
                        "copies of its Q heads.", type(self).__name__)
            model.add_target_heads()
        elif not self.uses_target_heads and model.target_q_heads is not None:
            logger.info("%s: target heads are not used by this algorithm; they are dropped from the model.",
                        type(self).__name__)
            model.remove_target_heads()
        return model

    def _apply_peft(self, model, peft_config):
        if model.config.base_model:
            raise ValueError("feature_cache freezes the trunk and trains the heads on its cached hidden states, so a "
                             "PEFT adapter on the trunk would never train: leave peft_config (use_peft) out, or "
                             "train the adapter without feature_cache.")
        return model.add_peft_adapter(peft_config)  # the trunk only: the heads stay plain modules

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        if model.config.base_model:  # heads-only
            return load_heads(model, resume_from_checkpoint)
        if not model.has_peft_adapter:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model.load_adapter_checkpoint(resume_from_checkpoint)

    def _load_best_model(self):
        """`load_best_model_at_end` for the checkpoints transformers does not read: heads-only (a frozen
        trunk) and LoRA adapter plus heads, loaded as a resume loads them."""
        model = self.model
        if not (model.config.base_model or model.has_peft_adapter):
            return super()._load_best_model()
        logger.info("Loading the best model from %s (score: %s).", self.state.best_model_checkpoint,
                    self.state.best_metric)
        self._load_from_checkpoint(self.state.best_model_checkpoint, model)

    def _prepare_episodes(self, dataset, tokenizer, args, train: bool):
        dataset = super()._prepare_episodes(dataset, tokenizer, args, train)
        if dataset is None or not args.feature_cache:
            return dataset
        return self._cache_episodes(dataset, tokenizer, args, train)

    def _initialize_from_data(self, model, train_dataset, args) -> None:
        if args.pessimistic_init and getattr(model, "heads_are_fresh", False) and train_dataset is not None:
            model.start_heads_at(min(0.0, min(train_dataset["returns"])) * args.reward_scale)

    def model_inputs(self, inputs: dict) -> dict:
        return {
            **super().model_inputs(inputs),
            "action_mask": inputs["action_mask"],
            "compute_q_logits": self.args.cql_weight > 0,
            "full_logits": self.args.loss_chunk_size == 0,
        }
