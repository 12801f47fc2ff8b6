"""One tokenization path for every algorithm: episode -> token-level MDP tensors.

Each message is tokenized on its own and the ids concatenated, so the action mask is exact:
- with a chat template, a message's text is the part of the rendered conversation that it adds
  (the assistant header "<|im_start|>assistant\\n" counts as observation, the reply and its
  end-of-turn token as the action);
- without one, messages are concatenated as they are, after the tokenizer's own start tokens
  (BOS for Llama-style tokenizers, nothing for GPT-2: the same ids a plain text prompt gets in
  `pipeline()`), and every assistant turn ends with the EOS token. An episode that opens with an
  assistant turn gets a BOS (or EOS) first, so its first action has a state.
The prompt used at decoding time (`encode_prompt`) goes through the same function, so a policy sees
exactly the token sequences it was trained on.

With `max_length`, the work is bounded by it, not by the row: a message longer than `text_budget`
characters (at least 4 * max_length tokens' worth, and never under 65536) is cut to its last
`text_budget` characters before it is tokenized, and the episode counts as truncated. The tokens where
it was cut may differ from the whole message's, but they lie far before the last max_length tokens,
which are the ones kept.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass

from transformers.utils.chat_template_utils import render_jinja_template

from .schema import Episode, Turn

Segment = tuple[list[int], bool, float]  # (token ids, is_action, reward after it)


@dataclass
class TokenizedEpisode:
    input_ids: list[int]
    action_mask: list[int]
    rewards: list[float]
    done: bool
    truncated: bool

    def as_row(self, episode_return: float) -> dict:
        return {
            "input_ids": self.input_ids,
            "attention_mask": [1] * len(self.input_ids),
            "action_mask": self.action_mask,
            "rewards": self.rewards,
            "dones": float(self.done),
            "returns": episode_return,
            "truncated": self.truncated,
        }


def eos_token_id(tokenizer) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(
            f"The tokenizer ({type(tokenizer).__name__}) has no eos_token, so the end of an assistant "
            "turn cannot be marked. Set one, e.g. tokenizer.eos_token = '</s>' (adding it to the "
            "vocabulary if needed), or use a tokenizer with a chat template."
        )
    return eos


def pad_token_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return eos_token_id(tokenizer)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


_REPLY = "\x00lmrl-reply\x00"  # stands for a reply's text; no template writes it


def _opening_header(tokenizer) -> str:
    """What the chat template renders before a reply that opens the conversation: the text before
    that reply in a conversation of that reply alone (a template may add a default system message
    there, as SmolLM2's does; `apply_chat_template` refuses an empty conversation, so the template is
    rendered directly)."""
    try:
        rendered, _ = render_jinja_template(
            conversations=[[{"role": "assistant", "content": _REPLY}]], chat_template=tokenizer.get_chat_template(),
            **tokenizer.special_tokens_map,
        )
        if _REPLY not in rendered[0]:
            raise ValueError("the reply's text is not in the rendered conversation")
    except Exception as err:  # e.g. a template that requires a user message first
        raise ValueError(
            "The tokenizer's chat template cannot render a conversation that opens with an assistant message "
            f"({type(err).__name__}: {err}). Put a user or system message first in such rows."
        ) from err
    return rendered[0][: rendered[0].index(_REPLY)]


def _render(tokenizer, turns: list[Turn], add_generation_prompt: bool = False) -> str:
    if not turns:
        return _opening_header(tokenizer) if add_generation_prompt else ""
    messages = Episode(turns).messages()
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _suffix(longer: str, prefix: str, what: str) -> str:
    if not longer.startswith(prefix):
        raise ValueError(
            f"The tokenizer's chat template renders {what} so that earlier messages change when a "
            "message is added; lmrl needs each message to append text. Use a template that renders "
            "the history unchanged (or remove the chat template to use plain concatenation)."
        )
    return longer[len(prefix) :]


def _chat_segments(tokenizer, turns: list[Turn], add_generation_prompt: bool) -> list[Segment]:
    eos_text = tokenizer.eos_token
    segments: list[Segment] = []
    previous = ""
    for i, turn in enumerate(turns):
        if not turn.is_action:
            current = _render(tokenizer, turns[: i + 1])
            segments.append((_ids(tokenizer, _suffix(current, previous, f"message {i}")), False, 0.0))
            previous = current
            continue
        header_end = _render(tokenizer, turns[:i], add_generation_prompt=True)
        current = _render(tokenizer, turns[: i + 1])
        header = _suffix(header_end, previous, f"message {i}'s header")
        body = _suffix(current, header_end, f"message {i}")
        cut = body.find(eos_text, len(turn.content)) if eos_text else -1
        if cut >= 0:  # the template closes the turn with EOS: it belongs to the action
            action_ids = _ids(tokenizer, body[: cut + len(eos_text)])
            trailer = body[cut + len(eos_text) :]
        else:
            action_ids = _ids(tokenizer, body) + [eos_token_id(tokenizer)]
            trailer = ""
        segments.append((_ids(tokenizer, header), False, 0.0))
        segments.append((action_ids, True, turn.reward))
        if trailer:
            segments.append((_ids(tokenizer, trailer), False, 0.0))
        previous = current
    if add_generation_prompt:
        header_end = _render(tokenizer, turns, add_generation_prompt=True)
        segments.append((_ids(tokenizer, _suffix(header_end, previous, "the generation prompt")), False, 0.0))
    return segments


def _start_ids(tokenizer) -> list[int]:
    """The ids the tokenizer itself puts before a text (e.g. Llama's <s>; nothing for GPT-2)."""
    with_specials = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_specials) - len(plain) + 1):
        if with_specials[start : start + len(plain)] == plain:
            return with_specials[:start]
    return []


