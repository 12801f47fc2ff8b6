"""A feature cache: a frozen causal LM's last hidden states over a tokenized dataset, computed once.

Heads that read a frozen trunk (ILQL's and Monte-Carlo's Q and V heads, the behaviour head) need the
trunk's last hidden state at every token, and those never change while the heads train: one inference
pass stores them, and every epoch after it runs the heads only (docs/design.md, section 5: Trainers).

A cache is a folder:
    feature_cache.json        what it was built from: the model's weights fingerprint, the tokenizer's,
                              the token ids' (data, max_length and truncation together), the hidden size
                              and dtype, and whether it is complete
    shard-00000.safetensors   `shard_rows` rows: `hidden` [tokens, h] in the model's dtype, `input_ids`
    ...                       [tokens] (int32) and `offsets` [rows + 1] (int64), read memory-mapped
Shards are written whole (to a temporary name, then renamed), so a build that is killed resumes at
the first missing shard. Opening a cache with another model, tokenizer or data is an error that says
which differs.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..models.adapters import weights_fingerprint
from ..models.policy_logits import decoder_of
from .base import check_ranges
from .checkpointing import digest, tokenizer_fingerprint

MANIFEST = "feature_cache.json"
FORMAT = 1


@dataclass
class FeatureCacheArguments:
    """The settings of a trainer that can read a frozen trunk from a feature cache (mixed into its config,
    which calls `check_feature_cache_arguments` in `__post_init__`).

        feature_cache: the cache folder (the train split in `FOLDER/train`, the eval split in `FOLDER/eval`):
            built on the first run (a stopped build resumes), reused after. `None`: no cache.
        feature_cache_batch_tokens: padded tokens per forward pass while the cache is built (bounds memory).
    """

    feature_cache: str | None = field(
        default=None,
        metadata={"help": "Folder of the frozen trunk's cached hidden states: built there on the first run (a stopped "
                  "build resumes), reused after; the trunk never trains and the checkpoint holds only what "
                  "trained, naming the base model. None: the trunk trains as usual."},
    )
    feature_cache_batch_tokens: int = field(
        default=8192, metadata={"help": "Padded tokens per forward pass while building the feature cache."}
    )

    def check_feature_cache_arguments(self) -> None:
        check_ranges(self, {
            "feature_cache_batch_tokens": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
        })


def token_ids_fingerprint(dataset) -> str:
    """A digest of a tokenized dataset's token ids, row by row (lengths included)."""
    import pyarrow.compute as pc

    column = dataset.data.column("input_ids")
    return digest(len(dataset), pc.list_value_length(column).to_numpy(zero_copy_only=False).tobytes(),
                   pc.list_flatten(column).to_numpy(zero_copy_only=False).astype("int64").tobytes())


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2))
    os.replace(partial, path)


