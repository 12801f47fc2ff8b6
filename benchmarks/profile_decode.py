"""Where a greedy decode step's time goes, plain vs guided top-k, on `lmrl bench`'s shapes (torch.profiler).

    python benchmarks/profile_decode.py                       # gpt2-small and llama-128k, batch 1 and 32
    python benchmarks/profile_decode.py --shape llama-128k --batch 32 --threads 1

Each round decodes `--new-tokens` tokens after an 8-token prompt (EOS off) under torch.profiler; the
prefill forward is left out and the rest is divided by the decode steps. Every operator's own CPU time
goes to a part of the step: the modules it runs in (trunk, LM head, Q heads' MLPs, V head), or by its
name for the operators of the guidance rule, and what is left (generate()'s own work: the logits copy,
argmax, cache bookkeeping) to "generate() and the rest". The profiler's own overhead inflates small
operators, so read shares and differences, not absolute times.
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics

import torch
import transformers
from torch.profiler import ProfilerActivity, profile, record_function
from transformers import AutoModelForCausalLM

from lmrl.bench.shapes import FULL
from lmrl.bench.train import wrap

PARTS = ("trunk", "lm_head", "heads (Q MLPs, V)", "gather (W_E rows, bias)", "log-softmax / logsumexp", "top-k",
         "scores (clip, scatter, fill)", "allocations", "generate() and the rest")
GATHER_OPS = {"aten::embedding", "aten::index_select", "aten::einsum", "aten::bmm", "aten::index", "aten::mul",
              "aten::sum", "aten::add", "aten::permute", "aten::amin", "aten::min"}
SOFTMAX_OPS = {"aten::log_softmax", "aten::_log_softmax", "aten::logsumexp", "aten::exp", "aten::exp_", "aten::sub",
               "aten::sub_", "aten::sum", "aten::log", "aten::log_"}
TOPK_OPS = {"aten::topk", "aten::amax", "aten::constant_pad_nd", "aten::pad", "aten::gather", "aten::floor_divide",
            "aten::remainder", "aten::div", "aten::where", "aten::lt"}
ALLOC_OPS = {"aten::empty", "aten::empty_strided", "aten::zeros", "aten::full", "aten::new_full", "aten::new_empty",
             "aten::clone", "aten::to", "aten::_to_copy", "aten::copy_", "aten::cat", "aten::stack"}


def label_modules(modules: dict) -> None:
    """Open a profiler range named after each module (name -> module) for the time it runs."""
    for name, module in modules.items():
        ranges = []
        module.register_forward_pre_hook(lambda m, args, name=name, ranges=ranges: ranges.append(
            record_function(name).__enter__()))
        module.register_forward_hook(lambda m, args, out, ranges=ranges: ranges.pop().__exit__(None, None, None))


def labelled(fn, name: str):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)

    return run


def part_of(event) -> str | None:
    """The part of the step an operator's own time belongs to; None inside the prefill."""
    labels, node = [], event
    while node is not None:
        labels.append(node.name)
        node = node.cpu_parent
    if "prefill" in labels:
        return None
    if "trunk" in labels:
        return "trunk"
    if "lm_head" in labels:
        return "lm_head"
    name = event.name
    if any(label.startswith("q_head") for label in labels):
        return "gather (W_E rows, bias)" if name in GATHER_OPS else "heads (Q MLPs, V)"
    if "v_head" in labels:
        return "heads (Q MLPs, V)"
    if "guided_forward" not in labels:
        return "generate() and the rest"
    if name in SOFTMAX_OPS:
        return "log-softmax / logsumexp"
    if name in TOPK_OPS:
        return "top-k"
    if name in ALLOC_OPS:
        return "allocations"
    return "scores (clip, scatter, fill)"


def profile_decode(model, prompt, new_tokens: int, guided: bool) -> dict[str, float]:
    """ms per decode step by part."""
    forward = model.forward
    calls = [0]

    @functools.wraps(forward)  # generate() reads its signature
    def labelled_forward(*args, **kwargs):
        calls[0] += 1
        with record_function("prefill" if calls[0] == 1 else "guided_forward" if guided else "forward"):
            return forward(*args, **kwargs)

    model.forward = labelled_forward
    kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                  do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.inference_mode():
        model.generate(prompt, **kwargs)  # warm-up
        calls[0] = 0
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.generate(prompt, **kwargs)
    del model.forward
    totals = collections.Counter()
    for event in prof.events():
        if event.device_type.name != "CPU" or event.name in ("prefill", "forward", "guided_forward") \
                or event.name in ("trunk", "lm_head", "v_head") or event.name.startswith("q_head"):
            continue
        part = part_of(event)
        if part is not None:
            totals[part] += event.self_cpu_time_total / 1e3 / (new_tokens - 1)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="append", default=None, help="gpt2-small, llama-128k (default both)")
    parser.add_argument("--batch", type=int, action="append", default=None, help="default: 1 and 32")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved plain/guided rounds; medians per part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    shapes = [s for s in FULL.shapes if s.name in (args.shape or [s.name for s in FULL.shapes])]
    print("| shape | batch | part | plain ms/step | guided top-50 ms/step |")
    print("| --- | --- | --- | --- | --- |")
    for shape in shapes:
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_config(shape.config()).eval()
        guided = wrap(base, "tied", FULL.workload.beta, FULL.workload.guidance_top_k).eval()
        label_modules({"trunk": base.get_decoder(), "lm_head": base.get_output_embeddings(), "v_head": guided.v_head,
                       **{f"q_head_{i}": head for i, head in enumerate(guided.q_heads)}})
        stacked = getattr(guided, "_stacked_q_heads", None)  # the Q heads as decoding runs them (one matmul)
        if stacked is not None:
            stacked.min_q = labelled(stacked.min_q, "q_head_stacked")
        for batch in args.batch or [1, 32]:
            prompt = torch.randint(0, shape.vocab_size - 1, (batch, FULL.workload.prompt_len))
            runs = [(profile_decode(base, prompt, args.new_tokens, guided=False),
                     profile_decode(guided, prompt, args.new_tokens, guided=True)) for _ in range(args.rounds)]
            plain, steered = ({part: statistics.median(run[i][part] for run in runs) for part in PARTS} for i in (0, 1))
            for part in PARTS:
                if plain[part] or steered[part]:
                    print(f"| {shape.name} | {batch} | {part} | {plain[part]:.2f} | {steered[part]:.2f} |")
            print(f"| {shape.name} | {batch} | **total** | {sum(plain.values()):.2f} | {sum(steered.values()):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
