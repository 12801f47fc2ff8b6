"""ILQL: implicit language Q-learning (Snell et al., 2022), token level (DESIGN §3)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from transformers import PreTrainedModel, TrainerCallback
from transformers.modeling_utils import unwrap_model

from ..losses.ilql import ilql_diagnostics, ilql_loss
from ..models import AutoModelForCausalLMWithILQLHeads
from ..models.configuration import DECODING_FIELDS
from .base import LMRLConfig, LMRLTrainer


@dataclass
class ValueLearningConfig(LMRLConfig):
    """Settings shared by the trainers that learn Q and V heads (ILQL, Monte-Carlo regression).

    Parameters that control the model:
        head_type: `"tied"` Q heads (a few % of the base parameters) or `"untied"` vocabulary heads.
        beta, advantage_clip, guidance_top_k, guidance_top_p: decoding settings saved with the model.
    Parameters that control the training:
        gamma: discount per action token. reward_scale: rewards are multiplied by it for value learning.
        cql_weight: weight of the conservative (CQL) term; its pull does not shrink with the rewards,
            so lower it together with reward_scale.
        bc_weight: weight of the LM cross-entropy that keeps the model's own logits a good
            behaviour policy pi_beta, which guided decoding reweights.
    """

    gamma: float = field(default=0.99, metadata={"help": "Discount factor per action token."})
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
    head_type: str = field(default="tied", metadata={"help": "'tied' (default) or 'untied' Q heads."})
    beta: float = field(default=4.0, metadata={"help": "Guidance strength at decoding, saved with the model."})
    advantage_clip: float = field(default=10.0, metadata={"help": "Clip of the advantage in guided decoding."})
    guidance_top_k: int = field(
        default=50, metadata={"help": "Guide only the base policy's top-k tokens (0 = full vocabulary)."}
    )
    pessimistic_init: bool = field(
        default=True,
        metadata={"help": "Start fresh Q and V heads at the lowest episode return in the data (if below 0), so "
                  "tokens the data never takes are not valued above the ones it does."},
    )
    guidance_top_p: float = field(
        default=1.0, metadata={"help": "Nucleus filter of the base policy inside the top-k (1.0 keeps all)."}
    )

    def head_kwargs(self) -> dict:
        return {"head_type": self.head_type, **{k: getattr(self, k) for k in DECODING_FIELDS if hasattr(self, k)}}


@dataclass
class ILQLConfig(ValueLearningConfig):
    """Configuration of [`ILQLTrainer`]; every field defaults to the ILQL paper's value.

    Parameters that control the training:
        tau: expectile of V's regression toward min_k Q^_k (0.5 = mean, -> 1 = max).
        alpha: Polyak rate of the target Q heads, applied every `target_update_interval` optimizer steps.
        awac_beta: when > 0, weight the BC term by exp(awac_beta * advantage) (AWAC).

    Example:
        ```python
        >>> args = ILQLConfig(output_dir="out", tau=0.7, gamma=0.99, cql_weight=0.1)
        ```
    """

    tau: float = field(default=0.7, metadata={"help": "Expectile for the V loss (ILQL paper: 0.7)."})
    alpha: float = field(default=0.005, metadata={"help": "Polyak rate of the target Q heads."})
    target_update_interval: int = field(
        default=1, metadata={"help": "Update the target Q heads every this many optimizer steps."}
    )
    awac_beta: float = field(
        default=0.0, metadata={"help": "AWAC temperature for the BC term; 0 = plain BC."}
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.tau < 1.0:
            raise ValueError(f"tau must be in (0, 1), got {self.tau}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}.")
        if self.target_update_interval < 1:
            raise ValueError(f"target_update_interval must be >= 1, got {self.target_update_interval}.")


class TargetUpdateCallback(TrainerCallback):
    """Polyak-averages the target Q heads after every `interval`-th optimizer step.

    Runs on every process, on the parameters as each holds them (see `polyak_update_`); under
    FSDP1, whose flat-parameter shards of online and target heads do not line up, on the gathered
    full parameters."""

    def __init__(self, alpha: float, interval: int, trainer=None):
        self.alpha = alpha
        self.interval = interval
        self.trainer = trainer  # to reach the wrapped model (callbacks are handed the unwrapped one)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.interval == 0:
            model = self.trainer.model_wrapped if self.trainer is not None else model
            with _full_parameters_under_fsdp1(model):
                unwrap_model(model).update_target_heads(self.alpha)  # DDP, DeepSpeed, FSDP1 wrappers


def _full_parameters_under_fsdp1(model):
    from torch.distributed.fsdp import FullyShardedDataParallel

    if isinstance(model, FullyShardedDataParallel):
        return FullyShardedDataParallel.summon_full_params(model, writeback=True)
    return contextlib.nullcontext()


class ILQLTrainer(LMRLTrainer):
    """Trains Q, target-Q and V heads (and the LM as pi_beta) with the ILQL objective.

    Example:
        ```python
        >>> trainer = ILQLTrainer(model="gpt2", args=ILQLConfig(output_dir="out"), train_dataset=rows)
        >>> trainer.train()
        >>> trainer.save_model()  # loads back with AutoModelForCausalLMWithILQLHeads.from_pretrained("out")
        ```
    """

    uses_target_heads = True

    def __init__(self, model, args: ILQLConfig, *pargs, **kwargs):
        super().__init__(model, args, *pargs, **kwargs)
        if self.uses_target_heads:
            self.add_callback(TargetUpdateCallback(args.alpha, args.target_update_interval, trainer=self))

    def _load_model(self, model_id: str, args) -> PreTrainedModel:
        return AutoModelForCausalLMWithILQLHeads.from_pretrained(model_id, **args.head_kwargs(), **args.load_kwargs())

    def _prepare_model(self, model, args):
        if isinstance(model, AutoModelForCausalLMWithILQLHeads):  # keep its heads; take the decoding settings
            for key in DECODING_FIELDS:
                if hasattr(args, key):
                    setattr(model.config, key, getattr(args, key))
            return model
        return AutoModelForCausalLMWithILQLHeads.from_causal_lm(model, **args.head_kwargs())

    def _apply_peft(self, model, peft_config):
        return model.add_peft_adapter(peft_config)  # the trunk only: the heads stay plain modules

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = self.model if model is None else model
        if not model.has_peft_adapter:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model.load_adapter_checkpoint(resume_from_checkpoint)

    def _initialize_from_data(self, model, train_dataset, args) -> None:
        if args.pessimistic_init and getattr(model, "heads_are_fresh", False) and train_dataset is not None:
            model.start_heads_at(min(0.0, min(train_dataset["returns"])) * args.reward_scale)

    def _should_log_diagnostics(self) -> bool:
        """Diagnostics cost a sample over the vocabulary: compute them on the steps that get logged."""
        interval = self.args.logging_steps
        return not self.model.training or interval <= 1 or (self.state.global_step + 1) % int(interval) == 0

    def model_inputs(self, inputs: dict) -> dict:
        return {
            **super().model_inputs(inputs),
            "action_mask": inputs["action_mask"],
            "compute_q_logits": self.args.cql_weight > 0,
            "full_logits": self.args.loss_chunk_size == 0,
        }

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**self.model_inputs(inputs))
        args = self.args
        loss, stats = ilql_loss(
            outputs,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["action_mask"],
            inputs["rewards"] * args.reward_scale,
            inputs["dones"],
            tau=args.tau,
            gamma=args.gamma,
            cql_weight=args.cql_weight,
            bc_weight=args.bc_weight,
            awac_beta=args.awac_beta,
            chunk_size=args.loss_chunk_size,
        )
        self.record(stats)
        if self._should_log_diagnostics():
            self.record(ilql_diagnostics(outputs, inputs["input_ids"], inputs["action_mask"]))
        return (loss, outputs) if return_outputs else loss
