"""Tiny models and tokenizers built locally, for the demo, tests and quick experiments on a CPU.

Real runs load a hub model with `from_pretrained("gpt2")`; these build the same classes from
configs, so every code path is the one a full-size model takes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from huggingface_hub.errors import StrictDataclassError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

EOS = "<|endoftext|>"
ARCHITECTURES = ("gpt2", "llama", "qwen2", "gpt_neox", "mistral")  # the ones tested

# A ChatML-style template: each message appends text, and assistant turns close with EOS.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    + EOS
    + "\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 512, chat_template: str | None = None, merge_across_spaces: bool = False
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style) trained on `texts`; EOS doubles as BOS and PAD.

    GPT-2's tokenizer first splits text into words, so no token spans a space. With
    `merge_across_spaces` a token may: a phrase the data repeats, such as a Wordle guess spelled
    letter by letter ("c r a n e"), can become one token."""
    specials = [EOS, "<|im_start|>"] if chat_template else [EOS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not merge_across_spaces)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tiny_config(tokenizer, architecture: str = "gpt2", hidden_size: int = 64, num_layers: int = 2, **overrides):
    """A small config of a real architecture ('gpt2', 'llama', 'qwen2', 'gpt_neox', 'mistral'), with
    `hidden_size // 32` attention heads (at least one). Impossible sizes are a `ValueError` naming the
    `tiny_model` field."""
    if architecture not in CONFIG_MAPPING:
        raise ValueError(f"tiny_model.architecture: {architecture!r} is not a transformers model type; use one of "
                         f"{', '.join(ARCHITECTURES)}.")
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"tiny_model.{name} must be an integer >= 1, got {value!r}.")
    given = next((key for key in ("n_head", "num_attention_heads") if key in overrides), None)
    heads = overrides[given] if given else max(1, hidden_size // 32)
    if isinstance(heads, int) and heads >= 1:
        if hidden_size % heads and given:
            raise ValueError(f"tiny_model.hidden_size={hidden_size} must be a multiple of tiny_model.{given}={heads} "
                             f"(the attention heads): use a multiple of {heads}, or drop {given}.")
        if hidden_size % heads:
            raise ValueError(f"tiny_model.hidden_size={hidden_size} must be a multiple of its {heads} attention heads "
                             "(hidden_size // 32): use a multiple of 32, e.g. 64.")
        if architecture != "gpt2" and (hidden_size // heads) % 2:
            raise ValueError(
                f"tiny_model.hidden_size={hidden_size} gives {architecture} attention heads of odd width "
                f"{hidden_size // heads} (hidden_size / {heads} heads), and rotary position embeddings need an even "
                "width: use a multiple of 32, e.g. 64.")
    vocab = len(tokenizer)
    common = {"vocab_size": vocab, "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
              "pad_token_id": tokenizer.pad_token_id}
    if architecture == "gpt2":
        kwargs = {"n_layer": num_layers, "n_embd": hidden_size, "n_head": max(1, hidden_size // 32),
                  "n_positions": 1024}
    else:
        kwargs = {"num_hidden_layers": num_layers, "hidden_size": hidden_size,
                  "intermediate_size": 2 * hidden_size, "num_attention_heads": max(1, hidden_size // 32),
                  "num_key_value_heads": max(1, hidden_size // 32), "max_position_embeddings": 1024}
    kwargs.update(common)
    kwargs.update(overrides)
    try:
        return AutoConfig.for_model(architecture, **kwargs)
    except (ValueError, TypeError, StrictDataclassError) as err:
        raise ValueError(f"tiny_model: transformers refuses a {architecture} config with hidden_size={hidden_size}, "
                         f"num_layers={num_layers}{_listed(overrides)}: {err}") from None


def tiny_causal_lm(tokenizer, architecture: str = "gpt2", hidden_size: int = 64, num_layers: int = 2,
                   **overrides) -> PreTrainedModel:
    """A randomly initialised causal LM of a real architecture, sized for a CPU."""
    config = tiny_config(tokenizer, architecture, hidden_size, num_layers, **overrides)
    try:
        return AutoModelForCausalLM.from_config(config)
    except (ValueError, TypeError, RuntimeError, ArithmeticError, IndexError) as err:
        # e.g. a negative intermediate_size, or an architecture that is no causal LM
        raise ValueError(f"tiny_model: no {architecture} causal LM can be built with hidden_size={hidden_size}, "
                         f"num_layers={num_layers}{_listed(overrides)}: {err}") from None


def _listed(overrides: dict) -> str:
    return "".join(f", {key}={value!r}" for key, value in overrides.items())


# characters of one text a tokenizer is trained on: its end (where the outcome is, as episodes are truncated
# from the left); a longer text adds no new tokens worth its memory
TEXT_CHARACTERS = 1 << 16


def episode_texts(rows) -> list[str]:
    """Every message text of a dataset of episodes (to train a tokenizer on), each cut to its last
    `TEXT_CHARACTERS` characters so that one huge message cannot fill the memory."""
    texts = []
    for row in rows:
        for key in ("messages", "prompt", "completion"):
            value = row.get(key)
            if isinstance(value, str):
                texts.append(value[-TEXT_CHARACTERS:])
            elif isinstance(value, list):
                texts += [m["content"][-TEXT_CHARACTERS:] for m in value
                          if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return texts


def build_tiny(rows, architecture: str = "gpt2", hidden_size: int = 64, num_layers: int = 2,
               vocab_size: int = 512, chat_template: bool = False, merge_across_spaces: bool = False, seed: int = 0,
               **overrides):
    """A tokenizer trained on the episodes' text (see `train_tokenizer`) and a fresh tiny model of
    `architecture` for it."""
    smallest = 256 + (2 if chat_template else 1)  # the byte alphabet and the special tokens
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < smallest:
        raise ValueError(f"tiny_model.vocab_size must be an integer >= {smallest} (256 byte tokens and the special "
                         f"tokens), got {vocab_size!r}.")
    if not isinstance(merge_across_spaces, bool):
        raise ValueError(f"tiny_model.merge_across_spaces must be true or false, got {merge_across_spaces!r}.")
    tokenizer = train_tokenizer(episode_texts(rows), vocab_size, CHAT_TEMPLATE if chat_template else None,
                                merge_across_spaces)
    torch.manual_seed(seed)
    return tiny_causal_lm(tokenizer, architecture, hidden_size, num_layers, **overrides), tokenizer


def tiny_for_tokenizer(tokenizer, architecture: str = "gpt2", hidden_size: int = 64, num_layers: int = 2,
                       seed: int = 0, **overrides) -> PreTrainedModel:
    """A fresh tiny model of `architecture` for an existing tokenizer (e.g. a real model's, so that the
    tiny model can steer that model's decoding as a value model)."""
    if "vocab_size" in overrides:
        raise ValueError(
            f"tiny_model: vocab_size={overrides['vocab_size']} sizes a tokenizer trained on the data, but the "
            f"tokenizer is given ({getattr(tokenizer, 'name_or_path', 'tokenizer_name_or_path')}, "
            f"{len(tokenizer)} tokens). Drop vocab_size, or drop tokenizer_name_or_path to train one.")
    if "merge_across_spaces" in overrides:
        raise ValueError("tiny_model: merge_across_spaces is a setting of a tokenizer trained on the data, but the "
                         "tokenizer is given: drop merge_across_spaces, or drop tokenizer_name_or_path to train one.")
    torch.manual_seed(seed)
    return tiny_causal_lm(tokenizer, architecture, hidden_size, num_layers, **overrides)
