"""Pad token-level rows into a batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def left_pad(prompts: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists for generation: `(input_ids, attention_mask)`, both [B, max length]."""
    length = max(map(len, prompts))
    ids = torch.tensor([[pad_token_id] * (length - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


EPISODE_PADDING = {"input_ids": None, "attention_mask": 0, "action_mask": 0, "rewards": 0.0}  # None: the pad token


@dataclass
class EpisodeCollator:
    """Right-pads the token-level columns to the batch's longest row and stacks the per-row numbers.

    Token-level (list) columns are padded from a pad map: `input_ids` (with `pad_token_id`),
    `attention_mask`, `action_mask` and `rewards` always, plus the columns an algorithm declares in
    `pad_values` (column -> pad value; a float pad value makes a float tensor). Per-row numbers:
    `dones` [B] (1.0 when a row has none) and the columns declared in `scalar_columns`. Other
    columns are left out of the batch.

    Example:
        ```python
        >>> collate = EpisodeCollator(pad_token_id=0, pad_values={"context_mask": 0}, scalar_columns=("outcome",))
        >>> batch = collate([{"input_ids": [5, 6], "attention_mask": [1, 1], "action_mask": [0, 1],
        ...                   "rewards": [0.0, 1.0], "dones": 1.0, "context_mask": [1], "outcome": 2}])
        >>> batch["input_ids"].shape, batch["context_mask"].tolist(), batch["outcome"].tolist()
        (torch.Size([1, 2]), [[1, 0]], [2])
        ```
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    pad_values: dict[str, int | float] = field(default_factory=dict)
    scalar_columns: tuple[str, ...] = ()

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {}
        for key, pad in {**EPISODE_PADDING, **self.pad_values}.items():
            if key not in features[0]:
                if key in EPISODE_PADDING:
                    raise KeyError(f"EpisodeCollator: the rows have no {key!r} column; collate rows tokenized by "
                                   "lmrl.data.prepare_dataset.")
                raise KeyError(f"EpisodeCollator: pad_values declares {key!r}, but the rows have no such column.")
            pad = self.pad_token_id if pad is None else pad
            dtype = torch.float32 if isinstance(pad, float) else torch.long
            batch[key] = torch.tensor([list(f[key]) + [pad] * (length - len(f[key])) for f in features], dtype=dtype)
        for key in self.scalar_columns:
            batch[key] = torch.tensor([f[key] for f in features])
        batch["dones"] = torch.tensor([float(f.get("dones", 1.0)) for f in features])
        return batch
