"""CALM's auxiliary outcome head (Snell et al., 2022): attention pooling over the task context.

From the LM's hidden state at the point where the agent is about to act (the query), the head
attends over the hidden states of the context tokens (e.g. the flight table) and predicts the
dialogue's final outcome (which flight, or which flightless action). Trained beside the LM loss,
it pushes the shared trunk to ground the dialogue in the context.

On a frozen trunk (a feature cache), `BehaviorHeadWithOutcomeHead` trains what stands in for the trunk:
the behaviour head's adapter `h + g(h)`, read by both the LM loss and the outcome head.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.trainer_utils import load_sharded_checkpoint
from transformers.utils import ModelOutput

from ..compat import enable_activation_checkpointing
from ..ops.vocab import ProjectedLogits
from .adapters import is_peft_model, load_heads
from .policy_logits import PolicyLogits, linear_output_layer

HEAD_WEIGHTS = "outcome_head.safetensors"
HEAD_CONFIG = "outcome_head.json"


class OutcomeHead(nn.Module):
    """`head(hidden [B, T, h], context_mask [B, T], query_index [B]) -> logits [B, num_outcomes]`.

    Example:
        ```python
        >>> head = OutcomeHead(hidden_size=64, num_outcomes=11)
        >>> head(torch.randn(2, 9, 64), torch.ones(2, 9), torch.tensor([8, 5])).shape
        torch.Size([2, 11])
        ```
    """

    def __init__(self, hidden_size: int, num_outcomes: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_outcomes = num_outcomes
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.GELU(),
                                 nn.Linear(hidden_size, num_outcomes))

    def forward(self, hidden: torch.Tensor, context_mask: torch.Tensor, query_index: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        query = self.query(hidden[rows, query_index])  # [B, h]
        scores = torch.einsum("bth,bh->bt", self.key(hidden), query) / math.sqrt(self.hidden_size)  # [B, T]
        mask = context_mask.bool()
        mask = torch.where(mask.any(-1, keepdim=True), mask, torch.ones_like(mask))  # no context: attend to all
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        pooled = torch.einsum("bt,bth->bh", weights, self.value(hidden))  # [B, h]
        return self.out(torch.cat([pooled, query], dim=-1))

    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write `outcome_head.safetensors` and `outcome_head.json` into `directory` (`state_dict`: the
        head's weights as gathered by a distributed save, else its own)."""
        directory = Path(directory)
        state_dict = self.state_dict() if state_dict is None else state_dict
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(directory / HEAD_WEIGHTS))
        (directory / HEAD_CONFIG).write_text(json.dumps({"hidden_size": self.hidden_size,
                                                         "num_outcomes": self.num_outcomes}))

    @staticmethod
    def saved_config(directory: str | Path) -> dict:
        directory = Path(directory)
        if not (directory / HEAD_CONFIG).is_file() or not (directory / HEAD_WEIGHTS).is_file():
            raise ValueError(f"{directory}: no {HEAD_CONFIG} and {HEAD_WEIGHTS}; this is not a CALM checkpoint "
                             "with an outcome head (train with outcome_task set, or load it as a plain causal LM).")
        return json.loads((directory / HEAD_CONFIG).read_text())

    @classmethod
    def load(cls, directory: str | Path) -> OutcomeHead:
        head = cls(**cls.saved_config(directory))
        head.load_state_dict(load_file(str(Path(directory) / HEAD_WEIGHTS)))
        return head

    def load_weights(self, directory: str | Path) -> None:
        """Load the head saved in `directory` into this head, in place; other sizes are refused in words."""
        saved = self.saved_config(directory)
        ours = {"hidden_size": self.hidden_size, "num_outcomes": self.num_outcomes}
        if saved != ours:
            raise ValueError(f"{directory}: the saved outcome head has {saved}, this model's has {ours}. Resume "
                             "with the base model and training data of the run that wrote it (the data sets "
                             "num_outcomes), or train into a new output_dir.")
        self.load_state_dict(load_file(str(Path(directory) / HEAD_WEIGHTS)))


