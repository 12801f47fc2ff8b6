"""Cost of ILQL's Q/V heads on a GPT-2-small-shaped model, measured side by side in one run.

Three measures, each reported as a ratio to the plain model measured in the same run:

1. parameters: trainable head parameters (online Q heads + V head) / base parameters, for tied and
   untied Q heads. The target Q heads are frozen copies and are reported on their own rows.
2. decode: greedy `generate()` latency of the base model vs. the guided model with the top-k fast path
   (`guidance_top_k=50`) vs. guided over the full vocabulary (`guidance_top_k=0`). Every run decodes
   exactly `new_tokens` tokens (EOS is disabled) under `torch.inference_mode()` in eval mode.
3. train step: one optimizer step (forward + backward + AdamW step, plus the Polyak target update for
   ILQL) of BC (`bc_loss` on the action tokens) vs. ILQL with tied and with untied Q heads (the model's
   training forward with `action_mask` and `ilql_loss` at the ILQLConfig defaults: tau 0.7, gamma 0.99,
   cql_weight 0.1, bc_weight 1.0, alpha 0.005). The action mask covers the second half of each row.

Timing: one warm-up call per variant (decode: at the first batch size only), then `repeats` rounds;
within a round the variants run back to back (interleaved), so a slow-down of a shared machine hits
all of them alike. Values are medians over rounds; ratios are medians of the per-round ratios. The
weights are random (`torch.manual_seed(0)`); all variants share one trunk, and each training variant
has its own AdamW. The full shape is GPT2Config's default (12 layers, hidden 768, vocab 50257) with all
layers; only batch-8 decoding runs fewer repeats (3), to stay near 3 minutes on 2 CPU cores.

    python benchmarks/heads.py              # GPT-2-small shape, ~3 minutes on 2 idle CPU cores
    python benchmarks/heads.py --threads 1  # ~4 minutes, but robust when other processes share the cores
    python benchmarks/heads.py --quick      # tiny shapes, one thread, a few seconds (CI smoke test)

Prints a header and a markdown table; writes the same results to benchmarks/results/heads.json
(heads.quick.json with --quick, so a smoke test does not overwrite the real numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from lmrl import AutoModelForCausalLMWithILQLHeads
from lmrl.losses import bc_loss, ilql_loss

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GUIDANCE_TOP_K = 50
BETA = 4.0
ILQL_LOSS_KWARGS = {"tau": 0.7, "gamma": 0.99, "cql_weight": 0.1, "bc_weight": 1.0}
POLYAK_ALPHA = 0.005
TARGETS = {"params_tied": 0.06, "decode_top_k": 1.15, "train_tied": 1.7}
RATIO_NOTE = (
    "value: median over rounds; ratio: parameters / base parameters, or the median over rounds of "
    "time / baseline time in the same round (baselines: plain base model, BC)."
)


@dataclass(frozen=True)
class Shape:
    """Model and workload sizes of one benchmark mode."""

    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    prompt_len: int
    new_tokens: int
    decode_runs: tuple[tuple[int, int], ...]  # (batch size, repeats)
    train_batch: int
    train_len: int
    train_repeats: int

    def config(self) -> GPT2Config:
        eos = self.vocab_size - 1  # 50256, GPT-2's own, at the full size
        return GPT2Config(
            n_layer=self.n_layer,
            n_embd=self.n_embd,
            n_head=self.n_head,
            vocab_size=self.vocab_size,
            bos_token_id=eos,
            eos_token_id=eos,
        )

    def describe(self) -> str:
        return (
            f"GPT-2 {self.n_layer} layers, hidden {self.n_embd}, vocab {self.vocab_size}; decode: prompt "
            f"{self.prompt_len} + {self.new_tokens} new tokens, "
            + ", ".join(f"batch {batch} x {repeats} repeats" for batch, repeats in self.decode_runs)
            + f"; train: {self.train_batch} x {self.train_len} tokens, {self.train_repeats} repeats"
        )


# Full: GPT2Config's default shape. Batch 8 decodes with fewer repeats to stay within ~3 minutes on 2 cores.
FULL = Shape(
    n_layer=12,
    n_embd=768,
    n_head=12,
    vocab_size=50257,
    prompt_len=32,
    new_tokens=32,
    decode_runs=((1, 5), (8, 3)),
    train_batch=4,
    train_len=128,
    train_repeats=3,
)
QUICK = Shape(
    n_layer=2,
    n_embd=64,
    n_head=2,
    vocab_size=512,
    prompt_len=8,
    new_tokens=8,
    decode_runs=((1, 3),),
    train_batch=2,
    train_len=32,
    train_repeats=3,
)


@dataclass
class Row:
    """One line of the table; `value` is in `unit`, `ratio` is relative to the measure's baseline."""

    measure: str
    value: float
    unit: str
    ratio: float
    target: float | None = None
    samples: list[float] | None = None

    def markdown(self, judge: bool) -> str:
        value = f"{int(self.value):,}" if self.unit == "params" else f"{self.value * 1e3:,.0f} ms"
        target = "" if self.target is None else f"<= {self.target:g}"
        if self.target is not None and judge:
            target += " (met)" if self.ratio <= self.target else " (MISSED)"
        return f"| {self.measure} | {value} | {self.ratio:.3f} | {target} |"


