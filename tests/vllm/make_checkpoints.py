"""Train tiny ILQL checkpoints with lmrl and record what lmrl's HF `generate()` decodes from them.

Runs in lmrl's own environment (`.venv`, transformers 5.21+); the vLLM tests and the vLLM benchmark
read its output from the serving environment (`.venv-vllm`, see docs/vllm.md):

    .venv/bin/python tests/vllm/make_checkpoints.py OUT [--architectures gpt2 llama] [--steps 30]

For each architecture, OUT/ARCH/ holds `ilql/` (the trained checkpoint and its tokenizer), `base/` (its
trunk alone, as a plain causal LM) and `reference.json`: the prompts' token ids, and for each prompt the
greedy tokens and their scores (the model's logits, i.e. the guided scores) of `generate()`, guided
(the checkpoint's beta) and unguided (beta = 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

from lmrl import AutoModelForCausalLMWithILQLHeads, ILQLConfig, ILQLTrainer, encode_prompt  # noqa: E402
from lmrl.models.tiny import build_tiny  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from make_doors_data import CHOICES, doors_rows  # noqa: E402

# the data's prompts (replies of a token or two, then EOS) and free text, which decodes to max_new_tokens
PROMPTS = [*CHOICES, "Pick a door: red door blue", "Which one? The", "green"]


def train(architecture: str, out: Path, steps: int, hidden_size: int, num_layers: int) -> None:
    set_seed(0)
    rows = doors_rows()
    model, tokenizer = build_tiny(rows, architecture, hidden_size=hidden_size, num_layers=num_layers, vocab_size=300)
    args = ILQLConfig(output_dir=str(out / "ilql"), max_steps=steps, per_device_train_batch_size=16, learning_rate=1e-3,
                      beta=8.0, alpha=0.5, save_strategy="no", report_to="none", seed=0, use_cpu=True)
    trainer = ILQLTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    tokenizer.save_pretrained(out / "ilql")
    trained = trainer.model
    trained.pretrained_model.save_pretrained(out / "base")
    tokenizer.save_pretrained(out / "base")


TOP = 5  # the best scores recorded at each step


@torch.no_grad()
def greedy(model, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[dict]:
    """One prompt at a time (no padding), `max_new_tokens` each (EOS masked until then, as vLLM's
    `min_tokens`): the tokens `generate()` picks, and at each step the `TOP` best scores (the model's
    logits: the guided scores) and their token ids."""
    results = []
    for ids in prompts:
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                             min_new_tokens=max_new_tokens, output_logits=True, return_dict_in_generate=True,
                             pad_token_id=tokenizer.pad_token_id)
        top = [step[0].float().topk(TOP) for step in out.logits]
        results.append({"tokens": out.sequences[0, len(ids):].tolist(),
                        "top_ids": [t.indices.tolist() for t in top], "top_scores": [t.values.tolist() for t in top]})
    return results


def record(out: Path, max_new_tokens: int) -> None:
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(out / "ilql").eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "ilql")
    prompts = [encode_prompt(tokenizer, text) for text in PROMPTS]
    guided = greedy(model, tokenizer, prompts, max_new_tokens)
    beta = model.config.beta
    model.config.beta = 0.0
    unguided = greedy(model, tokenizer, prompts, max_new_tokens)
    reference = {"beta": beta, "guidance_top_k": model.config.guidance_top_k, "max_new_tokens": max_new_tokens,
                 "texts": PROMPTS, "prompts": prompts, "guided": guided, "unguided": unguided}
    (out / "reference.json").write_text(json.dumps(reference, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--architectures", nargs="+", default=["gpt2", "llama"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for architecture in args.architectures:
        out = args.out / architecture
        train(architecture, out, args.steps, args.hidden_size, args.num_layers)
        record(out, args.max_new_tokens)
        print(f"{out}: checkpoint and reference written")


if __name__ == "__main__":
    main()
