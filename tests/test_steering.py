"""Steering a frozen LM with a separately trained small value model, from a recipe: the value model is a
tiny model built for the frozen LM's tokenizer (`tiny_model` + `tokenizer_name_or_path`), trained with
ILQL, and `lmrl eval` with `steer_model` decodes the frozen LM through ValueGuidedLogitsProcessor."""

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmrl import ValueGuidedLogitsProcessor
from lmrl.cli import main
from lmrl.data.collator import left_pad
from lmrl.data.tokenization import encode_prompt, pad_token_id
from lmrl.evaluation import load_policy_model
from lmrl.generation import GeneratePolicy
from lmrl.models.tiny import tiny_for_tokenizer
from lmrl.recipes import parse_recipe, read_recipe

ROOT = Path(__file__).resolve().parents[1]
MAZE = ROOT / "recipes" / "maze"


@pytest.fixture(scope="module")
def frozen_and_value(tmp_path_factory):
    """A 'frozen' LM (a tiny BC model, 3 steps) and a value model trained for its tokenizer (3 ILQL steps)."""
    tmp = tmp_path_factory.mktemp("steer")
    data = tmp / "maze.jsonl"
    assert main(["make-data", "maze", "--episodes", "24", "--out", str(data)]) == 0
    frozen = tmp / "frozen"
    assert main(["train", str(MAZE / "bc.yaml"), "--dataset", str(data), "--output_dir", str(frozen),
                 "--max_steps", "3", "--disable_tqdm", "true"]) == 0
    value = tmp / "value"
    overrides = ["--dataset", str(data), "--output_dir", str(value), "--max_steps", "3", "--disable_tqdm", "true",
                 "--tiny_model", "{architecture: llama, hidden_size: 32, num_layers: 1, tie_word_embeddings: true}",
                 "--tokenizer_name_or_path", str(frozen), "--steer_model", str(frozen)]
    assert main(["train", str(MAZE / "ilql.yaml"), *overrides]) == 0
    return data, frozen, value, overrides


def test_the_value_model_is_a_tiny_model_of_another_architecture_on_the_frozen_lms_tokenizer(frozen_and_value):
    _, frozen, value, _ = frozen_and_value
    model, tokenizer = load_policy_model(value, "ilql")
    assert model.pretrained_model.config.model_type == "llama" and model.pretrained_model.config.hidden_size == 32
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(frozen).get_vocab()
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)


def test_a_tiny_model_for_a_given_tokenizer_refuses_a_vocab_size(tokenizer):
    with pytest.raises(ValueError, match="vocab_size=512 sizes a tokenizer trained on the data.*Drop vocab_size"):
        tiny_for_tokenizer(tokenizer, vocab_size=512)


def test_the_steered_policy_decodes_as_generate_with_the_processor_told_the_padding(frozen_and_value):
    _, frozen, value, _ = frozen_and_value
    lm = AutoModelForCausalLM.from_pretrained(frozen).eval()
    tokenizer = AutoTokenizer.from_pretrained(frozen)
    value_model, _ = load_policy_model(value, "ilql")
    value_model.config.guidance_top_k = 0  # the whole vocabulary: the untrained-ish values change the moves
    value_model.config.beta = 50.0
    conversations = [[{"role": "system", "content": "Find the goal at (1, 1). Moves: up, down, left, right."},
                      {"role": "user", "content": text}]
                     for text in ("You are at (3, 1).", "You are at (1, 4). Walls: up.", "You are at (2, 2).")]
    steered = GeneratePolicy(lm, tokenizer, max_new_tokens=4, steer=value_model)(conversations)
    plain = GeneratePolicy(lm, tokenizer, max_new_tokens=4)(conversations)

    ids, mask = left_pad([encode_prompt(tokenizer, c) for c in conversations], pad_token_id(tokenizer))
    by_hand = lm.generate(input_ids=ids, attention_mask=mask, pad_token_id=pad_token_id(tokenizer), max_new_tokens=4,
                          do_sample=False,
                          logits_processor=[ValueGuidedLogitsProcessor(value_model, attention_mask=mask)])
    texts = [t.strip() for t in tokenizer.batch_decode(by_hand[:, ids.shape[1]:], skip_special_tokens=True)]
    assert steered == texts
    assert steered != plain  # beta 50 over the whole vocabulary moves something
    value_model.config.beta = 0.0
    assert GeneratePolicy(lm, tokenizer, max_new_tokens=4, steer=value_model)(conversations) == plain


def test_lmrl_eval_steers_the_frozen_lm_and_beta_zero_is_the_frozen_lm_alone(frozen_and_value, tmp_path):
    data, frozen, value, overrides = frozen_and_value
    recipe = str(MAZE / "ilql.yaml")
    plain, steered, unsteered = tmp_path / "plain", tmp_path / "steered", tmp_path / "beta0"
    assert main(["eval", str(MAZE / "bc.yaml"), "--checkpoint", str(frozen), "--episodes", "4", "--out", str(plain),
                 "--dataset", str(data), "--seed", "20000"]) == 0
    assert main(["eval", recipe, *overrides, "--checkpoint", str(value), "--episodes", "4", "--out", str(steered),
                 "--seed", "20000"]) == 0
    assert main(["eval", recipe, *overrides, "--checkpoint", str(value), "--episodes", "4", "--out", str(unsteered),
                 "--seed", "20000", "--beta", "0"]) == 0  # a decoding setting at eval replaces the saved one
    reports = {name: json.loads((path / "eval.json").read_text()) for name, path in
               (("plain", plain), ("steered", steered), ("beta0", unsteered))}
    assert all(r["first_seed"] == 20000 and r["episodes"] == 4 for r in reports.values())
    assert reports["beta0"]["examples"] == reports["plain"]["examples"]
    assert reports["beta0"]["mean_return"] == reports["plain"]["mean_return"]


def test_steering_an_lm_with_another_tokenizer_is_an_error_in_words(frozen_and_value, tmp_path, capsys):
    data, _, value, overrides = frozen_and_value
    other = tmp_path / "other"
    assert main(["train", str(MAZE / "bc.yaml"), "--dataset", str(data), "--output_dir", str(other),
                 "--max_steps", "1", "--tiny_model", "{architecture: gpt2, hidden_size: 32, num_layers: 1, "
                 "vocab_size: 280}", "--disable_tqdm", "true"]) == 0
    capsys.readouterr()
    code = main(["eval", str(MAZE / "ilql.yaml"), *overrides, "--checkpoint", str(value), "--episodes", "1",
                 "--steer_model", str(other)])
    assert code == 2 and "have different tokenizers" in capsys.readouterr().err


def test_eval_decoding_settings_replace_the_saved_ones_and_only_those(frozen_and_value):
    _, _, value, overrides = frozen_and_value
    _, config = parse_recipe(read_recipe(MAZE / "ilql.yaml", [*overrides, "--beta", "3.5", "--guidance_top_k", "7"]))
    model, _ = load_policy_model(value, "ilql", config=config)
    assert model.config.beta == 3.5 and model.config.guidance_top_k == 7
    saved, _ = load_policy_model(value, "ilql")
    assert saved.config.beta == 20.0 and saved.config.guidance_top_k == 4  # the recipe's at training
