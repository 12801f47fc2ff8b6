"""Runs the benchmark plan: parameters, decoding, training steps and their scaling, per model shape."""

from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM

from . import train
from .decode import decode_variants
from .feature_cache import run_feature_cache
from .measure import (
    MEMORY_METHOD,
    interleaved,
    median_ratio,
    peak_step_memory,
    ratio_interval,
    resident_tensors,
)
from .paper_layout import SeparateTrunksILQL
from .report import Row, Target, load_average, machine, table, write_json
from .rollout import run_rollout
from .shapes import FULL, QUICK, ModelShape, Plan, Workload

UNCHUNKED = "ILQL, tied heads, losses unchunked (loss_chunk_size=0)"
DEFAULT_VS_UNCHUNKED = "ILQL default / ILQL with loss_chunk_size=0 (time ratio of the two rows above, per round)"
# the targets; "default_vs_unchunked": never slower than the plain losses, up to a shared machine's noise
TARGETS = {"params_tied": 0.06, "decode_top_k": 1.05, "train_tied_gpt2": 1.15, "train_tied_128k": 1.5,
           "default_vs_unchunked": 1.05, "memory_tied_128k": 1.3}
NOTE = ("ratio: time / the baseline's time (decode: plain generate(); train: lmrl's BC), the median over rounds of "
        "the per-round ratio, with its 95% bootstrap interval over the rounds (the machine's noise); for parameters, "
        "added parameters / the base model's. Targets are judged on the median. tok/s and ms: medians. "
        "memory ratio: peak / BC's peak. fwd+bwd memory: the most the forward and backward held above the weights "
        "and optimizer state (activations, logits, gradients), where the loss implementation shows. "
        "feature-cache rows: build / plain inference time; epoch: / the LoRA epoch's time (and LoRA / cached, "
        "target >= 50); size: bytes per token / the hidden states' own (hidden size x dtype bytes); decode: / plain "
        "generate() of the same base. rollout rows: time per rollout / the plain policy's; tokens: prompt tokens "
        "fed / the plain policy's.")


def progress(message: str) -> None:
    print(f"[lmrl bench-cost] {message}", file=sys.stderr, flush=True)


