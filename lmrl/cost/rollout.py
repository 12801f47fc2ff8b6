"""A rollout's cost with and without the KV cache kept across turns (`lmrl bench-cost --shape rollout`).

The same greedy policy plays the same episodes of LMRL-Gym's fully observed maze (`lmrl_gym_maze`: one
user message per observation, 100 moves at most) twice per round: `GeneratePolicy` reading each turn's
whole prompt again, and `GeneratePolicy(reuse_cache=True)` feeding only what the prompt added
([`ConversationCache`]). Both see the whole conversation (no `max_length`), so they decode the same
replies; the rows give the time per rollout (ratio reused / plain, with its interval over rounds) and the
prompt tokens each one fed. On SmolLM2-135M-Instruct in the full plan, a tiny GPT-2 in the quick one.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

from ..envs.rollout import rollout
from ..generation import GeneratePolicy
from ..tasks.lmrl_gym_maze import TASK
from .measure import interleaved, median_ratio, ratio_interval
from .report import Row
from .shapes import RolloutBench


def _prompt_tokens(tokenizer, episodes) -> int:
    """The prompt tokens a plain policy read to play `episodes`: each reply's whole conversation before it."""
    from ..data.tokenization import encode_prompt

    return sum(len(encode_prompt(tokenizer, episode.messages[:k])) for episode in episodes
               for k, message in enumerate(episode.messages) if message["role"] == "assistant")


def rollout_rows(model, tokenizer, bench: RolloutBench, device: torch.device) -> list[Row]:
    make_env = lambda: TASK.make_env("eval", observation="full")  # noqa: E731
    seeds = list(range(bench.episodes))
    played = {}

    def plain():
        policy = GeneratePolicy(model, tokenizer, max_new_tokens=TASK.max_new_tokens)
        played["plain"] = rollout(make_env, policy, seeds, bench.turns, progress=False)

    def reused():
        policy = GeneratePolicy(model, tokenizer, max_new_tokens=TASK.max_new_tokens, reuse_cache=True)
        played["reused"] = rollout(make_env, policy, seeds, bench.turns, progress=False)
        played["cache"] = policy.cache

    times = interleaved({"plain": plain, "reused": reused}, bench.repeats, device, warm_up=False)
    same = [e.messages for e in played["plain"]] == [e.messages for e in played["reused"]]
    turns = sum(sum(m["role"] == "assistant" for m in e.messages) for e in played["plain"])
    section = f"rollout, {bench.episodes} maze episodes x {bench.turns} turns (greedy; same replies: {same})"
    fed, read = played["cache"].fed_tokens, _prompt_tokens(tokenizer, played["plain"])
    seconds = {name: statistics.median(samples) for name, samples in times.items()}
    return [
        Row(bench.shape, section, "plain: each turn reads its whole prompt", turns / seconds["plain"], "turns/s",
            1.0, seconds=seconds["plain"], samples=times["plain"]),
        Row(bench.shape, section, "reuse_cache: each turn feeds what its prompt added", turns / seconds["reused"],
            "turns/s", median_ratio(times["reused"], times["plain"]), seconds=seconds["reused"],
            samples=times["reused"], ratio_interval=ratio_interval(times["reused"], times["plain"])),
        Row(bench.shape, section, "prompt tokens fed, plain", read, "tokens", 1.0),
        Row(bench.shape, section, "prompt tokens fed, reuse_cache", fed, "tokens", fed / read),
    ]


def run_rollout(bench: RolloutBench, device: torch.device, progress: Callable[[str], None]) -> tuple[list[Row], str | None]:
    """The rollout rows on the plan's model (`lmrl fetch-model`'s, skipped with a note when it cannot be
    fetched, or a tiny GPT-2). Returns the rows and the note (None when they ran)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if bench.model == "tiny":
        from ..models.tiny import build_tiny

        data = TASK.make_data(8, seed=0, progress=False, observation="full")
        model, tokenizer = build_tiny([e.as_row() for e in data], chat_template=True)
    else:
        from ..fetch import FetchError, fetch_model

        try:
            path = fetch_model(bench.model)
        except (FetchError, ValueError, OSError) as err:
            return [], (f"rollout rows skipped: `lmrl fetch-model {bench.model}` failed ({err}). Fetch it, then run "
                        f"`lmrl bench-cost --shape {bench.name}`.")
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(path)
    progress(f"{bench.name}: {bench.shape}, {bench.episodes} episodes x {bench.turns} turns, {bench.repeats} rounds")
    return rollout_rows(model.to(device).eval(), tokenizer, bench, device), None
