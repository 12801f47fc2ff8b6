"""ILQL: implicit language Q-learning (Snell et al., 2022), token level (docs/design.md, sections 2 and 5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..losses.ilql import ilql_diagnostics, ilql_loss
from .base import check_ranges
from .callbacks import TargetUpdateCallback
from .value_heads import ValueHeadsTrainer, ValueLearningConfig

__all__ = ["ILQLConfig", "ILQLTrainer"]


@dataclass
class ILQLConfig(ValueLearningConfig):
    """Configuration of [`ILQLTrainer`].

    Parameters that control the model: see [`ValueLearningConfig`] (`head_type`, `beta`, ...: `None`
    keeps the model's own).
    Parameters that control the training:
        tau: expectile of V's regression toward min_k Q^_k (0.5 = mean, -> 1 = max).
        alpha: Polyak rate of the target Q heads, applied every `target_update_interval` optimizer steps.
        awac_beta: when > 0, weight the BC term by exp(awac_beta * advantage) (AWAC).

    Note: `tau` (0.7), `gamma` (0.99), `cql_weight` (0.1) and `alpha` (0.005) are the ILQL paper's
    values. One default differs from the paper: `bc_weight=1.0`. The paper trains the behaviour policy
    pi_beta as a separate BC model; here pi_beta is the same model's LM head, on the trunk the Q and V
    heads read, and the BC term is what keeps it a behaviour policy while the value losses move the
    trunk (the bare loss function `lmrl.losses.ilql.ilql_loss` defaults it to 0.0: value losses only).
    `beta` has no single paper value (it is tuned per task); the default is `ILQLHeadsConfig`'s.

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
        check_ranges(self, {
            "tau": (lambda v: 0.0 < v < 1.0, "in (0, 1) (0.5 regresses V to the mean of Q)"),
            "alpha": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            "target_update_interval": (lambda v: v >= 1, ">= 1"),
            "awac_beta": (lambda v: 0.0 <= v < float("inf"), "a finite number >= 0 (0 = plain BC)"),
        })


class ILQLTrainer(ValueHeadsTrainer):
    """Trains Q, target-Q and V heads (and the LM as pi_beta) with the ILQL objective.

    `model`: a causal LM, an [`AutoModelForCausalLMWithILQLHeads`], or the id/path of either. The
    model keeps its own decoding settings (`beta`, ...) unless `args` sets them (see `ValueLearningConfig`).

    Example:
        ```python
        >>> trainer = ILQLTrainer(model="gpt2", args=ILQLConfig(output_dir="out"), train_dataset=rows)
        >>> trainer.train()
        >>> trainer.save_model()  # loads back with AutoModelForCausalLMWithILQLHeads.from_pretrained("out")
        ```
    """

    def __init__(self, model, args: ILQLConfig, *pargs, **kwargs):
        super().__init__(model, args, *pargs, **kwargs)
        self.add_callback(TargetUpdateCallback(args.alpha, args.target_update_interval, trainer=self))

    def _should_log_diagnostics(self) -> bool:
        """Diagnostics cost a sample over the vocabulary: compute them on the steps that get logged."""
        interval = self.args.logging_steps
        return not self.model.training or interval <= 1 or (self.state.global_step + 1) % int(interval) == 0

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
            memory_budget=args.loss_memory_budget,
        )
        self.record(stats)
        if self._should_log_diagnostics():
            self.record(ilql_diagnostics(outputs, inputs["input_ids"], inputs["action_mask"]))
        return (loss, outputs) if return_outputs else loss