class FeatureCache:
    """Read a feature cache (memory-mapped): `cache.hidden(row)` is that row's [tokens, h] hidden states.

    Example:
        ```python
        >>> cache = FeatureCache("runs/cache/doors")
        >>> cache.check(model_fingerprint=..., tokenizer_fingerprint=..., data_fingerprint=...)
        >>> cache.hidden(0).shape
        torch.Size([31, 576])
        ```
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        try:
            self.manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{self.folder} is not a feature cache (it has no {MANIFEST}); build one with "
                             "`lmrl cache-features RECIPE` or let `lmrl train` build it.") from None
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err}): the cache's manifest is damaged; delete the "
                             "folder and build the cache again.") from None
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: cache format {self.manifest.get('format')!r}; this lmrl reads format {FORMAT}. "
                             "Build the cache again.")
        if not self.manifest.get("complete"):
            raise ValueError(f"{self.folder}: the feature cache is incomplete (its build was stopped); run the same "
                             "build again to finish it.")
        self.rows = int(self.manifest["rows"])
        self.shard_rows = int(self.manifest["shard_rows"])
        self._handles: dict[int, object] = {}
        self._offsets: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return self.rows

    def check(self, **fingerprints: str) -> None:
        """Raise a `ValueError` naming what differs when a given fingerprint (`model_fingerprint`,
        `tokenizer_fingerprint`, `data_fingerprint`) is not the one the cache was built with."""
        check_manifest(self.manifest, self.folder, fingerprints)

    def _shard(self, index: int):
        if index not in self._handles:
            path = self.folder / _shard_name(index)
            try:
                handle = safe_open(str(path), framework="pt")
            except (OSError, Exception) as err:  # safetensors raises its own error type for a damaged header
                raise ValueError(f"{path}: cannot read this shard of the feature cache ({err}); delete the cache "
                                 "folder and build it again.") from None
            self._handles[index] = handle
            self._offsets[index] = handle.get_tensor("offsets").tolist()
        return self._handles[index], self._offsets[index]

    def hidden(self, row: int) -> torch.Tensor:
        """Row `row`'s last hidden states [tokens, h], in the dtype they were stored in."""
        if not 0 <= row < self.rows:
            raise IndexError(f"{self.folder}: row {row} is outside the cache's {self.rows} rows.")
        handle, offsets = self._shard(row // self.shard_rows)
        local = row % self.shard_rows
        return handle.get_slice("hidden")[offsets[local]:offsets[local + 1]]

    def input_ids(self, row: int) -> torch.Tensor:
        handle, offsets = self._shard(row // self.shard_rows)
        local = row % self.shard_rows
        return handle.get_slice("input_ids")[offsets[local]:offsets[local + 1]]

    def nbytes(self) -> int:
        """Size of the cache's files on disk."""
        return sum(path.stat().st_size for path in self.folder.glob("shard-*.safetensors"))


def check_manifest(manifest: dict, folder: Path, fingerprints: dict) -> None:
    names = {"model_fingerprint": ("model", "model"), "tokenizer_fingerprint": ("tokenizer", "tokenizer"),
             "data_fingerprint": ("data", "token ids (the data, max_length or truncation differ)")}
    for key, value in fingerprints.items():
        if value is not None and manifest.get(key) != value:
            what, detail = names[key]
            built = f" ({manifest['model']})" if key == "model_fingerprint" and manifest.get("model") else ""
            raise ValueError(
                f"{folder}: this feature cache was built from another {detail}: its {what} fingerprint is "
                f"{manifest.get(key)}{built}, this run's is {value}. Point feature_cache at a new folder (or "
                "delete this one) to build a cache for this run.")


def _batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Row indices grouped by length, each group padded to at most `batch_tokens` tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current = [], []
    for index in order:
        if current and lengths[index] * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def _shard_features(model, rows: list[list[int]], pad_id: int, batch_tokens: int, device) -> list[torch.Tensor]:
    hidden: list[torch.Tensor | None] = [None] * len(rows)
    decoder = decoder_of(model)  # its last hidden state only: no logits, no per-layer outputs kept
    accepts_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    for batch in _batches([len(r) for r in rows], batch_tokens):
        length = max(len(rows[i]) for i in batch)
        ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for j, i in enumerate(batch):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            mask[j, : len(rows[i])] = 1
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "return_dict": True}
        if decoder is not None:
            last = decoder(**inputs).last_hidden_state
        else:
            extra = {"logits_to_keep": 1} if accepts_keep else {}  # the vocabulary's logits are not stored
            last = model(**inputs, output_hidden_states=True, **extra).hidden_states[-1]
        for j, i in enumerate(batch):
            hidden[i] = last[j, : len(rows[i])].to("cpu", copy=True)
    return hidden


def build_feature_cache(model, tokenizer, dataset, folder: str | os.PathLike, model_name: str,
                        shard_rows: int = 64, batch_tokens: int = 8192, progress: bool = True,
                        model_fingerprint: str | None = None) -> FeatureCache:
    """Run the frozen causal LM `model` once over the tokenized `dataset` (no grad, in the model's dtype)
    and store each row's last hidden states in `folder`; resume a stopped build of the same cache.

    `model_name` (its hub id or path) is written into the manifest; `model_fingerprint`, when the caller has
    it, is the model's `weights_fingerprint` (computed here otherwise). Memory stays bounded by one shard
    (`shard_rows` rows) and one batch (about `batch_tokens` padded tokens)."""
    from ..data.tokenization import pad_token_id

    folder = Path(folder)
    model_fp = model_fingerprint or weights_fingerprint(model)
    fingerprints = {"model_fingerprint": model_fp, "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
                    "data_fingerprint": token_ids_fingerprint(dataset)}
    manifest_path = folder / MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as err:
            raise ValueError(f"{manifest_path} is not valid JSON ({err}); delete the folder and build again.") from None
        check_manifest(manifest, folder, fingerprints)
        if manifest.get("complete"):
            return FeatureCache(folder)
        shard_rows = int(manifest["shard_rows"])  # a resumed build keeps the shards it has written
    elif folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} holds other files and no {MANIFEST}: the feature cache is built into a new or "
                         "empty folder only (nothing is written over).")
    rows = len(dataset)
    hidden_size = model.config.get_text_config().hidden_size
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    manifest = {"format": FORMAT, "model": str(model_name), **fingerprints, "rows": rows, "shard_rows": shard_rows,
                "shards": math.ceil(rows / shard_rows), "hidden_size": hidden_size, "dtype": dtype, "complete": False}
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(manifest_path, manifest)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad_id = pad_token_id(tokenizer)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=rows, desc="Caching features", unit="row")
    try:
        for shard in range(manifest["shards"]):
            start, end = shard * shard_rows, min(rows, (shard + 1) * shard_rows)
            path = folder / _shard_name(shard)
            if path.is_file():
                if bar is not None:
                    bar.update(end - start)
                continue
            ids = dataset[start:end]["input_ids"]
            hidden = _shard_features(model, ids, pad_id, batch_tokens, device)
            offsets = torch.tensor([0, *torch.tensor([len(r) for r in ids]).cumsum(0).tolist()], dtype=torch.int64)
            tensors = {"hidden": torch.cat(hidden).contiguous(),
                       "input_ids": torch.tensor([t for r in ids for t in r], dtype=torch.int32),
                       "offsets": offsets}
            partial = path.with_name(path.name + ".partial")
            save_file(tensors, str(partial), metadata={"format": "pt"})
            os.replace(partial, path)
            if bar is not None:
                bar.update(end - start)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    _write_json(manifest_path, {**manifest, "complete": True})
    return FeatureCache(folder)


