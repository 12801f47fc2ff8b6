"""Checkpoints of an ILQL-heads model that do not copy the base weights: save, load and resume.

A trunk with a PEFT adapter (e.g. LoRA) is saved as, side by side:
    adapter_config.json, adapter_model.safetensors   the adapter (PEFT's own format; the config names the base)
    ilql_heads.safetensors                            Q, target-Q and V heads (and the behaviour head), in full
    config.json                                       the head and decoding settings (and the base's config)
and loading reads the base from `base_model_name_or_path`. A frozen trunk (heads trained on a feature
cache) is saved as `ilql_heads.safetensors` and `config.json` only; the config's `base_model` names the
base and `base_fingerprint` is a digest of its weights, so loading the heads onto another base is refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.utils import cached_file
from transformers.utils.peft_utils import find_adapter_config_file

from .configuration import HEAD_FIELDS

HEADS_WEIGHTS = "ilql_heads.safetensors"
HEAD_MODULES = ("q_heads", "target_q_heads", "v_head", "behavior_head")
# keyword arguments of `from_pretrained` that locate files on disk or on the hub
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder")


def is_peft_model(module: torch.nn.Module) -> bool:
    """Whether `module` is a `peft.PeftModel` (without importing peft when it is not loaded)."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(module, PeftModel)


def adapter_config_file(source, **kwargs) -> str | None:
    """Path of `adapter_config.json` when `source` (a local directory or hub id) is a PEFT adapter."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    return find_adapter_config_file(str(source), **{k: kwargs[k] for k in HUB_KWARGS if k in kwargs})


def trainable_parameters(model: torch.nn.Module) -> dict[str, int | float]:
    """Trainable and total parameter counts (shared tensors counted once) and their ratio."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total, "trainable_fraction": trainable / total}


def save_adapter_checkpoint(model: PreTrainedModel, directory: str | Path, state_dict: dict | None = None,
                            is_main_process: bool = True) -> None:
    """Save the trunk's adapter, the heads and the settings of an ILQL-heads model to `directory`.

    `state_dict` (as the `Trainer` passes it, e.g. gathered under FSDP) defaults to the model's own."""
    if not is_main_process:
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_dict = model.state_dict() if state_dict is None else state_dict
    prefix = model.base_model_prefix + "."
    trunk = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    heads = {k: v.detach().contiguous() for k, v in state_dict.items() if k.split(".")[0] in HEAD_MODULES}
    model.pretrained_model.save_pretrained(str(directory), state_dict=trunk, safe_serialization=True)
    save_file(heads, str(directory / HEADS_WEIGHTS), metadata={"format": "pt"})
    model.config.save_pretrained(directory)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(directory)


