"""Configuration of a causal LM with ILQL heads."""

from __future__ import annotations

import logging
import math

from transformers import AutoConfig, PreTrainedConfig

from ..compat import SubConfigSpec
from .heads import default_hidden_features

HEAD_TYPES = ("tied", "untied")

# Settings that shape the saved weights: a checkpoint cannot be loaded with other values.
STRUCTURAL_FIELDS = ("head_type", "num_q_heads", "target_heads", "head_hidden_size", "behavior_adapter")
# Settings of decoding only: safe to override when loading.
DECODING_FIELDS = ("beta", "advantage_clip", "guidance_top_k", "guidance_top_p")
HEAD_FIELDS = STRUCTURAL_FIELDS + DECODING_FIELDS

logger = logging.getLogger(__name__)


class ILQLHeadsConfig(PreTrainedConfig):
    """Config of [`AutoModelForCausalLMWithILQLHeads`]: the base LM's config plus the head settings.

    The base config lives in `text_config`, so `get_text_config()` (and with it `generate()`'s cache
    construction) sees the base model's layers and heads.

    Args:
        text_config: config of the wrapped causal LM (any `AutoConfig`, or a dict with `model_type`).
        head_type: `"tied"` (Q = W_E g(h) + b, a few percent of the base parameters) or `"untied"`
            (an MLP h -> 2h -> V per head, as in the reference implementations).
        num_q_heads: number of online Q heads (2: clipped double Q).
        head_hidden_size: width of the Q and V heads' MLP hidden layer. `None` (the default) is twice the
            trunk's hidden size, as in the paper, and is written into the config as a number, so a saved
            config always carries the width (a saved `null` loads as the same 2h).
            A narrower one (e.g. a quarter of the hidden size: a rank-h/4 head) is a smaller head shape:
            7x fewer head parameters, cheaper decoding at batch 1; see docs/benchmarks.md, "The head
            shape", for what it did to task scores.
        target_heads: keep Polyak target copies of the Q heads (ILQL's TD learning needs them;
            Monte-Carlo regression does not, and its models are built without them).
        beta: strength of guidance at decoding: `log pi_beta + beta * clip(min_k Q_k - V)`, finite and
            `>= 0`. `0` decodes exactly as the base model.
        advantage_clip: `c` in the clip above (`> 0`).
        guidance_top_k: compute Q only for the base policy's top-k tokens (others are dropped);
            `0` guides over the full vocabulary.
        guidance_top_p: nucleus filter applied inside the top-k before guidance (`1.0` keeps all).
        behavior_adapter: add a behaviour head, `logits + W_E g(h) + b` (starting at zero), trained by
            the BC term so that the guided rule's `pi_beta` is the data's policy when the trunk is frozen
            and its own LM head is not (docs/design.md, section 3: Heads).
        base_model: set on a heads-only checkpoint (the trunk was frozen, e.g. trained on a feature
            cache): the hub id or path of the base causal LM its heads read; `from_pretrained` loads the
            base from it and refuses another. `base_fingerprint`: a digest of that base's weights.

    Example:
        ```python
        >>> from transformers import GPT2Config
        >>> from lmrl.models import ILQLHeadsConfig
        >>> config = ILQLHeadsConfig(text_config=GPT2Config(n_layer=2, n_embd=64, n_head=2), beta=8.0)
        >>> config.get_text_config().n_layer
        2
        ```
    """

    model_type = "lmrl_ilql"
    if SubConfigSpec is not None:
        sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt2")}
    else:  # transformers before 5.21 (the vLLM serving environment): built in __post_init__
        sub_configs = {"text_config": AutoConfig}

    text_config: dict | PreTrainedConfig | None = None
    head_type: str = "tied"
    num_q_heads: int = 2
    head_hidden_size: int | None = None
    target_heads: bool = True
    beta: float = 4.0
    advantage_clip: float = 10.0
    guidance_top_k: int = 50
    guidance_top_p: float = 1.0
    behavior_adapter: bool = False
    base_model: str | None = None
    base_fingerprint: str | None = None

    def __post_init__(self, **kwargs):
        if SubConfigSpec is None and not isinstance(self.text_config, PreTrainedConfig):
            text_config = dict(self.text_config or {"model_type": "gpt2"})
            self.text_config = AutoConfig.for_model(text_config.pop("model_type"), **text_config)
        super().__post_init__(**kwargs)
        check_head_settings({key: getattr(self, key) for key in HEAD_FIELDS}, where="ILQLHeadsConfig")
        if self.head_hidden_size is None:
            self.head_hidden_size = default_hidden_features(self.get_text_config().hidden_size)