def _plain_segments(tokenizer, turns: list[Turn]) -> list[Segment]:
    start = _start_ids(tokenizer)
    if not start and turns and turns[0].is_action:  # the first action needs a state to be chosen in
        start = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos_token_id(tokenizer)]
    segments: list[Segment] = [(start, False, 0.0)]
    for turn in turns:
        if turn.is_action:
            segments.append((_ids(tokenizer, turn.content) + [eos_token_id(tokenizer)], True, turn.reward))
        else:
            segments.append((_ids(tokenizer, turn.content), False, 0.0))
    return segments


def episode_segments(tokenizer, turns: list[Turn], add_generation_prompt: bool = False) -> list[Segment]:
    if getattr(tokenizer, "chat_template", None):
        return _chat_segments(tokenizer, turns, add_generation_prompt)
    return _plain_segments(tokenizer, turns)


TEXT_BUDGET_FLOOR = 1 << 16
_LONGEST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def longest_token_chars(tokenizer) -> int:
    """How many characters one token of the vocabulary covers at most (its longest entry)."""
    try:
        return _LONGEST[tokenizer]
    except (KeyError, TypeError):
        longest = max(map(len, tokenizer.get_vocab()), default=1)
        with contextlib.suppress(TypeError):  # a tokenizer that cannot be weakly referenced is measured each time
            _LONGEST[tokenizer] = longest
        return longest


def text_budget(tokenizer, max_length: int) -> int:
    """The characters of a message that an episode truncated to its last `max_length` tokens can need:
    4 * max_length tokens' worth (no token covers more than `longest_token_chars`), at least 65536."""
    return max(TEXT_BUDGET_FLOOR, 4 * max_length * longest_token_chars(tokenizer))


def tokenize_episode(tokenizer, episode: Episode, max_length: int | None = None) -> TokenizedEpisode:
    """Token ids, action mask (1 on action tokens) and rewards (on each action's last token); with
    `max_length`, the last max_length tokens (see the module docstring for messages that are cut)."""
    input_ids: list[int] = []
    action_mask: list[int] = []
    rewards: list[float] = []
    turns, cut = episode.turns, False
    if max_length is not None:
        budget = text_budget(tokenizer, max_length)
        if any(len(turn.content) > budget for turn in turns):
            turns = [Turn(t.role, t.content[-budget:], t.reward) if len(t.content) > budget else t for t in turns]
            cut = True
    for ids, is_action, reward in episode_segments(tokenizer, turns):
        input_ids += ids
        action_mask += [int(is_action)] * len(ids)
        rewards += [0.0] * len(ids)
        if is_action and ids:
            rewards[-1] = reward
    truncated = cut or (max_length is not None and len(input_ids) > max_length)
    if truncated:  # keep the end of the episode: that is where its outcome is
        input_ids, action_mask, rewards = input_ids[-max_length:], action_mask[-max_length:], rewards[-max_length:]
    return TokenizedEpisode(input_ids, action_mask, rewards, episode.done, truncated)


def encode_prompt(tokenizer, messages: list[dict] | str) -> list[int]:
    """Token ids of a conversation so far, ready for the assistant's next reply.

    Uses the same segmentation as training, so decoding starts from the exact context the
    policy learned in. `messages` is a list of {"role", "content"} dicts or a single user string.
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    ids: list[int] = []
    for segment_ids, _, _ in episode_segments(tokenizer, Episode.from_messages(messages).turns,
                                              add_generation_prompt=True):
        ids += segment_ids
    return ids
