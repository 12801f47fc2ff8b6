"""One training variant of `lmrl bench` alone in its process: a warm-up step, then N timed steps.

    python benchmarks/train_step_alone.py bc        # lmrl's BC step on GPT-2 small, 1 x 128 tokens
    python benchmarks/train_step_alone.py ilql      # ILQL with lmrl's default (tied) heads on the same trunk

`lmrl bench` times its variants in interleaved rounds in one process, and a step's time depends on what
ran before it (docs/benchmarks.md, "What interleaving costs"); run each variant here, twice, in turns,
for the times without the others' traces. One torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lmrl.bench import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=("bc", "ilql"))
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(GPT2Config()).train()
    batch = train.training_batch(1, 128, base.config.vocab_size, torch.device("cpu"))
    if args.variant == "bc":
        variant = train.bc(base, batch)
    else:
        variant = train.ilql(train.wrap(base, "tied", beta=4.0, top_k=50).train(), batch, "ILQL, tied heads")
    variant.step()  # warm-up
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        variant.step()
        seconds.append(time.perf_counter() - start)
    print(f"{args.variant}: median {statistics.median(seconds):.3f} s per step over {args.steps} "
          f"({', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
