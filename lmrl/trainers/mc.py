"""Monte-Carlo regression: Q and V heads regress to the observed discounted return (a baseline for ILQL)."""

from __future__ import annotations

from dataclasses import dataclass

from ..losses.ilql import mc_loss
from .value_heads import ValueHeadsTrainer, ValueLearningConfig


@dataclass
class MCConfig(ValueLearningConfig):
    """Configuration of [`MCTrainer`]: the same heads and decoding as ILQL, no bootstrapping.

    Example:
        ```python
        >>> args = MCConfig(output_dir="out", gamma=0.99, cql_weight=0.1)
        ```
    """


class MCTrainer(ValueHeadsTrainer):
    """Regresses Q_k(s, a) and V(s) to Monte-Carlo returns-to-go, with the same CQL and BC terms as
    ILQL; decodes with the same guided `generate()`. Its models have no target heads (nothing
    bootstraps): fresh ones are built without them, and a given model's are dropped."""

    uses_target_heads = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**self.model_inputs(inputs))
        args = self.args
        loss, stats = mc_loss(
            outputs,
            inputs["input_ids"],
            inputs["action_mask"],
            inputs["rewards"] * args.reward_scale,
            gamma=args.gamma,
            cql_weight=args.cql_weight,
            bc_weight=args.bc_weight,
            chunk_size=args.loss_chunk_size,
            memory_budget=args.loss_memory_budget,
        )
        self.record(stats)
        return (loss, outputs) if return_outputs else loss
