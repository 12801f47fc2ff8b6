"""Serve an lmrl ILQL checkpoint with vLLM, decoding with its guided scores (docs/vllm.md).

vLLM loads this module through its plugin entry point (`vllm.general_plugins`, declared in
pyproject.toml: `pip install lmrl[vllm]`); `register()` maps the architecture lmrl's checkpoints name,
`AutoModelForCausalLMWithILQLHeads`, to [`LMRLILQLForCausalLM`]. That model is vLLM's own
implementation of the base architecture (GPT-2, Llama, ... whatever the checkpoint's `text_config`
names) plus lmrl's Q and V heads, and its `compute_logits` returns the guided scores of
docs/design.md, section 4 (the one rule, `lmrl.ops.guidance.guided_scores`):

    scores = log_softmax(logits) + beta * clip(min_k Q_k(s, .) - V(s), -c, c)    (top-k fast path)

so greedy decoding, sampling and the OpenAI server all decode the guided policy, as `generate()` does.
`beta`, `advantage_clip`, `guidance_top_k` and `guidance_top_p` are read from the checkpoint's config;
`hf_overrides={"beta": 0.0}` (`--hf-overrides '{"beta": 0}'`) changes them at load time.

Example:
    ```python
    >>> from vllm import LLM, SamplingParams
    >>> llm = LLM(model="runs/maze/ilql")  # a folder saved by lmrl (ILQL or MC; LoRA merged)
    >>> llm.generate(["..."], SamplingParams(temperature=0, max_tokens=32))
    ```
Only `lmrl.models` (config and heads) and `lmrl.ops` are imported: they work on the older
transformers vLLM pins.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from ..models.adapters import HEAD_MODULES
from ..models.configuration import DECODING_FIELDS, check_head_settings
from ..models.heads import ValueHead, make_q_head
from ..ops.guidance import guided_scores

ARCHITECTURE = "AutoModelForCausalLMWithILQLHeads"  # what lmrl's checkpoints write in config.json
TRUNK = "pretrained_model"  # the base LM's prefix in lmrl's checkpoints


def register() -> None:
    """vLLM's plugin entry point: lmrl checkpoints load as [`LMRLILQLForCausalLM`]."""
    from vllm import ModelRegistry

    from .. import models  # noqa: F401  (registers the checkpoints' config type, `lmrl_ilql`, with AutoConfig)

    ModelRegistry.register_model(ARCHITECTURE, f"{__name__}:LMRLILQLForCausalLM")


