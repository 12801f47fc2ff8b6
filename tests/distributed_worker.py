"""A few training steps of one lmrl trainer, run alone or under `torchrun --nproc_per_node N`.

tests/test_distributed.py runs it as 1 process and as 2 processes (gloo on CPU) at the same global
batch and compares what it writes to OUT_DIR/ALGORITHM/:
    log.json                      the logged per-step losses (rank 0), the world size
    weights-rank{R}.safetensors   the trained module's weights on rank R (trunk, heads, target heads)

    python tests/distributed_worker.py ALGORITHM[,ALGORITHM...] OUT_DIR GLOBAL_BATCH STEPS

Every row has the same number of action tokens, so the mean over one rank's action tokens averaged
over ranks (what DDP's gradient all-reduce computes) equals the mean over the whole global batch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import set_seed  # noqa: E402

import lmrl  # noqa: E402
from lmrl.tiny import tiny_causal_lm, train_tokenizer  # noqa: E402

REPLIES = [" red", " blue", " green", " gold"]
PROMPTS = ["Pick a door:", "Pick a coat:", "Pick a car:", "Pick a cup:"]


def rows(n: int = 64) -> list[dict]:
    """Single-turn and two-turn episodes, every assistant reply one word with its own reward."""
    out = []
    for i in range(n):
        reply = REPLIES[i % len(REPLIES)]
        out.append({"messages": [
            {"role": "system", "content": "Colours only."},
            {"role": "user", "content": PROMPTS[(i // 4) % len(PROMPTS)]},
            {"role": "assistant", "content": reply, "reward": float(reply == " blue")},
            {"role": "user", "content": "And again:"},
            {"role": "assistant", "content": REPLIES[(i * 3) % len(REPLIES)], "reward": 0.5 * (i % 3 == 0)},
        ]})
    return out


def flight_rows(n: int = 16) -> list[dict]:
    from lmrl.tasks.flight_booking import generate_flight_episodes

    return [r.as_row() for r in generate_flight_episodes(n, seed=0, num_flights=2, progress=False)]


def build(algorithm: str, output_dir: str, per_device_batch: int, steps: int):
    set_seed(0)
    data = flight_rows() if algorithm == "calm" else rows()
    tokenizer = train_tokenizer([m["content"] for row in data for m in row["messages"]], vocab_size=300)
    model = tiny_causal_lm(tokenizer, "gpt2", hidden_size=32, num_layers=2,
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # no dropout: ranks draw no noise
    common = dict(output_dir=output_dir, per_device_train_batch_size=per_device_batch, max_steps=steps,
                  learning_rate=3e-3, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                  seed=0, lr_scheduler_type="constant", use_cpu=True)
    if algorithm == "ilql":
        args = lmrl.ILQLConfig(**common, alpha=0.1)
        return lmrl.ILQLTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    if algorithm == "calm":
        args = lmrl.CALMConfig(**common, outcome_task="flight_booking", max_length=1024)
        return lmrl.CALMTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    if algorithm == "chai":
        args = lmrl.CHAIConfig(**common, num_proposals=2, proposal_max_new_tokens=3)
        return lmrl.CHAITrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def trained_weights(trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {name: p.detach().clone().contiguous() for name, p in model.state_dict().items()}


def main(algorithm: str, out_dir: str, global_batch: int, steps: int) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(1)
    out_dir = str(Path(out_dir, algorithm))
    trainer = build(algorithm, str(Path(out_dir, "run")), global_batch // world, steps)
    trainer.train()
    rank = trainer.args.process_index
    save_file(trained_weights(trainer), str(Path(out_dir, f"weights-rank{rank}.safetensors")))
    if trainer.is_world_process_zero():
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        Path(out_dir, "log.json").write_text(json.dumps({"world_size": trainer.args.world_size, "logs": logs}))


if __name__ == "__main__":
    names, out, batch, n_steps = sys.argv[1:5]
    for name in names.split(","):
        main(name, out, int(batch), int(n_steps))
