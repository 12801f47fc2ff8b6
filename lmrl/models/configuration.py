"""Configuration of a causal LM with ILQL heads."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

HEAD_TYPES = ("tied", "untied")

# Settings that shape the saved weights: a checkpoint cannot be loaded with other values.
STRUCTURAL_FIELDS = ("head_type", "num_q_heads")
# Settings of decoding only: safe to override when loading.
DECODING_FIELDS = ("beta", "advantage_clip", "guidance_top_k", "guidance_top_p")
HEAD_FIELDS = STRUCTURAL_FIELDS + DECODING_FIELDS


class ILQLHeadsConfig(PreTrainedConfig):
    """Config of [`AutoModelForCausalLMWithILQLHeads`]: the base LM's config plus the head settings.

    The base config lives in `text_config`, so `get_text_config()` (and with it `generate()`'s cache
    construction) sees the base model's layers and heads.

    Args:
        text_config: config of the wrapped causal LM (any `AutoConfig`, or a dict with `model_type`).
        head_type: `"tied"` (Q = W_E g(h) + b, a few percent of the base parameters) or `"untied"`
            (an MLP h -> 2h -> V per head, as in the reference implementations).
        num_q_heads: number of online Q heads (2: clipped double Q).
        beta: strength of guidance at decoding: `log pi_beta + beta * clip(min_k Q_k - V)`. `0` decodes
            exactly as the base model.
        advantage_clip: `c` in the clip above.
        guidance_top_k: compute Q only for the base policy's top-k tokens (others are dropped);
            `0` guides over the full vocabulary.
        guidance_top_p: nucleus filter applied inside the top-k before guidance (`1.0` keeps all).

    Example:
        ```python
        >>> from transformers import GPT2Config
        >>> from lmrl.models import ILQLHeadsConfig
        >>> config = ILQLHeadsConfig(text_config=GPT2Config(n_layer=2, n_embd=64, n_head=2), beta=4.0)
        >>> config.get_text_config().n_layer
        2
        ```
    """

    model_type = "lmrl_ilql"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt2")}

    text_config: dict | PreTrainedConfig | None = None
    head_type: str = "tied"
    num_q_heads: int = 2
    beta: float = 4.0
    advantage_clip: float = 10.0
    guidance_top_k: int = 50
    guidance_top_p: float = 1.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type must be one of {HEAD_TYPES}, got {self.head_type!r}.")
        if self.num_q_heads < 1:
            raise ValueError(f"num_q_heads must be at least 1, got {self.num_q_heads}.")
        if self.guidance_top_k < 0:
            raise ValueError(f"guidance_top_k must be >= 0 (0 = full vocabulary), got {self.guidance_top_k}.")
        if not 0.0 < self.guidance_top_p <= 1.0:
            raise ValueError(f"guidance_top_p must be in (0, 1], got {self.guidance_top_p}.")
        if self.advantage_clip <= 0:
            raise ValueError(f"advantage_clip must be positive, got {self.advantage_clip}.")