@dataclass
class CALMOutput(ModelOutput):
    """`policy_logits` [N, V]: the LM's scores at the N action states (factored when the output layer
    allows, see `PolicyLogits`); `outcome_logits` [B, num_outcomes]; `logits`: the LM's own output
    (last position only when factored), returned so that DDP sees the output layer used."""

    policy_logits: object | None = None
    outcome_logits: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class LMWithOutcomeHead(nn.Module):
    """The module `CALMTrainer` optimizes: a causal LM and its `OutcomeHead`, both used inside one
    `forward`, so that DDP/FSDP see every parameter the loss reaches (a head called from outside the
    wrapped module's forward would get no gradient all-reduce under DDP).

    It saves and loads itself: `save_pretrained(dir)` writes the LM as a plain causal LM (what
    `AutoModelForCausalLM.from_pretrained(dir)` loads, for decoding) and the head beside it
    (`outcome_head.safetensors`, `outcome_head.json`); `from_pretrained(dir)` restores both, and
    `load_checkpoint(dir)` loads them into this model in place (what resuming a run does).

    Example:
        ```python
        >>> model = LMWithOutcomeHead(lm, OutcomeHead(lm.config.hidden_size, num_outcomes=4))
        >>> model.save_pretrained("out")
        >>> AutoModelForCausalLM.from_pretrained("out")  # the LM alone
        >>> LMWithOutcomeHead.from_pretrained("out")     # the LM and its outcome head
        ```
    """

    def __init__(self, lm: nn.Module, outcome_head: OutcomeHead):
        super().__init__()
        self.lm = lm
        self.outcome_head = outcome_head
        self._policy_logits = PolicyLogits()

    @property
    def config(self):
        return self.lm.config

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def save_pretrained(self, save_directory: str | Path, state_dict: dict | None = None, is_main_process: bool = True,
                        **kwargs) -> None:
        """Write the LM as a plain causal LM and the outcome head beside it. `state_dict` (as gathered by
        a distributed save) holds this module's keys: `lm.*` and `outcome_head.*`."""
        lm_state = head_state = None
        if state_dict is not None:
            lm_state = {k[len("lm."):]: v for k, v in state_dict.items() if k.startswith("lm.")}
            head_state = {k[len("outcome_head."):]: v for k, v in state_dict.items() if k.startswith("outcome_head.")}
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(save_directory, state_dict=lm_state, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            self.outcome_head.save(save_directory, head_state)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs) -> LMWithOutcomeHead:
        """The LM (`AutoModelForCausalLM.from_pretrained(directory, **kwargs)`) and its outcome head."""
        lm = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
        return cls(lm, OutcomeHead.load(directory).to(lm.device))

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors `save_pretrained` writes to model.safetensors (the LM's, under the LM's own names)."""
        return self.lm.state_dict()

    def load_checkpoint(self, directory: str | Path) -> None:
        """Load the LM (or its adapter) and head weights saved by `save_pretrained` into this model, in place."""
        directory = Path(directory)
        if is_peft_model(self.lm):  # an adapter checkpoint: the adapter, the head beside it in full
            self.lm.load_adapter(str(directory), self.lm.active_adapter, is_trainable=True)
        elif (directory / "model.safetensors.index.json").is_file():
            load_sharded_checkpoint(self.lm, str(directory), strict=False, prefer_safe=True)
        else:
            state = load_file(str(directory / "model.safetensors"), device=str(self.lm.device))
            self.lm.load_state_dict(state, strict=False)  # tied weights are saved once, under one name
        self.outcome_head.load_weights(directory)

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict | None = None, **options) -> None:
        """Checkpoint the LM's layers (`Trainer` calls this for `activation_checkpointing=True`); `options`
        (`every_n_layers`, `offload`) are transformers' own."""
        enable_activation_checkpointing(self.lm, activation_checkpointing_kwargs, **options)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **options) -> None:
        """The name transformers before 5.23 calls."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **options)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: torch.Tensor,
                context_mask: torch.Tensor, outcome_query: torch.Tensor) -> CALMOutput:
        """`steps` [B, T-1]: the action states whose LM scores the BC loss reads."""
        out, hidden, policy_logits = self._policy_logits(self.lm, steps, input_ids=input_ids,
                                                         attention_mask=attention_mask)
        return CALMOutput(policy_logits=policy_logits, logits=out.logits,
                          outcome_logits=self.outcome_head(hidden, context_mask, outcome_query))


class BehaviorHeadWithOutcomeHead(LMWithOutcomeHead):
    """The module `CALMTrainer` optimizes on a frozen trunk's feature cache: an
    [`AutoModelForCausalLMWithILQLHeads`] whose trunk is frozen (`freeze_trunk`) and which has a behaviour
    head (`behavior_adapter=True`), plus CALM's `OutcomeHead` (or none, without outcome labels).

    The trunk never runs: `forward` takes its cached last hidden states h. The behaviour head's MLP g
    adapts them to `h + g(h)`, and both of CALM's losses read these adapted features:
    - the LM loss, through pi_beta's logits `W (h + g(h)) + b + b'` (W, b: the frozen LM head; b': the
      behaviour head's bias), which are exactly the logits the model decodes with at `beta` 0;
    - the outcome head, which attends over the adapted features of the context.
    So the outcome loss shapes the same adapter that decodes: the frozen-trunk analogue of CALM's
    auxiliary loss shaping the shared trunk.

    `save_pretrained(dir)` writes the heads-only checkpoint of the model (`ilql_heads.safetensors` and a
    config naming the base model and its fingerprint) and the outcome head beside it;
    `AutoModelForCausalLM.from_pretrained(dir)` loads the base plus the behaviour head, for decoding.

    Example:
        ```python
        >>> lm = AutoModelForCausalLMWithILQLHeads.from_pretrained("base", behavior_adapter=True, beta=0.0)
        >>> lm.freeze_trunk("base", weights_fingerprint(lm.pretrained_model))
        >>> model = BehaviorHeadWithOutcomeHead(lm, OutcomeHead(lm.config.text_config.hidden_size, 4))
        >>> out = model(ids, mask, steps, context_mask, outcome_query, trunk_hidden_states=cached)
        >>> model.save_pretrained("out")  # heads only; AutoModelForCausalLM.from_pretrained("out") decodes
        ```
    """

    def __init__(self, lm: nn.Module, outcome_head: OutcomeHead | None):
        if getattr(lm, "behavior_head", None) is None or not lm.config.base_model:
            raise ValueError("BehaviorHeadWithOutcomeHead needs an AutoModelForCausalLMWithILQLHeads with a behaviour "
                             "head (behavior_adapter=True) and a frozen trunk (freeze_trunk).")
        super().__init__(lm, outcome_head)

    def save_pretrained(self, save_directory: str | Path, state_dict: dict | None = None, is_main_process: bool = True,
                        **kwargs) -> None:
        """Write the heads-only checkpoint (see `save_heads_checkpoint`) and the outcome head beside it."""
        if self.outcome_head is not None:
            return super().save_pretrained(save_directory, state_dict, is_main_process, **kwargs)
        if state_dict is not None:
            state_dict = {k[len("lm."):]: v for k, v in state_dict.items() if k.startswith("lm.")}
        self.lm.save_pretrained(save_directory, state_dict=state_dict, is_main_process=is_main_process)

    def load_checkpoint(self, directory: str | Path) -> None:
        """Load the heads (and the outcome head) saved by `save_pretrained` into this model, in place."""
        load_heads(self.lm, directory)
        if self.outcome_head is not None:
            self.outcome_head.load_weights(directory)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: torch.Tensor,
                context_mask: torch.Tensor, outcome_query: torch.Tensor,
                trunk_hidden_states: torch.Tensor | None = None) -> CALMOutput:
        """`trunk_hidden_states` [B, T, h]: the frozen trunk's last hidden states (from the feature cache);
        `steps` [B, T-1]: the action states whose pi_beta scores the LM loss reads."""
        if trunk_hidden_states is None:
            raise ValueError("BehaviorHeadWithOutcomeHead trains on a feature cache: pass the trunk's cached hidden "
                             "states as trunk_hidden_states (CALMTrainer does with feature_cache set).")
        output_layer = linear_output_layer(self.lm.pretrained_model)
        if output_layer is None:
            raise ValueError(f"{type(self.lm.pretrained_model).__name__}'s logits are not a plain linear map of its last "
                             "hidden state (a soft-capped or scaled output), so they cannot be computed from cached "
                             "hidden states: train this model without feature_cache.")
        behavior = self.lm.behavior_head
        hidden = trunk_hidden_states.to(behavior.mlp[0].weight.dtype)  # [B, T, h]
        adapted = hidden + behavior.features(hidden)  # h + g(h) [B, T, h]
        bias = behavior.bias if output_layer.bias is None else behavior.bias + output_layer.bias.detach()
        policy_logits = ProjectedLogits(adapted[:, :-1][steps], output_layer.weight.detach(), bias)  # [N, V]
        outcome_logits = None  # [B, num_outcomes]
        if self.outcome_head is not None:
            outcome_logits = self.outcome_head(adapted, context_mask, outcome_query)
        return CALMOutput(policy_logits=policy_logits, outcome_logits=outcome_logits)
