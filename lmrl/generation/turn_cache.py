"""A batch of conversations' KV cache, kept from one turn to the next.

In a rollout the conversation only grows: each turn's prompt is the last turn's prompt, the reply and
the new observation. Without a kept cache, `generate()` reads the whole prompt again every turn, so an
episode of n turns costs O(n^2) tokens of prefill. [`ConversationCache`] keeps each conversation's KV
states between [`generate_replies`] calls and feeds only the tokens a prompt adds.

Which tokens are reused is decided by the token ids, never assumed: a prompt reuses the longest prefix
it shares with a kept row (its earlier prompt and reply as they were fed), and everything after the
first differing token is fed again. Kept rows are matched to the new prompts by that shared prefix, so
episodes may finish (their rows are dropped) or arrive in any order.

Each kept row holds the key/value states of its token ids, each computed attending to exactly the
earlier ones, with its position id its index among them: the states a fresh pass over those ids would
compute. A reused prefix therefore scores as a fresh pass, up to floating-point summation order
(tests/test_turn_cache.py). A batch is assembled by left-padding the rows' states; a row whose new
tokens far outnumber the others' (a new conversation, a restarted window) is first brought up to date
in a forward pass of its own, so the batch is not padded to its length.

With `max_length`, a prompt is a window over the conversation's tokens that starts at a fixed token and
grows with the conversation; when it would pass `max_length` it starts again at the last
`max_length // 2` tokens (and that row is read anew). A prompt therefore holds between half and all of
`max_length` tokens, where the plain path ([`prompt_ids`]) always holds the last `max_length`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from ..compat import CACHE_KEY, output_cache
from ..data.collator import left_pad


@dataclass
class _Row:
    start: int  # where the window starts in the conversation's prompt ids
    tokens: list[int] = field(default_factory=list)  # the ids whose states are kept, in order
    states: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # per layer: [heads, n, d] x 2


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ConversationCache:
    """The KV cache of a batch of conversations across turns (see the module's docstring).

    Pass one to [`generate_replies`] (or `GeneratePolicy(..., reuse_cache=True)`) for every turn of the
    same rollout. Only models whose cache is a plain `DynamicCache` (every layer a full-attention
    `DynamicLayer`) are supported: a sliding-window or static cache is refused.

    Example:
        ```python
        >>> cache = ConversationCache()
        >>> first = generate_replies(model, tokenizer, conversations, cache=cache, max_new_tokens=8)
        >>> later = generate_replies(model, tokenizer, longer_conversations, cache=cache, max_new_tokens=8)
        ```
    """

    def __init__(self):
        self.max_length: int | None = None  # the windows' bound, set by the first prepare()
        self._rows: list[_Row] = []
        self._pending = None  # (rows, cache, mask) between prepare() and update()
        self.fed_tokens = 0  # prompt tokens fed to the model (not reused), over all calls
        self.reused_tokens = 0  # prompt tokens read from the kept states, over all calls
        self.caught_up_tokens = 0  # of the fed ones, those fed in a catch-up pass before generate()

    def _window(self, ids: list[int], start: int) -> int:
        """Where the window over `ids` starts: `start`, unless the window would pass max_length."""
        if self.max_length is not None and len(ids) - start > self.max_length:
            return len(ids) - self.max_length // 2
        return start

    def _match(self, prompts: list[list[int]]) -> list[tuple[_Row, int]]:
        """For each prompt: its row (a kept one cut to the shared prefix, or a new one) and how many of
        its window's tokens that row holds; kept rows are used at most once."""
        free = set(range(len(self._rows)))
        plan = []
        for ids in prompts:
            best, start, best_shared = -1, self._window(ids, 0), 0
            for r in sorted(free):
                row = self._rows[r]
                if self._window(ids, row.start) != row.start:
                    continue  # the window moved on: this row's states are not a prefix of it
                shared = min(_shared_prefix(row.tokens, ids[row.start:]), len(ids) - row.start - 1)
                if shared > best_shared:
                    best, start, best_shared = r, row.start, shared
            if best < 0:
                plan.append((_Row(start), 0))
                continue
            free.discard(best)
            row = self._rows[best]
            kept = _Row(start, row.tokens[:best_shared], [(k[:, :best_shared], v[:, :best_shared]) for k, v in row.states])
            plan.append((kept, best_shared))
        return plan

    @staticmethod
    def _batch(rows: list[_Row], new: list[list[int]], pad: int):
        """The rows' kept states left-padded into one DynamicCache, and the ids and mask of kept + new tokens."""
        from transformers import DynamicCache

        kept_ids, kept_mask = left_pad([row.tokens for row in rows], pad) if any(r.tokens for r in rows) else (
            torch.zeros((len(rows), 0), dtype=torch.long), torch.zeros((len(rows), 0), dtype=torch.long))
        new_ids, new_mask = left_pad(new, pad)
        kv = DynamicCache()
        width = kept_ids.shape[1]
        if width:
            reference = next(r for r in rows if r.tokens)
            for layer, (k0, v0) in enumerate(reference.states):
                keys = k0.new_zeros((len(rows), k0.shape[0], width, k0.shape[2]))
                values = v0.new_zeros((len(rows), v0.shape[0], width, v0.shape[2]))
                for i, row in enumerate(rows):
                    if row.tokens:
                        keys[i, :, width - len(row.tokens):] = row.states[layer][0]
                        values[i, :, width - len(row.tokens):] = row.states[layer][1]
                kv.update(keys, values, layer)
        ids = torch.cat([kept_ids, new_ids], 1)
        mask = torch.cat([kept_mask, new_mask], 1)
        return ids, mask, kv

    @staticmethod
    def _read_back(rows: list[_Row], kv, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Each row's tokens and states from a batch cache over `ids` [B, n] with `mask` [B, n]."""
        layers = getattr(kv, "layers", None)
        if layers is None or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
            kinds = sorted({type(layer).__name__ for layer in layers or []}) or [type(kv).__name__]
            raise ValueError(f"ConversationCache: the model's KV cache is {', '.join(kinds)}; reusing it across "
                             "turns needs a plain DynamicCache of full-attention layers. Decode without reuse_cache.")
        for i, row in enumerate(rows):
            keep = mask[i].bool()
            row.tokens = ids[i][keep].tolist()
            where = keep.to(layers[0].keys.device)
            row.states = [(layer.keys[i][:, where], layer.values[i][:, where]) for layer in layers]

    def _feed(self, model, rows: list[_Row], new: list[list[int]], pad: int) -> None:
        """Run `model` over the rows' `new` tokens (no generation) and keep their states."""
        ids, mask, kv = self._batch(rows, new, pad)
        device = model.device
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -max(map(len, new)):]
        inputs = {"input_ids": ids[:, -positions.shape[1]:].to(device), "attention_mask": mask.to(device),
                  "position_ids": positions.to(device), CACHE_KEY: kv, "use_cache": True}
        if "logits_to_keep" in inspect.signature(model.forward).parameters:
            inputs["logits_to_keep"] = 1
        out = model(**inputs)
        self._read_back(rows, output_cache(out), ids, mask)

    def prepare(self, model, prompts: list[list[int]], pad_token_id: int, max_length: int | None = None):
        """The inputs for `model.generate()` continuing the conversations whose full prompt ids are
        `prompts`: `(input_ids, attention_mask, {cache keyword: cache})`, the cache holding the reused
        states (generate() feeds only the positions after it). Call `update` with generate()'s sequences
        next. `max_length` bounds the windows (and must stay the same within a rollout)."""
        if max_length is not None and not (isinstance(max_length, int) and max_length >= 2):
            raise ValueError(f"ConversationCache: max_length must be an integer >= 2 or None, got {max_length!r}.")
        if max_length != self.max_length and self._rows:
            raise ValueError(f"ConversationCache: max_length changed from {self.max_length} to {max_length} within "
                             "one rollout; use a new ConversationCache for the new setting.")
        self.max_length = max_length
        plan = self._match(prompts)
        rows = [row for row, _ in plan]
        new = [ids[row.start + shared:] for ids, (row, shared) in zip(prompts, plan)]
        self.reused_tokens += sum(shared for _, shared in plan)
        self.fed_tokens += sum(map(len, new))
        # rows far behind the others (new, or restarted) catch up on their own, so the batch is not padded to them
        typical = sorted(map(len, new))[len(new) // 2]
        behind = [i for i, tokens in enumerate(new) if len(tokens) > 2 * typical + 8]
        if behind:
            self.caught_up_tokens += sum(len(new[i]) - typical for i in behind)
            self._feed(model, [rows[i] for i in behind], [new[i][:-typical] for i in behind], pad_token_id)
            for i in behind:
                new[i] = new[i][-typical:]
        ids, mask, kv = self._batch(rows, new, pad_token_id)
        self._pending = (rows, kv, mask)
        return ids, mask, {CACHE_KEY: kv}

    def update(self, sequences: torch.Tensor) -> None:
        """Keep what `generate()` left in the cache that `prepare` gave it; `sequences` [B, prompt + new]
        as generate() returned them."""
        rows, kv, mask = self._pending
        cached = kv.get_seq_length()  # generate() never feeds its last token: it is not in the cache
        mask = torch.cat([mask, mask.new_ones((len(rows), cached - mask.shape[1]))], 1)
        self._read_back(rows, kv, sequences[:, :cached].cpu(), mask)
        self._rows, self._pending = rows, None
