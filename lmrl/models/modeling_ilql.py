"""`AutoModelForCausalLMWithILQLHeads`: any causal LM plus ILQL's Q, target-Q and V heads.

At inference its logits are the guided policy's scores (docs/design.md, section 4: Decoding), so the stock `generate()` and
`pipeline("text-generation")` decode with the learned values. In training (`action_mask` given) its
forward returns what the ILQL losses need, computed inside `forward` so DDP/FSDP see every use of
every parameter.
"""

from __future__ import annotations

import copy
import inspect
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from ..compat import CACHE_KEY, output_cache, pop_cache, slice_logits_to_keep
from ..ops.guidance import guided_scores
from ..ops.vocab import ProjectedLogits
from .adapters import (
    HEADS_WEIGHTS,
    HUB_KWARGS,
    adapter_config_file,
    from_adapter_checkpoint,
    from_heads_checkpoint,
    is_peft_model,
    load_heads,
    save_adapter_checkpoint,
    save_heads_checkpoint,
)
from .configuration import (
    DECODING_FIELDS,
    HEAD_FIELDS,
    ILQLHeadsConfig,
    apply_head_settings,
)
from .gguf import drop_gguf_quantization
from .heads import StackedTiedQHeads, TiedQHead, UntiedQHead, ValueHead, make_q_head, polyak_update_
from .model_files import check_model_source, check_safetensors_files, check_saved_heads
from .policy_logits import PolicyLogits, decoder_of, linear_output_layer

# keyword arguments of `from_pretrained` that locate a config on disk or on the hub (or in a GGUF file)
_HUB_KWARGS = (*HUB_KWARGS, "trust_remote_code", "gguf_file")


