"""`lmrl bench-cost`: what value learning costs next to fine-tuning, and next to the reference designs, in one run.

Builds models from configs (GPT-2 small; a Llama with Llama 3's 128k vocabulary on a small trunk) and
measures, side by side in one process:

- parameters the Q/V heads add (tied, untied, the paper's separate trunks) as a fraction of the base;
- decoding tokens/s at batch 1 and 32: plain `generate()`, guided on the top-k tokens, guided on the whole
  vocabulary, and a frozen LM steered by a smaller value model through `ValueGuidedLogitsProcessor`;
- training tokens/s and peak memory of one optimizer step: BC, ILQL with tied heads, with untied heads,
  and the original ILQL layout (separate policy, value and target trunks);
- how ILQL's cost relative to BC grows with the vocabulary size and the sequence length;
- the feature cache (heads trained on a frozen trunk's cached hidden states, on SmolLM2): its build next
  to plain inference, a head epoch on it next to a LoRA epoch, its bytes per token, and decoding with
  the heads-only checkpoint next to plain decoding.

Every time is the median of repeated runs in interleaved rounds; ratios are medians of per-round ratios.
Targets are printed next to the ratios they bound.

    lmrl bench-cost                 # full shapes (see docs/benchmarks.md for the time it takes)
    lmrl bench-cost --threads 1     # steadier when other processes share the cores
    lmrl bench-cost --quick         # tiny shapes, seconds (the CI smoke test)
    lmrl bench-cost --shape feature-cache --threads 1   # the feature cache's rows only (minutes)
"""

from .run import main

__all__ = ["main"]