def check_head_settings(settings: dict, where: str) -> None:
    """Raise a `ValueError` naming `where`, the setting and its value when one of the head settings given
    is out of range.

    Only the keys present are checked (`None` values are skipped), so a trainer config can check the
    settings it overrides."""
    for key, value in settings.items():
        if key in _CHECKS and value is not None and not _CHECKS[key][0](value):
            raise ValueError(f"{where}: {key} {_CHECKS[key][1]}, got {value!r}.")


def apply_head_settings(config: ILQLHeadsConfig, settings: dict, where: str) -> None:
    """Override head settings of an existing model's `config` in place: the one way a trainer config, an
    evaluation recipe or `from_pretrained(..., beta=...)` changes a model's settings.

    Each value is range-checked; a decoding setting that changes is set and logged; a structural setting
    (`head_type`, `head_hidden_size`, ...) that differs from the model's is refused, since the model's
    head weights are shaped by it. `None` values keep the model's. `where` names who asks (e.g.
    `"ILQLConfig"`), for the log and the errors.

    Example:
        ```python
        >>> from transformers import GPT2Config
        >>> config = ILQLHeadsConfig(text_config=GPT2Config(n_layer=1, n_embd=8, n_head=2))
        >>> apply_head_settings(config, {"beta": 8.0, "guidance_top_k": 0}, where="my script")
        >>> config.beta, config.guidance_top_k
        (8.0, 0)
        ```
    """
    settings = {key: value for key, value in settings.items() if value is not None}
    unknown = sorted(set(settings) - set(HEAD_FIELDS))
    if unknown:
        raise ValueError(f"{where}: {', '.join(unknown)} is not a head setting; the head settings are "
                         f"{', '.join(HEAD_FIELDS)}.")
    check_head_settings(settings, where)
    for key, value in settings.items():
        current = getattr(config, key)
        if current == value:
            continue
        if key in STRUCTURAL_FIELDS:
            raise ValueError(
                f"{where} asks for {key}={value!r}, but the model given already has {key}={current!r} heads "
                f"(their weights are shaped that way). Leave {key} unset to keep the model's heads, or start "
                f"fresh heads with {key}={value!r} from the plain causal LM. Settings a trained model can "
                f"change: {', '.join(DECODING_FIELDS)}."
            )
        logger.info("%s sets %s=%r (the model had %r).", where, key, value, current)
        setattr(config, key, value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# setting -> (is the value allowed, what it must be)
_CHECKS = {
    "head_type": (lambda v: v in HEAD_TYPES, f"must be one of {HEAD_TYPES}"),
    "num_q_heads": (lambda v: _is_int(v) and v >= 1, "must be at least 1 (an integer)"),
    "head_hidden_size": (lambda v: _is_int(v) and v >= 1,
                         "must be at least 1 (an integer; None: twice the hidden size)"),
    "beta": (lambda v: _is_number(v) and math.isfinite(v) and v >= 0,
             "must be a finite number >= 0 (0 decodes as the base model; larger steers harder)"),
    "advantage_clip": (lambda v: _is_number(v) and v > 0, "must be a number > 0"),
    "guidance_top_k": (lambda v: _is_int(v) and v >= 0, "must be an integer >= 0 (0 = full vocabulary)"),
    "guidance_top_p": (lambda v: _is_number(v) and 0.0 < v <= 1.0, "must be in (0, 1]"),
    "behavior_adapter": (lambda v: isinstance(v, bool), "must be true or false"),
}
