"""GGUF files (llama.cpp's format) as plain transformers models that train and save.

transformers reads a GGUF file with `from_pretrained(folder, gguf_file=name)` (the `gguf` package,
`pip install lmrl[gguf]`) and dequantizes every tensor to float on load, but it keeps the model marked
as quantized: `save_pretrained` then refuses ("quantized with gguf and is not serializable") and
`Trainer` refuses to fine-tune it without an adapter. `drop_gguf_quantization` checks that every
weight is a plain float tensor and removes the marker; `convert_gguf` writes a GGUF model and its
tokenizer (with the chat template) once as an ordinary safetensors checkpoint, which then loads fast
and works everywhere a hub id does (LoRA adapters name their base by that path).

Example:
    ```python
    >>> from transformers import AutoModelForCausalLM
    >>> from lmrl.models.gguf import convert_gguf, drop_gguf_quantization
    >>> model = drop_gguf_quantization(AutoModelForCausalLM.from_pretrained("dir", gguf_file="m.gguf"))
    >>> model.save_pretrained("plain")                       # works: the weights were float all along
    >>> convert_gguf("dir/m.gguf", "converted")              # model + tokenizer + chat template
    ```
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils.quantization_config import QuantizationMethod


def is_gguf_model(model: torch.nn.Module) -> bool:
    """Whether `model` was loaded from a GGUF file and still carries transformers' GGUF quantizer."""
    return getattr(model, "quantization_method", None) == QuantizationMethod.GGUF


def drop_gguf_quantization(model: PreTrainedModel) -> PreTrainedModel:
    """Unmark a model loaded from a GGUF file as quantized, so that it saves and trains like any other.

    Only done after checking that every parameter is a plain floating-point tensor (transformers
    dequantizes GGUF weights on load); a model that is not from a GGUF file is returned unchanged."""
    if not is_gguf_model(model):
        return model
    packed = [name for name, p in model.named_parameters()
              if type(p.data) is not torch.Tensor or not p.is_floating_point()]
    if packed:
        raise ValueError(
            f"{model.name_or_path}: loaded from a GGUF file, but {len(packed)} weights are still quantized "
            f"(e.g. {packed[0]}), so they cannot be saved as plain tensors. Load it with a transformers release "
            "that dequantizes GGUF on load."
        )
    for attribute in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attribute):
            delattr(model, attribute)
    model.is_quantized = False
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config._is_quantized = False
    return model


def load_gguf_causal_lm(gguf_path: str | Path, **kwargs) -> PreTrainedModel:
    """The causal LM in the GGUF file `gguf_path`, dequantized and unmarked (see `drop_gguf_quantization`)."""
    gguf_path = _gguf_file(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, **kwargs)
    return drop_gguf_quantization(model)


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write the GGUF file's model (float32 safetensors), tokenizer and chat template to `out_dir`.

    The folder is written under a temporary name and renamed when complete, so an interrupted
    conversion never leaves a folder that looks finished."""
    gguf_path, out_dir = _gguf_file(gguf_path), Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model = load_gguf_causal_lm(gguf_path, dtype=torch.float32)
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).save_pretrained(staging)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def _gguf_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such GGUF file.")
    if path.suffix != ".gguf":
        raise ValueError(f"{path}: not a .gguf file. Give the path of the model's .gguf file.")
    return path