# ------------------------------------------------------------------------------------ timing helpers
def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
) -> dict[str, list[float]]:
    """Warm every variant up once (unless `warm_up=False`), then time `repeats` rounds that run each
    variant once."""
    if warm_up:
        for fn in variants.values():
            fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn))
    return times


def timing_rows(
    times: dict[str, list[float]], baseline: str, labels: dict[str, str], targets: dict[str, float]
) -> list[Row]:
    rows = []
    for name, samples in times.items():
        ratio = statistics.median(t / b for t, b in zip(samples, times[baseline]))
        rows.append(Row(labels[name], statistics.median(samples), "s", ratio, targets.get(name), samples))
    return rows


# ------------------------------------------------------------------------------------ models
def wrap(base: GPT2LMHeadModel, head_type: str) -> AutoModelForCausalLMWithILQLHeads:
    """Add fresh ILQL heads to `base` (not copied: every wrapper shares the trunk)."""
    return AutoModelForCausalLMWithILQLHeads.from_pretrained(
        base, head_type=head_type, beta=BETA, guidance_top_k=GUIDANCE_TOP_K
    )


def count(modules: list[torch.nn.Module]) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


# ------------------------------------------------------------------------------------ 1. parameters
def parameter_rows(base: GPT2LMHeadModel, models: dict[str, AutoModelForCausalLMWithILQLHeads]) -> list[Row]:
    base_params = count([base])
    rows = []
    for head_type, model in models.items():
        trainable = count([model.q_heads, model.v_head])
        frozen = count([model.target_q_heads])
        target = TARGETS["params_tied"] if head_type == "tied" else None
        rows.append(
            Row(
                f"params: trainable heads (Q + V), {head_type}; base has {base_params:,}",
                trainable,
                "params",
                trainable / base_params,
                target,
            )
        )
        rows.append(Row(f"params: frozen target params, {head_type}", frozen, "params", frozen / base_params))
    return rows


# ------------------------------------------------------------------------------------ 2. decode
def decode_rows(base: GPT2LMHeadModel, guided: AutoModelForCausalLMWithILQLHeads, shape: Shape) -> list[Row]:
    base.eval()
    guided.eval()
    rows = []
    for batch, repeats in shape.decode_runs:
        prompt = torch.randint(0, shape.vocab_size, (batch, shape.prompt_len))

        def decode(model: torch.nn.Module, top_k: int | None = None, prompt: torch.Tensor = prompt) -> None:
            if top_k is not None:  # a decoding setting: safe to switch between calls
                model.config.guidance_top_k = top_k
            out = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=shape.new_tokens,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=None,
            )
            assert out.shape[1] == shape.prompt_len + shape.new_tokens

        variants = {
            "plain": lambda: decode(base),
            "top_k": lambda: decode(guided, GUIDANCE_TOP_K),
            "full": lambda: decode(guided, 0),
        }
        labels = {
            "plain": f"decode b={batch}: plain base model",
            "top_k": f"decode b={batch}: guided, top-{GUIDANCE_TOP_K} fast path",
            "full": f"decode b={batch}: guided, full vocabulary",
        }
        with torch.inference_mode():  # the code paths are warm after the first batch size
            times = interleaved(variants, repeats, warm_up=not rows)
        rows += timing_rows(times, "plain", labels, {"top_k": TARGETS["decode_top_k"]})
    return rows


