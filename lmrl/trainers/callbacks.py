"""Callbacks the trainers add: the Polyak update of target networks (ILQL's target Q heads, CHAI's target critics)."""

from __future__ import annotations

import contextlib

from transformers import TrainerCallback
from transformers.modeling_utils import unwrap_model


class TargetUpdateCallback(TrainerCallback):
    """Polyak-averages the target networks after every `interval`-th optimizer step.

    The model (unwrapped from DDP, DeepSpeed or FSDP1) must have `update_target_heads(alpha)`. Runs on
    every process, on the parameters as each holds them (see `lmrl.models.heads.polyak_update_`);
    under FSDP1, whose flat-parameter shards of online and target heads do not line up, on the
    gathered full parameters.

    Example:
        ```python
        >>> trainer.add_callback(TargetUpdateCallback(alpha=0.005, interval=1, trainer=trainer))
        ```
    """

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