def count(*modules: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


def parameter_rows(shape: ModelShape, base: nn.Module, models: dict, layout: SeparateTrunksILQL) -> list[Row]:
    base_params = count(base)
    section = f"params added (base {base_params:,})"
    rows = []
    for head_type, model in models.items():
        trainable, frozen = count(model.q_heads, model.v_head), count(model.target_q_heads)
        target = Target("ratio", TARGETS["params_tied"]) if head_type == "tied" else None
        width = model.config.head_hidden_size
        name = {"tied": f"tied (lmrl default, head_hidden_size={width} = 2h)",
                "untied": f"untied (reference head design, head_hidden_size={width})",
                "narrow": f"tied, narrow (head_hidden_size={width} = h/4)"}[head_type]
        rows.append(Row(shape.name, section, f"Q + V heads, {name}: trainable", trainable, "params",
                        trainable / base_params, target=target))
        rows.append(Row(shape.name, section, f"Q + V heads, {name}: total with target heads", trainable + frozen,
                        "params", (trainable + frozen) / base_params))
    trainable = count(layout.value_trunk, layout.q_heads, layout.v_head)
    total = trainable + count(layout.target_trunk, layout.target_q_heads)
    rows.append(Row(shape.name, section, "paper layout: value trunk + untied heads, trainable", trainable, "params",
                    trainable / base_params))
    rows.append(Row(shape.name, section, "paper layout: total with target trunk + heads", total, "params",
                    total / base_params))
    return rows


def _interval(name: str, baseline: str, times: dict[str, list[float]]) -> tuple[float, float] | None:
    return None if name == baseline else ratio_interval(times[name], times[baseline])


def decode_rows(shape: ModelShape, base, guided, value_model, work: Workload, device, narrow=None) -> list[Row]:
    rows = []
    for batch, repeats in work.decode_runs:
        progress(f"{shape.name}: decode, batch {batch}")
        prompt = torch.randint(0, shape.vocab_size - 1, (batch, work.prompt_len), device=device)
        variants = decode_variants(base, guided, value_model, prompt, work.new_tokens, work.guidance_top_k, narrow)
        with torch.inference_mode():  # warm-up at the first batch size only: the code paths are warm after it
            times = interleaved({name: fn for name, (_, fn) in variants.items()}, repeats, device,
                                warm_up=not rows)
        for name, (label, _) in variants.items():
            seconds = statistics.median(times[name])
            target = Target("ratio", TARGETS["decode_top_k"]) if name == "top_k" else None
            rows.append(Row(shape.name, f"decode b={batch}", label, batch * work.new_tokens / seconds, "tok/s",
                            median_ratio(times[name], times["plain"]), seconds, target=target,
                            samples=times[name], ratio_interval=_interval(name, "plain", times)))
    return rows


def train_rows(shape: str, section: str, group: dict[str, train.TrainVariant], tokens: int, repeats: int, device,
               targets: dict[str, Target] | None = None, bc_memory: tuple[int, int] | None = None
               ) -> tuple[list[Row], tuple[int, int]]:
    """Time the variants of `group` in interleaved rounds after a warm-up step each ("bc" is the ratios'
    baseline), then measure the memory of one more step of each (once the optimizer state exists: a first
    step's peak is lower). With `bc_memory`, BC was measured (and warmed up) before and its row is not
    repeated. Returns the rows and BC's memory."""
    memory = {} if bc_memory is None else {"bc": bc_memory}
    for name, variant in group.items():
        if name not in memory:
            variant.step()  # warm-up
    times = interleaved({name: v.step for name, v in group.items()}, repeats, device, warm_up=False)
    for name, v in group.items():
        if name not in memory:
            memory[name] = peak_step_memory(v.backward, v.update, resident_tensors(v.modules, v.optimizer), device)
    rows = []
    for name, variant in group.items():
        if name == "bc" and bc_memory is not None:
            continue
        seconds = statistics.median(times[name])
        (peak, above), bc_peak = memory[name], memory["bc"][0]
        rows.append(Row(shape, section, variant.label, tokens / seconds, "tok/s", median_ratio(times[name], times["bc"]),
                        seconds, peak, peak / bc_peak, above, (targets or {}).get(name), times[name],
                        _interval(name, "bc", times)))
    if "tied" in group and "tied_unchunked" in group:  # does picking the loss path by size ever lose?
        seconds = statistics.median(times["tied"])
        rows.append(Row(shape, section, DEFAULT_VS_UNCHUNKED, tokens / seconds, "tok/s",
                        median_ratio(times["tied"], times["tied_unchunked"]), seconds,
                        target=(targets or {}).get("default_vs_unchunked"), samples=times["tied"],
                        ratio_interval=_interval("tied", "tied_unchunked", times)))
    return rows, memory["bc"]


def bench_shape(shape: ModelShape, work: Workload, device: torch.device, compare_chunking: bool) -> list[Row]:
    """All measures on one shape; `compare_chunking` adds the unchunked BC and ILQL losses to the training rows."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(shape.config()).to(device)
    value_model = train.wrap(AutoModelForCausalLM.from_config(shape.config(value_model=True)), "tied", work.beta,
                             work.guidance_top_k).to(device).eval()
    models = {"tied": train.wrap(base, "tied", work.beta, work.guidance_top_k).to(device),  # lmrl's default heads
              # the reference implementations' heads: an MLP h -> 2h -> V per head
              "untied": train.wrap(base, "untied", work.beta, work.guidance_top_k, 2 * shape.hidden_size).to(device)}
    # the optional smaller head shape: MLPs h -> h/4 -> h instead of h -> 2h -> h; decoded, not trained
    narrow = train.wrap(base, "tied", work.beta, work.guidance_top_k, shape.hidden_size // 4).to(device).eval()
    layout = SeparateTrunksILQL(base).to(device)
    params = parameter_rows(shape, base, {**models, "narrow": narrow}, layout)
    del layout  # built again, after the decode runs, when it is trained
    base.eval()
    rows = params + decode_rows(shape, base, models["tied"].eval(), value_model, work, device, narrow)
    del value_model, narrow

    progress(f"{shape.name}: training steps")
    base.train()
    for head_type in models:
        models[head_type].train()
    batch = train.training_batch(work.train_batch, work.train_len, shape.vocab_size, device)
    bc, tied = train.bc(base, batch), train.ilql(models["tied"], batch, "ILQL, tied heads (lmrl)")
    group = {"bc": bc}
    if compare_chunking:
        group["bc_plain"] = train.bc(base, batch, chunk_size=0, optimizer=bc.optimizer)
    group["tied"] = tied
    if compare_chunking:
        group["tied_unchunked"] = train.ilql(models["tied"], batch, UNCHUNKED, 0, tied.optimizer)
    if shape.architecture == "gpt2":
        targets = {"tied": Target("ratio", TARGETS["train_tied_gpt2"])}
    else:  # the large-vocabulary shape (its memory target is on the longest scaling rows)
        targets = {"tied": Target("ratio", TARGETS["train_tied_128k"]),
                   "default_vs_unchunked": Target("ratio", TARGETS["default_vs_unchunked"])}
    section, tokens = f"train {work.train_batch}x{work.train_len}", work.train_batch * work.train_len
    train_group, bc_memory = train_rows(shape.name, section, group, tokens, work.train_repeats, device, targets)
    # the reference designs take 3-10x a BC step and gigabytes: timed in rounds of their own with BC, so that
    # the step after theirs (page faults, cold caches) is never one of the targeted rows above
    untied = {"bc": bc, "untied": train.ilql(models["untied"], batch, "ILQL, untied heads (reference head design)")}
    train_group += train_rows(shape.name, section, untied, tokens, work.train_repeats, device, bc_memory=bc_memory)[0]
    del group, tied, models, untied  # make room for the three trunks
    gc.collect()
    separate = {"bc": bc, "separate": train.separate_trunks(SeparateTrunksILQL(base).to(device), batch)}
    return rows + train_group + train_rows(shape.name, section, separate, tokens, work.train_repeats, device,
                                           bc_memory=bc_memory)[0]


def scaling_rows(shape: ModelShape, work: Workload, device: torch.device) -> list[Row]:
    """BC vs ILQL (tied, chunked and unchunked) over vocabulary sizes and sequence lengths, one row a batch.
    The shape's own vocabulary at the training rows' batch is not measured again."""
    configs = [(v, work.scaling_lengths[0]) for v in work.scaling_vocabs]
    configs += [(shape.vocab_size, t) for t in work.scaling_lengths if (shape.vocab_size, t) not in configs]
    configs = [c for c in configs if (work.train_batch, c[1], c[0]) != (1, work.train_len, shape.vocab_size)]
    rows = []
    for vocab, length in configs:
        progress(f"scaling: vocab {vocab:,}, length {length}")
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_config(shape.config(vocab_size=vocab)).to(device).train()
        model = train.wrap(base, "tied", work.beta, work.guidance_top_k).to(device).train()
        batch = train.training_batch(1, length, vocab, device)
        tied = train.ilql(model, batch, "ILQL, tied heads (lmrl)")
        group = {"bc": train.bc(base, batch), "tied": tied,
                 "tied_unchunked": train.ilql(model, batch, UNCHUNKED, 0, tied.optimizer)}
        longest = vocab == shape.vocab_size and length == max(work.scaling_lengths)  # memory must stay flat there
        targets = {"tied": Target("memory_ratio", TARGETS["memory_tied_128k"])} if longest else None
        rows += train_rows(shape.name, f"scaling 1x{length}, V={vocab:,}", group, length, work.scaling_repeats,
                           device, targets)[0]
        del group, tied, model, base
        gc.collect()
    return rows


def pretrained_base(shape: ModelShape, device: torch.device) -> tuple[nn.Module, str]:
    """The shape's real pretrained weights when `lmrl fetch-model` has them cached, else the same shape
    from its config (random weights: the same cost)."""
    from ..fetch import fetched_path

    path = fetched_path(shape.fetched) if shape.fetched else None
    if path is not None:
        return AutoModelForCausalLM.from_pretrained(path).to(device), f"real weights from {path}"
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(shape.config()).to(device), "random weights (not fetched)"


def lora_shape_rows(shape: ModelShape, work: Workload, device: torch.device) -> list[Row]:
    """A pretrained shape as users run it: decoding plain and guided (tied heads, and a small value model
    steering it), then training steps with a LoRA adapter (r=8, every linear layer): BC vs ILQL."""
    import copy

    from peft import LoraConfig, get_peft_model

    base, weights = pretrained_base(shape, device)
    progress(f"{shape.name}: {weights}")
    torch.manual_seed(0)
    value_model = train.wrap(AutoModelForCausalLM.from_config(shape.config(value_model=True)), "tied", work.beta,
                             work.guidance_top_k).to(device).eval()
    guided = train.wrap(base, "tied", work.beta, work.guidance_top_k).to(device).eval()
    rows = decode_rows(shape, base.eval(), guided, value_model, work, device)
    del value_model, guided
    gc.collect()

    progress(f"{shape.name}: training steps with LoRA")
    lora = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")
    bc_model = get_peft_model(copy.deepcopy(base), lora).to(device).train()
    ilql_model = train.wrap(base, "tied", work.beta, work.guidance_top_k).add_peft_adapter(lora).to(device).train()
    batch = train.training_batch(work.train_batch, work.train_len, shape.vocab_size, device)
    group = {"bc": train.bc(bc_model, batch), "tied": train.ilql(ilql_model, batch, "ILQL, tied heads (lmrl), LoRA")}
    group["bc"].label = f"{train.BC_DEFAULT}, LoRA"
    section = f"train {work.train_batch}x{work.train_len}, LoRA r=8"
    return rows + train_rows(shape.name, section, group, work.train_batch * work.train_len, work.train_repeats,
                             device)[0]


def run(plan: Plan, device: torch.device, notes: list[str] | None = None) -> list[Row]:
    """Every row of the plan; what was skipped, and why, is appended to `notes`."""
    rows = []
    for shape in plan.shapes:
        rows += bench_shape(shape, plan.workload, device, compare_chunking=shape is plan.scaling_shape)
        gc.collect()
    if plan.scaling:
        rows += scaling_rows(plan.scaling_shape, plan.workload, device)
    for shape in plan.lora_shapes:
        gc.collect()
        rows += lora_shape_rows(shape, plan.workload, device)
    extras = []
    if plan.feature_cache is not None:
        extras.append(lambda: run_feature_cache(plan.feature_cache, plan.workload, device, progress))
    if plan.rollout is not None:
        extras.append(lambda: run_rollout(plan.rollout, device, progress))
    for measure in extras:
        gc.collect()
        more, note = measure()
        rows += more
        if note is not None:
            progress(note)
            if notes is not None:
                notes.append(note)
    return rows


def only(plan: Plan, names: list[str]) -> Plan:
    """The plan restricted to the shapes named (the scaling rows go with the plan's scaling shape;
    "feature-cache": the feature cache's rows; "rollout": a rollout with and without the kept KV cache)."""
    known = [s.name for s in (*plan.shapes, *plan.lora_shapes)]
    known += [extra.name for extra in (plan.feature_cache, plan.rollout) if extra is not None]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"--shape {', '.join(unknown)}: no such shape in the {plan.mode} plan; choose from "
                         f"{', '.join(known)}.")
    shapes = tuple(s for s in plan.shapes if s.name in names)
    return replace(plan, shapes=shapes, lora_shapes=tuple(s for s in plan.lora_shapes if s.name in names),
                   scaling=plan.scaling and bool(plan.shapes) and plan.scaling_shape in shapes,
                   feature_cache=plan.feature_cache if plan.feature_cache and plan.feature_cache.name in names else None,
                   rollout=plan.rollout if plan.rollout and plan.rollout.name in names else None)


def main(quick: bool = False, threads: int | None = None, device: str | None = None,
         output: str | Path | None = None, command: str = "lmrl bench-cost", shapes: list[str] | None = None) -> int:
    """Run the benchmark, print its table and write it as JSON; see `lmrl bench-cost --help`."""
    plan = QUICK if quick else FULL
    if shapes:
        plan = only(plan, shapes)
    threads = threads or (1 if quick else None)  # tiny ops gain nothing from a second thread
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    transformers.logging.set_verbosity_error()
    start, load_start = time.perf_counter(), load_average()
    info = machine(device)
    header = (f"lmrl bench-cost ({plan.mode}) on {info['device']} ({info.get('gpu', info['processor'])}): "
              f"torch {info['torch']}, transformers {info['transformers']}, {info['cpu_count']} CPUs, torch threads "
              f"{info['torch_threads']}, load avg {load_start:.1f} at start. Command: {command}")
    print(header, flush=True)
    described = [s.describe() for s in (*plan.shapes, *plan.lora_shapes)]
    described += [extra.describe() for extra in (plan.feature_cache, plan.rollout) if extra is not None]
    for line in described:
        print(f"- {line}")
    notes: list[str] = []
    rows = run(plan, device, notes)
    seconds = time.perf_counter() - start
    footer = (f"Peak memory: {MEMORY_METHOD[device.type]}. Total runtime {seconds:.0f} s; load avg "
              f"{load_average():.1f} at the end.")
    print("", table(rows, judge=plan.targets_judged), "", NOTE, *(f"Note: {n}" for n in notes), footer, sep="\n")
    output = Path(output or f"benchmarks/results/bench{'.quick' if quick else ''}.json")
    write_json(output, {"mode": plan.mode, "command": command, "header": header, "footer": footer, "note": NOTE,
                        "machine": info, "memory_method": MEMORY_METHOD[device.type], "runtime_s": round(seconds, 1),
                        "load_avg": [load_start, load_average()],
                        "shapes": described, "notes": notes},
               rows)
    print(f"results: {output}")
    return 0