class LMRLILQLForCausalLM(nn.Module):
    """vLLM's model of the checkpoint's base architecture, with lmrl's Q and V heads guiding its logits.

    The trunk is built by vLLM (`init_vllm_registered_model`) from the checkpoint's `text_config` and
    loads the `pretrained_model.*` weights; `q_heads.*` and `v_head.*` load into lmrl's own head modules
    (the target heads are for training only and are skipped). One process, no tensor or pipeline
    parallelism: the tied Q head reads the output embedding's rows of the top-k tokens.
    """

    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__()
        from vllm.distributed.parallel_state import get_pp_group, get_tensor_model_parallel_world_size
        from vllm.model_executor.models.utils import init_vllm_registered_model, maybe_prefix

        model_config = vllm_config.model_config
        config = model_config.hf_config
        folder = Path(str(model_config.model))
        if (folder / "adapter_config.json").exists():
            raise ValueError(
                f"{folder} holds a LoRA adapter and the heads, not a whole model. Merge the adapter first: "
                "AutoModelForCausalLMWithILQLHeads.from_pretrained(folder).merge_and_unload().save_pretrained(out), "
                "then serve `out`."
            )
        if getattr(config, "base_model", None) and not any(folder.glob("model*.safetensors")):
            raise ValueError(
                f"{folder} holds heads only (trained on a frozen {config.base_model}). Write a whole checkpoint "
                "first: AutoModelForCausalLMWithILQLHeads.from_pretrained(folder).save_pretrained(out, "
                "heads_only=False), then serve `out`."
            )
        if get_tensor_model_parallel_world_size() > 1 or get_pp_group().world_size > 1:
            raise ValueError("lmrl's guided model runs on one device: start vLLM with tensor_parallel_size=1 and "
                             "pipeline_parallel_size=1 (the Q/V heads are not sharded).")
        self.config = config
        self.settings = {key: getattr(config, key) for key in DECODING_FIELDS}  # guided_scores' keyword arguments
        check_head_settings(self.settings, where=f"{folder}: the checkpoint's config (with any hf_overrides)")
        text_config = config.get_text_config()
        self.pretrained_model = init_vllm_registered_model(
            vllm_config, hf_config=text_config, prefix=maybe_prefix(prefix, TRUNK)
        )
        hidden_size, self.vocab_size = text_config.hidden_size, text_config.vocab_size
        self.q_heads = nn.ModuleList(
            make_q_head(config.head_type, hidden_size, self.vocab_size, config.head_hidden_size)
            for _ in range(config.num_q_heads)
        )
        self.v_head = ValueHead(hidden_size, config.head_hidden_size)
        # pi_beta's correction (a behaviour head trained on a frozen trunk): logits + W_E g(h) + b
        self.behavior_head = (make_q_head("tied", hidden_size, self.vocab_size, config.head_hidden_size)
                              if getattr(config, "behavior_adapter", False) else None)
        self.make_empty_intermediate_tensors = getattr(self.pretrained_model, "make_empty_intermediate_tensors", None)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.pretrained_model.embed_input_ids(input_ids)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None) -> torch.Tensor:
        return self.pretrained_model(input_ids, positions, intermediate_tensors, inputs_embeds)

    def min_q(self, hidden: torch.Tensor, token_ids: torch.Tensor | None) -> torch.Tensor:
        """`min_k Q_k(s, .)` for the given tokens [N, k] or the vocabulary [N, V]."""
        embedding = self.pretrained_model.lm_head.weight[: self.vocab_size]  # vLLM pads the vocabulary
        return torch.stack([head(hidden, embedding, token_ids) for head in self.q_heads]).min(dim=0).values

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        """The guided scores at the states vLLM samples from (`hidden_states` [N, h], after the final norm)."""
        logits = self.pretrained_model.compute_logits(hidden_states)  # [N, V]
        if logits is None:
            return logits
        hidden = hidden_states.to(self.v_head.mlp[0].weight.dtype)
        if self.behavior_head is not None:
            embedding = self.pretrained_model.lm_head.weight[: self.vocab_size]
            logits = logits.clone()
            logits[..., : self.vocab_size] += self.behavior_head(hidden, embedding).to(logits.dtype)
        if self.settings["beta"] == 0:
            return logits
        return guided_scores(logits, lambda ids: self.min_q(hidden, ids), self.v_head(hidden), **self.settings
                             ).to(logits.dtype)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load an lmrl checkpoint: the trunk through vLLM's loader for its architecture, then the heads."""
        heads: dict[str, torch.Tensor] = {}

        def trunk_weights():
            for name, tensor in weights:
                module = name.split(".")[0]
                if module == TRUNK:
                    yield name[len(TRUNK) + 1 :], tensor
                elif module in HEAD_MODULES and module != "target_q_heads":
                    heads[name] = tensor

        loaded = {f"{TRUNK}.{name}" for name in self.pretrained_model.load_weights(trunk_weights())}
        own = {name: p for name, p in self.named_parameters() if name.split(".")[0] in HEAD_MODULES}
        if set(heads) != set(own):
            raise ValueError(
                f"{self.config.name_or_path}: the checkpoint's heads do not match its config (missing "
                f"{sorted(set(own) - set(heads))[:4]}, unexpected {sorted(set(heads) - set(own))[:4]})."
            )
        with torch.no_grad():
            for name, tensor in heads.items():
                own[name].copy_(tensor)
        return loaded | set(heads)
