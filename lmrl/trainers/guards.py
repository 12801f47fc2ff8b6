"""Non-finite guard: a NaN or inf loss term or gradient stops training in words, or skips the step.

transformers' Trainer by default hides a NaN loss in its logs (`logging_nan_inf_filter`) and still
steps the optimizer, so one bad batch can turn every weight into NaN and the next checkpoint with it.
lmrl's trainers check, on every training micro-batch, each loss term that `compute_loss` records
(`loss/q`, `loss/v`, `loss/cql`, `loss/bc`, ...) and the total loss, and before every optimizer step
the gradient norm. With `nonfinite="error"` (default) the first non-finite value raises
[`NonFiniteError`] naming the optimizer step and the term, before the optimizer touches the weights;
with `nonfinite="skip"` that optimizer step is skipped on every process (parameters and optimizer
moments stay as they were) and counted in the logs as `nonfinite_skipped_steps`; the logged averages
of the terms over that logging window show the NaN. A model whose parameters are not finite
is never saved, so the last checkpoint on disk stays a good one.
"""

from __future__ import annotations

import logging
import math

import torch

from .checkpointing import last_complete_checkpoint

logger = logging.getLogger(__name__)

NONFINITE_MODES = ("error", "skip")


class NonFiniteError(ValueError):
    """Training produced a NaN or inf loss term, gradient or parameter."""


class NonFiniteGuardMixin:
    """`Trainer` methods that apply `args.nonfinite` ("error" or "skip") to every optimizer step."""

    _nonfinite_pending: str | None = None  # what was not finite in the optimizer step being accumulated
    _nonfinite_skipped: int = 0

    def _last_checkpoint_note(self) -> str:
        last = last_complete_checkpoint(self.args.output_dir)
        if last is None:
            return "No checkpoint was written before it."
        return f"The last checkpoint, {last}, was written before it and is intact: resume from it once fixed."

    def _nonfinite(self, what: str, value: float) -> None:
        step = self.state.global_step + 1
        if self.args.nonfinite == "skip":
            self._nonfinite_pending = self._nonfinite_pending or f"{what} = {value}"
            return
        raise NonFiniteError(
            f"Non-finite {what} = {value} at optimizer step {step}, so training stopped before that step "
            f"changed the weights. {self._last_checkpoint_note()} Look for NaN/inf in the batch's tensors "
            "(rewards), a learning_rate too high, or fp16 overflow; or set nonfinite='skip' to skip such "
            "steps and count them in the logs."
        )

    def check_loss_terms(self, values: dict[str, float]) -> None:
        """Check one training micro-batch's loss terms (the `loss*` entries of what it records)."""
        for key, value in values.items():
            if key.startswith("loss") and not math.isfinite(value):
                self._nonfinite(f"loss term '{key}'", value)
                return

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            self._nonfinite("loss", float(loss))
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        # with fp16 loss scaling, inf gradients are the scaler's signal to skip the step and lower the scale
        scaled = getattr(self.accelerator, "scaler", None) is not None
        if grad_norm is not None and not scaled and not math.isfinite(float(grad_norm)):
            self._nonfinite("gradient norm", float(grad_norm))
        if self.args.nonfinite == "skip" and self.accelerator.num_processes > 1:
            # skip on every process or on none, or the replicas drift apart
            flag = torch.tensor(float(self._nonfinite_pending is not None), device=self.accelerator.device)
            if self.accelerator.reduce(flag, reduction="sum") > 0 and self._nonfinite_pending is None:
                self._nonfinite_pending = "value on another process"
        if self._nonfinite_pending is not None:
            self._nonfinite_skipped += 1
            logger.warning("Skipping optimizer step %d: non-finite %s (%d skipped so far).",
                           self.state.global_step + 1, self._nonfinite_pending, self._nonfinite_skipped)
            self._nonfinite_pending = None
            for parameter in model.parameters():
                parameter.grad = None  # the optimizer leaves parameters without a gradient untouched
        return grad_norm

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.args.nonfinite == "skip" and not any(key.startswith("eval_") for key in logs):
            logs["nonfinite_skipped_steps"] = self._nonfinite_skipped
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        bad = [name for name, parameter in self.model.named_parameters() if not torch.isfinite(parameter).all()]
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise NonFiniteError(
                f"The parameters {bad[0]}{more} are not finite after optimizer step {self.state.global_step}, "
                f"so nothing was saved to {output_dir or self.args.output_dir}. {self._last_checkpoint_note()} "
                "Lower learning_rate (or check max_grad_norm) and resume."
            )
        super().save_model(output_dir, _internal_call)
