"""Pad token-level rows into a batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def left_pad(prompts: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists for generation: `(input_ids, attention_mask)`, both [B, max length]."""
    length = max(map(len, prompts))
    ids = torch.tensor([[pad_token_id] * (length - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


_PADDED = {"input_ids": None, "attention_mask": 0, "action_mask": 0, "rewards": 0.0}


@dataclass
class EpisodeCollator:
    """Right-pads `input_ids, attention_mask, action_mask, rewards`; stacks `dones` [B].

    Example:
        ```python
        >>> collate = EpisodeCollator(pad_token_id=0)
        >>> batch = collate([{"input_ids": [5, 6], "attention_mask": [1, 1], "action_mask": [0, 1],
        ...                   "rewards": [0.0, 1.0], "dones": 1.0}])
        >>> batch["input_ids"].shape
        torch.Size([1, 2])
        ```
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {}
        for key, pad in _PADDED.items():
            pad = self.pad_token_id if pad is None else pad
            dtype = torch.float32 if key == "rewards" else torch.long
            rows = [list(f[key]) + [pad] * (length - len(f[key])) for f in features]
            batch[key] = torch.tensor(rows, dtype=dtype)
        if "context_mask" in features[0]:  # CALM: which tokens are the task context
            batch["context_mask"] = torch.tensor(
                [list(f["context_mask"]) + [0] * (length - len(f["context_mask"])) for f in features])
        for key in ("outcome", "outcome_query"):  # CALM: outcome class and where it is predicted from
            if key in features[0]:
                batch[key] = torch.tensor([int(f[key]) for f in features])
        batch["dones"] = torch.tensor([float(f.get("dones", 1.0)) for f in features])
        return batch