def save_heads_checkpoint(model: PreTrainedModel, directory: str | Path, state_dict: dict | None = None,
                          is_main_process: bool = True) -> None:
    """Save the heads and the settings of a model whose trunk is frozen (`config.base_model` set), without
    the base weights."""
    if not is_main_process:
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_dict = model.state_dict() if state_dict is None else state_dict
    heads = {k: v.detach().contiguous() for k, v in state_dict.items() if k.split(".")[0] in HEAD_MODULES}
    save_file(heads, str(directory / HEADS_WEIGHTS), metadata={"format": "pt"})
    model.config.save_pretrained(directory)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(directory)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A digest of a model's weights: every tensor's name, shape, dtype and bytes (tied tensors once)."""
    hasher = hashlib.sha256()
    seen = set()
    for name, tensor in sorted(model.state_dict().items()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        data = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        hasher.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return hasher.hexdigest()[:16]


def from_heads_checkpoint(cls, source, config, base_model=None, **kwargs):
    """Build base + heads from a heads-only directory (`save_heads_checkpoint`). `base_model` (a path, an id
    or a loaded causal LM) replaces the base the config names; either way its weights must be the ones
    the heads were trained on."""
    base = base_model if base_model is not None else config.base_model
    where = f"{source}: its heads were trained on {config.base_model}"
    if isinstance(base, (str, os.PathLike)):
        # the Auto classes' own private keywords (e.g. `_from_auto`) are for this checkpoint's loading, not the base's
        base_kwargs = {k: v for k, v in kwargs.items()
                       if k not in ("subfolder", "config", "output_loading_info") and not k.startswith("_")}
        try:
            base = AutoModelForCausalLM.from_pretrained(str(base), **base_kwargs)
        except OSError as err:
            raise ValueError(f"{where}, which could not be loaded ({err}). Pass the base model's path as "
                             "base_model=... (from_pretrained) and load again.") from None
    if config.base_fingerprint and weights_fingerprint(base) != config.base_fingerprint:
        raise ValueError(f"{where} (weights fingerprint {config.base_fingerprint}), and the base model given has other "
                         f"weights (fingerprint {weights_fingerprint(base)}). Load the heads onto the model they were "
                         "trained on, or train heads for this one.")
    model = cls.from_causal_lm(base, **{key: getattr(config, key) for key in HEAD_FIELDS})
    model.freeze_trunk(config.base_model, config.base_fingerprint)
    load_heads(model, source)
    model.heads_are_fresh = False
    return model.eval()


def load_heads(model: torch.nn.Module, source, **kwargs) -> None:
    """Load the heads saved by `save_adapter_checkpoint` or `save_heads_checkpoint` into `model`."""
    path = cached_file(str(source), HEADS_WEIGHTS, **{k: kwargs[k] for k in HUB_KWARGS if k in kwargs})
    weights = load_file(path)
    expected = {k for k in model.state_dict() if k.split(".")[0] in HEAD_MODULES}
    if set(weights) != expected:
        raise ValueError(
            f"{path}: the saved heads do not match this model (missing {sorted(expected - set(weights))[:4]}, "
            f"unexpected {sorted(set(weights) - expected)[:4]}). Load it with the head_type it was trained with."
        )
    model.load_state_dict(weights, strict=False)


def from_adapter_checkpoint(cls, source, adapter_config: str, **kwargs):
    """Build base + adapter + heads from a directory written by `save_adapter_checkpoint`.

    The heads keep their saved settings (the caller applies overrides); a plain PEFT adapter of a causal
    LM (no ILQL config beside it) gets fresh heads."""
    from peft import PeftConfig, PeftModel

    is_trainable = kwargs.pop("is_trainable", False)
    hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
    peft_config = PeftConfig.from_pretrained(str(source), **hub)
    base_id = peft_config.base_model_name_or_path
    if not base_id:
        raise ValueError(
            f"{adapter_config} names no base model (base_model_name_or_path is empty: the adapter was trained on a "
            "model built in memory). Save the base model, put its path in base_model_name_or_path, and load again."
        )
    if os.path.isdir(base_id) and not os.path.isfile(os.path.join(base_id, "config.json")):
        raise ValueError(
            f"{adapter_config} names {base_id} as its base model, which holds no config.json (a folder of GGUF "
            "files?). Convert the base once to a plain checkpoint (lmrl.models.gguf.convert_gguf), put that folder "
            "in base_model_name_or_path, and load again."
        )
    base_kwargs = {k: v for k, v in kwargs.items() if k not in ("subfolder", "config") and not k.startswith("_")}
    base = AutoModelForCausalLM.from_pretrained(base_id, **base_kwargs)
    trunk = PeftModel.from_pretrained(base, str(source), is_trainable=is_trainable, **hub)
    try:
        saved = AutoConfig.from_pretrained(str(source), **hub)
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, cls.config_class):
        return cls.from_causal_lm(trunk).eval()
    model = cls.from_causal_lm(trunk, **{key: getattr(saved, key) for key in HEAD_FIELDS})
    load_heads(model, source, **hub)
    model.heads_are_fresh = False
    return model.eval()