@dataclass
class ILQLOutput(ModelOutput):
    """What the ILQL losses read. Position t is the state after token t; its action is token t+1.

    Shapes: `q_values`, `target_q_values` [K, B, T-1] (Q of the data token t+1 from state t);
    `v_values` [B, T] (V after each token); `q_logits`: per head, Q over the vocabulary at the N action
    states [N, V], for CQL; `policy_logits`: the LM's logits at the N action states [N, V], for BC;
    `hidden_states` [B, T, h] (last layer). The [N, V] scores are [`ProjectedLogits`] (features and a
    projection, never materialized whole; `.materialize()` builds them) unless the LM's logits are not
    a linear map of its last hidden state. `logits`: the LM's own logits, [B, T, V] with
    `full_logits=True` (or when they cannot be factored), else the last position's [B, 1, V].
    A `ModelOutput` is a dict: a field named `values` would shadow `dict.values()`, which DDP calls
    on the outputs, hence `v_values`.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    q_values: torch.Tensor | None = None
    target_q_values: torch.Tensor | None = None
    v_values: torch.Tensor | None = None
    q_logits: tuple[ProjectedLogits, ...] | None = None
    policy_logits: ProjectedLogits | torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None
    # the KV cache, under the name the installed transformers uses (see `lmrl.compat`)
    if CACHE_KEY == "cache":
        cache: object | None = None
    else:
        past_key_values: object | None = None


class AutoModelForCausalLMWithILQLHeads(PreTrainedModel, GenerationMixin):
    """A causal LM with two Q heads, their Polyak target copies and a V head (docs/design.md, section 3: Heads).

    Example:
        ```python
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from lmrl import AutoModelForCausalLMWithILQLHeads
        >>> base = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100))
        >>> model = AutoModelForCausalLMWithILQLHeads.from_pretrained(base, beta=8.0)
        >>> out = model.generate(input_ids=torch.tensor([[1, 2, 3]]), max_new_tokens=5, do_sample=False)
        ```
    `from_pretrained` accepts a hub id or local path of a plain causal LM (heads are added fresh),
    a directory saved by this class (heads, targets and settings are restored), or a model object;
    `gguf_file="model.gguf"` reads the LM from a GGUF file in that folder (dequantized to float).

    PEFT: `add_peft_adapter(LoraConfig(...))` adapts the trunk only; the heads stay plain, fully
    trainable modules. `save_pretrained` then writes the adapter (PEFT's format, naming the base model)
    and the heads, `from_pretrained(that_dir)` restores base + adapter + heads, and `merge_and_unload()`
    folds the adapter into the trunk's weights for deployment.
    """

    config_class = ILQLHeadsConfig
    base_model_prefix = "pretrained_model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False
    _keep_in_fp32_modules_strict = ["target_q_heads"]

    def __init__(self, config: ILQLHeadsConfig, pretrained_model: PreTrainedModel | None = None):
        super().__init__(config)
        if pretrained_model is None:
            pretrained_model = AutoModelForCausalLM.from_config(config.text_config)
        else:  # a built (maybe trained, maybe PEFT-adapted) trunk: post_init must initialise the heads only
            for module in pretrained_model.modules():
                module._is_hf_initialized = True
        self.pretrained_model = pretrained_model
        hidden_size = config.text_config.hidden_size
        vocab_size = pretrained_model.get_output_embeddings().weight.shape[0]
        self.q_heads = nn.ModuleList(
            make_q_head(config.head_type, hidden_size, vocab_size, config.head_hidden_size)
            for _ in range(config.num_q_heads)
        )
        self.target_q_heads = self._copy_of_q_heads() if config.target_heads else None
        self.v_head = ValueHead(hidden_size, config.head_hidden_size)
        # pi_beta's correction when the trunk (and its LM head) is frozen: logits + W_E g(h) + b
        self.behavior_head = (TiedQHead(hidden_size, vocab_size, config.head_hidden_size)
                              if config.behavior_adapter else None)
        dtype = next(pretrained_model.parameters()).dtype
        for module in (self.q_heads, self.v_head, self.behavior_head):
            if module is not None:
                module.to(dtype=dtype)
        self._base_accepts_logits_to_keep = "logits_to_keep" in inspect.signature(
            _unwrap_peft(pretrained_model).forward  # a PEFT model passes its keyword arguments on
        ).parameters
        self._policy_logits = PolicyLogits()
        self._stacked_q_heads = StackedTiedQHeads()  # decoding: the Q heads in one matmul (see min_q)
        self.post_init()
        if getattr(pretrained_model, "generation_config", None) is not None:
            self.generation_config = copy.deepcopy(pretrained_model.generation_config)

    def _copy_of_q_heads(self) -> nn.ModuleList:
        # Polyak steps of size alpha (0.005) round away in bf16/fp16: the targets are kept in fp32
        return copy.deepcopy(self.q_heads).requires_grad_(False).to(dtype=torch.float32)

    # ---------------------------------------------------------------- construction and loading
    @classmethod
    def from_causal_lm(cls, model: PreTrainedModel, **head_kwargs) -> AutoModelForCausalLMWithILQLHeads:
        """Wrap an already-built causal LM; heads start fresh (tied Q heads start at zero)."""
        model = drop_gguf_quantization(model)  # loaded from a GGUF file: float weights, saved as such
        # The base config is shared, not copied; pass its attention backend so that building the
        # wrapper config does not reset it.
        config = ILQLHeadsConfig(
            text_config=model.config, attn_implementation=model.config._attn_implementation, **head_kwargs
        )
        wrapped = cls(config, pretrained_model=model)
        wrapped.reset_heads()
        wrapped.heads_are_fresh = True  # lets a trainer start them from its data (see start_heads_at)
        wrapped.train(model.training)
        return wrapped

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Load a saved model with heads, or wrap a causal LM (an id, a path or a model) in fresh heads.

        Head settings given as keyword arguments (`beta=8.0`, ...) override a saved model's decoding
        settings ([`apply_head_settings`]); a structural one (`head_type`, ...) that differs from the
        saved heads is refused. For a plain causal LM they build the fresh heads."""
        head_kwargs = {k: kwargs.pop(k) for k in HEAD_FIELDS if k in kwargs}
        source = pretrained_model_name_or_path
        where = f"from_pretrained({source if isinstance(source, (str, os.PathLike)) else type(source).__name__})"
        if isinstance(source, cls):
            apply_head_settings(source.config, head_kwargs, where)
            return source
        if isinstance(source, PreTrainedModel) or is_peft_model(source):
            return cls.from_causal_lm(source, **head_kwargs)

        if "subfolder" not in kwargs:  # a folder on disk, or an id the hub (or its cache) can give
            check_model_source(source, where, cache_dir=kwargs.get("cache_dir"))
        if os.path.isdir(source):
            check_safetensors_files(os.path.join(source, kwargs.get("subfolder", "")))
        adapter_config = adapter_config_file(source, **kwargs)
        if adapter_config is not None and "config" not in kwargs:
            model = from_adapter_checkpoint(cls, source, adapter_config, **kwargs)
            apply_head_settings(model.config, head_kwargs, where)
            return model
        config = kwargs.pop("config", None)
        if config is None:
            config = AutoConfig.from_pretrained(source, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs})
        if isinstance(config, ILQLHeadsConfig) and config.base_model and os.path.isdir(source) \
                and os.path.isfile(os.path.join(source, HEADS_WEIGHTS)):
            model = from_heads_checkpoint(cls, source, config, kwargs.pop("base_model", None), **kwargs)
            apply_head_settings(model.config, head_kwargs, where)
            return model
        if isinstance(config, ILQLHeadsConfig):
            apply_head_settings(config, head_kwargs, where)
            return_info = kwargs.pop("output_loading_info", False)
            ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
            # mismatched shapes are reported here (naming the config field), not raised inside transformers
            model, info = super().from_pretrained(source, *model_args, config=config, output_loading_info=True,
                                                  ignore_mismatched_sizes=True, **kwargs)
            check_saved_heads(source, model.config, info, ignore_mismatched_sizes)
            return (model, info) if return_info else model
        base = AutoModelForCausalLM.from_pretrained(source, *model_args, config=config, **kwargs)
        return cls.from_causal_lm(base, **head_kwargs)

    def save_pretrained(self, save_directory, *args, state_dict: dict | None = None, heads_only: bool | None = None,
                        **kwargs):
        """Save weights and settings; with a PEFT trunk, the adapter and the heads (see `adapters`). A frozen
        trunk (`config.base_model` set) saves the heads only, unless `heads_only=False`, which writes a whole
        checkpoint (base weights included, no base named), e.g. to serve with vLLM."""
        if heads_only is False and self.config.base_model:
            base, fingerprint = self.config.base_model, self.config.base_fingerprint
            self.config.base_model = self.config.base_fingerprint = None
            try:
                return self.save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
            finally:
                self.config.base_model, self.config.base_fingerprint = base, fingerprint
        if heads_only and not self.config.base_model:
            raise ValueError("heads_only=True: this model's trunk is not frozen (freeze_trunk names the base model "
                             "that a heads-only checkpoint loads from).")
        if self.has_peft_adapter:
            if kwargs.get("push_to_hub"):
                raise ValueError("push_to_hub is not supported for a PEFT trunk: save to a folder, then upload it "
                                 "with huggingface_hub.upload_folder.")
            return save_adapter_checkpoint(self, save_directory, state_dict,
                                           is_main_process=kwargs.get("is_main_process", True))
        if self.config.base_model:  # a frozen trunk: the heads only, naming their base
            return save_heads_checkpoint(self, save_directory, state_dict,
                                         is_main_process=kwargs.get("is_main_process", True))
        return super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)

    # ---------------------------------------------------------------- PEFT on the trunk
    @property
    def has_peft_adapter(self) -> bool:
        """Whether the trunk is a `peft.PeftModel` (e.g. LoRA-adapted)."""
        return is_peft_model(self.pretrained_model)

    def add_peft_adapter(self, peft_config) -> AutoModelForCausalLMWithILQLHeads:
        """Adapt the trunk with `peft_config` (e.g. `LoraConfig(r=8)`): its weights freeze except the
        adapter's; the Q, target and V heads stay as they are (plain modules, Q and V trainable)."""
        from peft import get_peft_model

        if self.has_peft_adapter:
            raise ValueError("The trunk already has a PEFT adapter. Train it as it is (load it with "
                             "is_trainable=True), or merge it first with merge_and_unload().")
        self.pretrained_model = get_peft_model(self.pretrained_model, peft_config)
        self.tie_weights()  # the trunk's tied weights now live under new names
        return self

    def load_adapter_checkpoint(self, directory: str) -> None:
        """Load the adapter and heads of a checkpoint saved by this model into it (to resume training)."""
        trunk = self.pretrained_model
        trunk.load_adapter(str(directory), trunk.active_adapter, is_trainable=True)
        load_heads(self, directory)

    def merge_and_unload(self) -> AutoModelForCausalLMWithILQLHeads:
        """Fold the trunk's adapter into its weights (PEFT's `merge_and_unload`) and drop PEFT: the
        result decodes the same and saves as a plain lmrl checkpoint, loadable without peft."""
        if not self.has_peft_adapter:
            raise ValueError("The trunk has no PEFT adapter to merge.")
        self.pretrained_model = self.pretrained_model.merge_and_unload()
        self.tie_weights()
        return self

    def tie_weights(self, missing_keys: set[str] | None = None, recompute_mapping: bool = True) -> None:
        """Tie the trunk's weights (e.g. a tied LM head to the input embedding) under their real names.

        `post_init` records the trunk's tied weights as `pretrained_model.` + the LM's own names
        (`lm_head.weight` -> `model.embed_tokens.weight`), but a PEFT trunk holds the LM at
        `pretrained_model.base_model.model`: the map is rebuilt from the module tree instead."""
        self.all_tied_weights_keys = self.get_expanded_tied_weights_keys(all_submodels=True)
        super().tie_weights(missing_keys, recompute_mapping=False)

    def freeze_trunk(self, base_model: str, fingerprint: str | None = None) -> AutoModelForCausalLMWithILQLHeads:
        """Freeze the trunk (its LM head included) and make the model a heads-only one: it saves its heads
        and settings only, naming `base_model` (a hub id or path) and its weights' `fingerprint`, and
        loading it reads the base from there (see `from_heads_checkpoint`)."""
        if self.has_peft_adapter:
            raise ValueError("freeze_trunk: the trunk has a PEFT adapter; a frozen trunk trains no adapter. "
                             "Merge it first (merge_and_unload) and save that as the base model.")
        self.pretrained_model.requires_grad_(False)
        self.config.base_model = str(base_model)
        self.config.base_fingerprint = fingerprint
        return self

    def behavior_logits(self, logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """pi_beta's scores: the LM's `logits` plus the behaviour head's correction (when it has one)."""
        if self.behavior_head is None:
            return logits
        return logits + self.behavior_head(hidden, self.get_output_embeddings().weight).to(logits.dtype)

    def _init_weights(self, module):
        if isinstance(module, (TiedQHead, UntiedQHead, ValueHead)):
            std = getattr(self.config.text_config, "initializer_range", 0.02)
            for layer in module.mlp:
                if isinstance(layer, nn.Linear):
                    init.normal_(layer.weight, mean=0.0, std=std)
                    init.zeros_(layer.bias)
            if isinstance(module, TiedQHead):
                init.zeros_(module.mlp[-1].weight)
                init.zeros_(module.bias)

    @torch.no_grad()
    def reset_heads(self) -> None:
        """Re-initialise Q and V heads and copy Q into the targets."""
        behavior = () if self.behavior_head is None else (self.behavior_head,)
        for module in (*self.q_heads, self.v_head, *behavior):
            for layer in module.mlp:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
            if isinstance(module, TiedQHead):
                module.mlp[-1].weight.zero_()
                module.mlp[-1].bias.zero_()
                module.bias.zero_()
        self._sync_target_heads()

    def _sync_target_heads(self) -> None:
        if self.target_q_heads is not None:
            self.target_q_heads.load_state_dict(self.q_heads.state_dict())

    def add_target_heads(self) -> None:
        """Give a model built without target heads (e.g. trained by Monte-Carlo regression) Polyak target
        copies of its current Q heads, as ILQL's TD learning needs (`config.target_heads` becomes True)."""
        if self.target_q_heads is None:
            self.target_q_heads = self._copy_of_q_heads()
            self.config.target_heads = True

    def remove_target_heads(self) -> None:
        """Drop the target heads (Monte-Carlo regression has no use for them); `config.target_heads` becomes False."""
        self.target_q_heads = None
        self.config.target_heads = False

    @torch.no_grad()
    def start_heads_at(self, value: float) -> None:
        """Make Q (and its targets) and V start at `value` for every token and state.

        Trainers call this on fresh heads with the lowest return in the data (pessimistic start):
        tokens the data never takes then stay valued below the data's actions instead of at 0, which
        with negative rewards would make every unseen token look best.
        """
        for head in (*self.q_heads, self.v_head):
            head.mlp[-1].weight.zero_()  # the output no longer depends on the state...
            head.mlp[-1].bias.zero_()
            (head.bias if isinstance(head, TiedQHead) else head.mlp[-1].bias).fill_(value)  # ...it is `value`
        self._sync_target_heads()
        self.heads_are_fresh = False

    @torch.no_grad()
    def update_target_heads(self, alpha: float) -> None:
        """Polyak step `Q^ <- (1 - alpha) Q^ + alpha Q` (element-wise, so it also works on shards)."""
        if self.target_q_heads is None:
            raise ValueError("This model was built without target heads (config.target_heads=False, as Monte-Carlo "
                             "regression builds it); call model.add_target_heads() before TD learning.")
        polyak_update_(self.target_q_heads, self.q_heads, alpha)

    # ---------------------------------------------------------------- plumbing for generate()
    def get_input_embeddings(self):
        return self.pretrained_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.pretrained_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.pretrained_model.get_output_embeddings()

    def get_decoder(self):
        return self.pretrained_model.get_decoder()

    def prepare_inputs_for_generation(self, *args, **kwargs):
        return self.pretrained_model.prepare_inputs_for_generation(*args, **kwargs)

    def _set_gradient_checkpointing(self, *args, **kwargs):
        return self.pretrained_model._set_gradient_checkpointing(*args, **kwargs)

    # ---------------------------------------------------------------- heads
    def _q(self, heads: nn.ModuleList, hidden: torch.Tensor, token_ids: torch.Tensor | None) -> torch.Tensor:
        embedding = self.get_output_embeddings().weight
        hidden = hidden.to(next(heads.parameters()).dtype)  # the fp32 targets read a bf16/fp16 trunk too
        return torch.stack([head(hidden, embedding, token_ids) for head in heads])  # [K, ..., k or V]

    def min_q(self, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`min_k Q_k(s, .)` for the given tokens [..., k] or the whole vocabulary [..., V].

        Without autograd, tied heads and given tokens (decoding) run stacked: one matmul per layer for
        all heads ([`StackedTiedQHeads`])."""
        if token_ids is not None and not torch.is_grad_enabled() and isinstance(self.q_heads[0], TiedQHead):
            return self._stacked_q_heads.min_q(self.q_heads, hidden, self.get_output_embeddings().weight, token_ids)
        return self._q(self.q_heads, hidden, token_ids).min(dim=0).values

    def guide(self, logits: torch.Tensor, hidden: torch.Tensor, inplace: bool = False, **overrides) -> torch.Tensor:
        """Guided next-token scores for base `logits` [..., V] at states `hidden` [..., h].

        Settings come from the config; `overrides` (beta, advantage_clip, guidance_top_k,
        guidance_top_p) replace them for this call. `inplace=True` may write the scores into fp32
        `logits` (see `guided_scores`)."""
        settings = {key: getattr(self.config, key) for key in DECODING_FIELDS} | overrides
        return guided_scores(logits, lambda ids: self.min_q(hidden, ids), self.v_head(hidden), **settings,
                             inplace=inplace)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        action_mask: torch.Tensor | None = None,
        compute_q_logits: bool = True,
        full_logits: bool = False,
        trunk_hidden_states: torch.Tensor | None = None,
        past_key_values=None,
        **kwargs,
    ) -> CausalLMOutputWithPast | ILQLOutput:
        """`cache` is the KV cache (`past_key_values` before transformers 5.24; either name works).

        Inference (no `action_mask`): logits are the guided scores (raw when `beta == 0`), computed
        for the positions `logits_to_keep` selects (generate(): the last one only); Q and V heads run
        on those positions only.

        Training (`action_mask` [B, T] given): returns an [`ILQLOutput`]; `compute_q_logits=False`
        skips the vocabulary-wide Q used only by the CQL term; `full_logits=True` materializes the
        LM's logits at every position instead of keeping them factored at the action states.
        `trunk_hidden_states` [B, T, h]: the frozen trunk's last hidden states for these tokens (from a
        feature cache); the trunk is then not run at all.
        """
        kwargs.pop("return_dict", None)
        kwargs.pop("output_hidden_states", None)
        if past_key_values is not None:  # named, so that generate() before 5.24 accepts a cache passed to it
            kwargs["past_key_values"] = past_key_values
        cache = pop_cache(kwargs, cache)
        if position_ids is not None:  # generate() derives them from the left padding; pass them on
            kwargs["position_ids"] = position_ids
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, CACHE_KEY: cache,
                  "inputs_embeds": inputs_embeds, "labels": labels, "use_cache": use_cache, **kwargs}
        if action_mask is not None:
            if trunk_hidden_states is not None:
                return self._cached_training_outputs(input_ids, trunk_hidden_states, action_mask, compute_q_logits)
            return self._training_outputs(inputs, action_mask, compute_q_logits, full_logits)

        decoder = self._behavior_decoder() if labels is None else None
        if decoder is not None:  # pi_beta's logits in one projection: W (h + g(h)) + b
            return self._fused_behavior_forward(decoder, inputs, logits_to_keep)
        if self._base_accepts_logits_to_keep:
            inputs["logits_to_keep"] = logits_to_keep
        out = self.pretrained_model(**inputs, output_hidden_states=True, return_dict=True)
        logits = out.logits
        if self.config.beta != 0 or self.behavior_head is not None:
            hidden = out.hidden_states[-1]  # [B, T, h], after the final norm
            kept = slice_logits_to_keep(hidden, logits_to_keep) if self._base_accepts_logits_to_keep else hidden
            logits = self.behavior_logits(logits, kept)
            if self.config.beta != 0:
                logits = self.guide(logits, kept, inplace=True).to(logits.dtype)  # the LM's own logits: reused
        return CausalLMOutputWithPast(
            loss=out.loss,
            logits=logits,
            **{CACHE_KEY: output_cache(out)},
            hidden_states=out.hidden_states if self.config.output_hidden_states else None,
            attentions=getattr(out, "attentions", None),
        )

    def _behavior_decoder(self):
        """The trunk's decoder when the behaviour head's correction can share the LM's output projection
        (a plain linear output layer, no PEFT adapter): the LM's logits are W h + b, the correction W g(h) + b',
        so pi_beta's are one projection of h + g(h) instead of two over the vocabulary."""
        if self.behavior_head is None or self.has_peft_adapter or getattr(self, "_behavior_fused", None) is False:
            return None
        decoder = decoder_of(self.pretrained_model) if linear_output_layer(self.pretrained_model) else None
        if decoder is None:
            self._behavior_fused = False  # a plain bool: remembered, never a submodule
            return None
        return decoder

    def _fused_behavior_forward(self, decoder, inputs, logits_to_keep) -> CausalLMOutputWithPast:
        inputs = {key: value for key, value in inputs.items() if key != "labels"}
        out = decoder(**inputs, return_dict=True)
        hidden = slice_logits_to_keep(out.last_hidden_state, logits_to_keep)
        head = self.get_output_embeddings()
        states = hidden.to(self.behavior_head.mlp[0].weight.dtype)
        features = hidden + self.behavior_head.features(states).to(hidden.dtype)
        bias = self.behavior_head.bias if head.bias is None else self.behavior_head.bias + head.bias
        logits = nn.functional.linear(features, head.weight, bias.to(hidden.dtype))
        if self.config.beta != 0:
            logits = self.guide(logits, hidden, inplace=True).to(logits.dtype)
        return CausalLMOutputWithPast(
            logits=logits,
            **{CACHE_KEY: output_cache(out)},
            hidden_states=out.hidden_states if self.config.output_hidden_states else None,
            attentions=getattr(out, "attentions", None),
        )

    def _training_outputs(self, inputs, action_mask, compute_q_logits, full_logits) -> ILQLOutput:
        steps = action_mask[:, 1:].bool()  # [B, T-1]: the N action states
        out, hidden, policy_logits = self._policy_logits(self.pretrained_model, steps, full_logits, **inputs)
        if self.behavior_head is not None:
            policy_logits = self._behavior_policy_logits(hidden[:, :-1][steps], policy_logits)
        return self._head_outputs(inputs["input_ids"], hidden, steps, compute_q_logits, policy_logits,
                                  out.logits, output_cache(out))

    def _cached_training_outputs(self, input_ids, hidden, action_mask, compute_q_logits) -> ILQLOutput:
        """The training outputs from the frozen trunk's cached hidden states: only the heads run."""
        steps = action_mask[:, 1:].bool()
        hidden = hidden.to(self.v_head.mlp[0].weight.dtype)
        states = hidden[:, :-1][steps]  # [N, h]
        head = linear_output_layer(self.pretrained_model)
        if head is None:
            raise ValueError(f"{type(self.pretrained_model).__name__}'s logits are not a plain linear map of its last "
                             "hidden state (a soft-capped or scaled output), so they cannot be computed from cached "
                             "hidden states: train this model without feature_cache.")
        policy_logits = ProjectedLogits(states, head.weight.detach(), None if head.bias is None else head.bias.detach())
        if self.behavior_head is not None:
            policy_logits = self._behavior_policy_logits(states, policy_logits)
        return self._head_outputs(input_ids, hidden, steps, compute_q_logits, policy_logits, None, None)

    def _behavior_policy_logits(self, states: torch.Tensor, logits: ProjectedLogits | torch.Tensor):
        """pi_beta's scores at the action states [N, V]: the LM's plus the behaviour head's, kept factored
        (one projection over [h, g(h)] when the LM's are factored; W_E stays fixed)."""
        head = self.behavior_head
        g = head.features(states)
        embedding = self.get_output_embeddings().weight.detach()
        if not isinstance(logits, ProjectedLogits):
            return logits + head.scores(g, embedding).to(logits.dtype)
        if logits.weight is embedding or logits.weight.data_ptr() == embedding.data_ptr():  # a tied LM head
            features, weight = logits.features + g.to(logits.features.dtype), logits.weight
        else:
            features = torch.cat([logits.features, g.to(logits.features.dtype)], dim=-1)
            weight = torch.cat([logits.weight, embedding.to(logits.weight.dtype)], dim=-1)
        bias = head.bias if logits.bias is None else head.bias + logits.bias
        return ProjectedLogits(features, weight, bias)

    def _head_outputs(self, input_ids, hidden, steps, compute_q_logits, policy_logits, logits, cache) -> ILQLOutput:
        states = hidden[:, :-1]  # [B, T-1, h]: the state each next token is chosen in
        actions = input_ids[:, 1:, None]  # [B, T-1, 1]
        embedding = self.get_output_embeddings().weight
        features = [head.features(states) for head in self.q_heads]  # computed once per head
        q_values = torch.stack(
            [head.scores(f, embedding, actions).squeeze(-1) for head, f in zip(self.q_heads, features)]
        )  # [K, B, T-1]
        target_q_values = None  # [K, B, T-1], without target heads (Monte-Carlo regression): None
        if self.target_q_heads is not None:
            with torch.no_grad():
                target_q_values = self._q(self.target_q_heads, states, actions).squeeze(-1)
        q_logits = None
        if compute_q_logits:  # [N, V] per head, factored: the CQL loss computes it chunk by chunk
            q_logits = tuple(head.projected(f[steps], embedding) for head, f in zip(self.q_heads, features))
        return ILQLOutput(
            logits=logits,  # [B, 1, V] when factored: kept so that DDP sees the output layer used
            q_values=q_values,
            target_q_values=target_q_values,
            v_values=self.v_head(hidden),  # [B, T]
            q_logits=q_logits,
            policy_logits=policy_logits,
            hidden_states=hidden,
            **{CACHE_KEY: cache},
        )


def _unwrap_peft(model: nn.Module) -> nn.Module:
    return model.get_base_model() if is_peft_model(model) else model


AutoConfig.register(ILQLHeadsConfig.model_type, ILQLHeadsConfig)
AutoModelForCausalLM.register(ILQLHeadsConfig, AutoModelForCausalLMWithILQLHeads)