# ------------------------------------------------------------------------------------ 3. train step
def training_batch(shape: Shape) -> dict[str, torch.Tensor]:
    """Random tokens; the second half of every row is the agent's action, rewarded at the end."""
    batch, length = shape.train_batch, shape.train_len
    action_mask = torch.zeros(batch, length, dtype=torch.long)
    action_mask[:, length // 2 :] = 1
    rewards = torch.zeros(batch, length)
    rewards[:, -1] = torch.randn(batch)
    return {
        "input_ids": torch.randint(0, shape.vocab_size, (batch, length)),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "action_mask": action_mask,
        "rewards": rewards,
        "dones": torch.ones(batch),
    }


def optimizer_step(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A closure running forward + backward + AdamW step on `model`'s trainable parameters."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step() -> None:
        loss_fn().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bc_step(base: GPT2LMHeadModel, batch: dict) -> Callable[[], None]:
    steps = batch["action_mask"][:, 1:].bool()
    actions = batch["input_ids"][:, 1:][steps]

    def loss() -> torch.Tensor:
        logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return bc_loss(logits[:, :-1][steps], actions)

    return optimizer_step(base, loss)


def ilql_step(model: AutoModelForCausalLMWithILQLHeads, batch: dict) -> Callable[[], None]:
    def loss() -> torch.Tensor:
        outputs = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            action_mask=batch["action_mask"],
            compute_q_logits=True,
        )
        value, _ = ilql_loss(
            outputs,
            batch["input_ids"],
            batch["attention_mask"],
            batch["action_mask"],
            batch["rewards"],
            batch["dones"],
            **ILQL_LOSS_KWARGS,
        )
        return value

    step = optimizer_step(model, loss)

    def step_and_update_targets() -> None:
        step()
        model.update_target_heads(POLYAK_ALPHA)

    return step_and_update_targets


def train_rows(
    base: GPT2LMHeadModel, models: dict[str, AutoModelForCausalLMWithILQLHeads], shape: Shape
) -> list[Row]:
    batch = training_batch(shape)
    for model in (base, *models.values()):
        model.train()
    variants = {
        "bc": bc_step(base, batch),
        **{name: ilql_step(model, batch) for name, model in models.items()},
    }
    labels = {
        "bc": "train step: BC (bc_loss)",
        "tied": "train step: ILQL, tied heads",
        "untied": "train step: ILQL, untied heads",
    }
    times = interleaved(variants, shape.train_repeats)
    return timing_rows(times, "bc", labels, {"tied": TARGETS["train_tied"]})


# ------------------------------------------------------------------------------------ report
def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def header(shape: Shape, mode: str) -> str:
    return (
        f"lmrl heads benchmark ({mode}): torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{os.cpu_count()} CPUs (torch threads: {torch.get_num_threads()}, load avg {load_average():.1f} at "
        f"start); {shape.describe()}"
    )


def footer(seconds: float) -> str:
    load, cpus = load_average(), os.cpu_count() or 1
    note = f"Total runtime {seconds:.1f} s; load avg {load:.1f} at the end."
    if load > cpus:
        note += f" The machine was busy (load > {cpus} CPUs): timings are noisy, compare ratios only."
        if torch.get_num_threads() > 1:
            note += " --threads 1 keeps OpenMP from stalling when other processes share the cores."
    return note


def table(rows: list[Row], judge: bool) -> str:
    """The markdown table; targets are judged (met / MISSED) only at the full shape."""
    lines = ["| measure | value | ratio | target |", "| --- | --- | --- | --- |"]
    return "\n".join(lines + [row.markdown(judge) for row in rows])


def write_json(
    path: Path, mode: str, shape: Shape, lines: list[str], rows: list[Row], seconds: float
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "mode": mode,
        "header": lines[0],
        "footer": lines[-1],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "shape": asdict(shape),
        "runtime_s": round(seconds, 2),
        "rows": [asdict(row) for row in rows],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes that finish in a few seconds")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON results (default: results/heads.json, or heads.quick.json)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's; 1 with --quick)"
    )
    args = parser.parse_args()

    start = time.perf_counter()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    mode, shape = ("quick", QUICK) if args.quick else ("full", FULL)
    # Tiny ops gain nothing from a second thread, and OpenMP threads stall badly on a busy machine.
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    title = header(shape, mode)
    print(title, flush=True)

    base = GPT2LMHeadModel(shape.config())
    models = {head_type: wrap(base, head_type) for head_type in ("tied", "untied")}
    rows = (
        parameter_rows(base, models)
        + decode_rows(base, models["tied"], shape)
        + train_rows(base, models, shape)
    )
    seconds = time.perf_counter() - start
    lines = [title, table(rows, judge=not args.quick), RATIO_NOTE, footer(seconds)]
    print(*lines[1:], sep="\n\n")
    output = args.output or RESULTS_DIR / ("heads.quick.json" if args.quick else "heads.json")
    write_json(output, mode, shape, lines, rows, seconds)


if __name__ == "__main__":
    main()