class CachedFeaturesCollator:
    """Wraps an episode collator: adds `trunk_hidden_states` [B, T, h] (right-padded with zeros) read from
    the cache for each row's `cache_row`."""

    def __init__(self, collator, cache: FeatureCache, dtype: torch.dtype = torch.float32):
        self.collator, self.cache, self.dtype = collator, cache, dtype

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        length = batch["input_ids"].shape[1]
        states = torch.zeros((len(features), length, self.cache.manifest["hidden_size"]), dtype=self.dtype)
        for j, row in enumerate(features):
            hidden = self.cache.hidden(int(row["cache_row"]))
            if hidden.shape[0] != len(row["input_ids"]):
                raise ValueError(f"{self.cache.folder}: row {row['cache_row']} holds {hidden.shape[0]} tokens and the "
                                 f"dataset's row {len(row['input_ids'])}: the cache belongs to other data.")
            states[j, : hidden.shape[0]] = hidden.to(self.dtype)
        batch["trunk_hidden_states"] = states
        return batch


class FrozenTrunkTrainerMixin:
    """What a trainer that reads a frozen trunk from a feature cache adds to `LMRLTrainer` (mixed in before
    it). The trainer's `_prepare_model` calls `_trunk_name` and keeps the model it trains, whose frozen trunk
    is `pretrained_model` and whose heads-only config names it, in `self._frozen_trunk`; its
    `_prepare_episodes` ends with `_cache_episodes`. Then each batch carries the rows' cached
    `trunk_hidden_states` (the eval split's from `FOLDER/eval`), and `model_inputs` passes them on."""

    _frozen_trunk = None

    def _trunk_name(self, trunk) -> str:
        """The name a heads-only checkpoint gives its base: the id or path the trunk was loaded from."""
        name = getattr(self, "_model_id", None) or getattr(trunk, "name_or_path", None) or trunk.config._name_or_path
        if not name:
            raise ValueError("feature_cache: the model was built in memory, so the heads-only checkpoint could not name "
                             "its base. Save the causal LM first and pass its path as the model.")
        return name

    def _cache_episodes(self, dataset, tokenizer, args, train: bool):
        """Build (or reuse) the cache of these tokenized rows in `FOLDER/train` or `FOLDER/eval`, and number
        the rows for `CachedFeaturesCollator`."""
        model = self._frozen_trunk
        folder = Path(args.feature_cache) / ("train" if train else "eval")
        if not hasattr(self, "_feature_caches"):
            self._feature_caches = {}
        self._feature_caches[train] = build_feature_cache(model.pretrained_model, tokenizer, dataset, folder, model.config.base_model,
                                            batch_tokens=args.feature_cache_batch_tokens,
                                            progress=not args.disable_tqdm,
                                            model_fingerprint=model.config.base_fingerprint)
        return dataset.add_column("cache_row", list(range(len(dataset))))

    def _setup_trainer(self, model, args, train_dataset, eval_dataset, processing_class, data_collator=None, **kwargs):
        super()._setup_trainer(model, args, train_dataset, eval_dataset, processing_class, data_collator, **kwargs)
        if not args.feature_cache:
            return
        dtype = next(self._frozen_trunk.v_head.parameters()).dtype
        collator = self.data_collator
        if train_dataset is not None:
            self.data_collator = CachedFeaturesCollator(collator, self._feature_caches[True], dtype)
        if eval_dataset is not None:
            self._eval_collator = CachedFeaturesCollator(collator, self._feature_caches[False], dtype)

    def get_eval_dataloader(self, eval_dataset=None):
        eval_collator = getattr(self, "_eval_collator", None)
        if eval_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def model_inputs(self, inputs: dict) -> dict:
        cached = {"trunk_hidden_states": inputs["trunk_hidden_states"]} if "trunk_hidden_states" in inputs else {}
        return {**super().model_inputs(inputs), **cached}
