"""A rollout's KV cache kept across turns (ConversationCache): the replies and scores are those of a fresh
pass over the same prompt, only the added tokens are fed, and bad uses are refused."""

import pytest
import torch

from lmrl.data.tokenization import encode_prompt
from lmrl.envs.rollout import rollout
from lmrl.generation import ConversationCache, GeneratePolicy, generate_replies
from lmrl.models import AutoModelForCausalLMWithILQLHeads
from lmrl.models.tiny import CHAT_TEMPLATE, tiny_for_tokenizer, train_tokenizer
from lmrl.recipes import parse_recipe
from lmrl.tasks.lmrl_gym_maze import TASK


@pytest.fixture(scope="module")
def maze_tokenizer():
    rows = TASK.make_data(20, seed=0, progress=False, observation="full")
    texts = [m["content"] for row in rows for m in row.messages] + ["user assistant system"]
    return train_tokenizer(texts, vocab_size=400, chat_template=CHAT_TEMPLATE)


def _conversations(n_turns: int, seeds=(0, 3, 7)) -> list[list[dict]]:
    """FO maze conversations of the ported task, each `n_turns` agent moves long (moves cycle)."""
    moves = ["move up", "move left", "move down", "move right", "jump"]
    out = []
    for seed in seeds:
        env = TASK.make_env("eval", observation="full")
        messages = [{"role": "user", "content": env.reset(seed)}]
        for t in range(n_turns):
            reply = moves[(seed + t) % len(moves)]
            observation, _, done, _ = env.step(reply)
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": observation}]
            assert not done
        out.append(messages)
    return out


def _scores(model, tokenizer, conversations, cache=None, max_length=None):
    out = generate_replies(model, tokenizer, conversations, cache=cache, max_length=max_length, max_new_tokens=4,
                           do_sample=False, return_dict_in_generate=True, output_logits=True)
    return out.texts, torch.stack(out.output.logits, 1)  # [B, steps, V]


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_reused_turns_score_as_a_fresh_pass_and_feed_only_the_added_tokens(maze_tokenizer, architecture):
    model = tiny_for_tokenizer(maze_tokenizer, architecture, hidden_size=32, num_layers=2, seed=1).eval()
    cache = ConversationCache()
    first = _conversations(1)
    _scores(model, maze_tokenizer, first, cache)
    fed_before = cache.fed_tokens
    # the next turn: conversations dropped and reordered, one new, each longer than its cached prompt
    later = _conversations(3, seeds=(7, 0, 11))
    texts, logits = _scores(model, maze_tokenizer, later, cache)
    fresh_texts, fresh_logits = _scores(model, maze_tokenizer, later)
    assert texts == fresh_texts
    torch.testing.assert_close(logits, fresh_logits, atol=1e-4, rtol=1e-4)
    # seeds 7 and 0 reuse their first prompt (at least); the new conversation (11) reads everything
    full = [encode_prompt(maze_tokenizer, c) for c in later]
    first_ids = [encode_prompt(maze_tokenizer, c) for c in first]
    assert cache.reused_tokens >= len(first_ids[2]) + len(first_ids[0])
    assert cache.fed_tokens - fed_before == sum(map(len, full)) - cache.reused_tokens
    assert cache.fed_tokens - fed_before < sum(map(len, full)) - len(first_ids[2]) - len(first_ids[0]) + 2


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_a_row_far_behind_catches_up_on_its_own_and_still_scores_as_a_fresh_pass(maze_tokenizer, architecture):
    model = tiny_for_tokenizer(maze_tokenizer, architecture, hidden_size=32, num_layers=2, seed=6).eval()
    cache = ConversationCache()
    _scores(model, maze_tokenizer, _conversations(1, seeds=(0, 3, 7)), cache)
    # two new, long conversations of different lengths
    later = _conversations(2, seeds=(0, 3, 7)) + _conversations(8, seeds=(5,)) + _conversations(6, seeds=(9,))
    texts, logits = _scores(model, maze_tokenizer, later, cache)
    fresh_texts, fresh_logits = _scores(model, maze_tokenizer, later)
    assert cache.caught_up_tokens > 0
    assert texts == fresh_texts
    torch.testing.assert_close(logits, fresh_logits, atol=1e-4, rtol=1e-4)


def test_guided_heads_decode_the_same_with_a_reused_cache(maze_tokenizer):
    base = tiny_for_tokenizer(maze_tokenizer, "llama", hidden_size=32, num_layers=2, seed=2)
    model = AutoModelForCausalLMWithILQLHeads.from_causal_lm(base, beta=4.0, behavior_adapter=True).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "pretrained_model" not in name:
                p.normal_(0, 0.3)
    cache = ConversationCache()
    _scores(model, maze_tokenizer, _conversations(1), cache)
    texts, logits = _scores(model, maze_tokenizer, _conversations(2), cache)
    fresh_texts, fresh_logits = _scores(model, maze_tokenizer, _conversations(2))
    assert cache.reused_tokens > 0
    assert texts == fresh_texts
    torch.testing.assert_close(logits, fresh_logits, atol=1e-4, rtol=1e-4)


def test_a_steered_policy_with_a_reused_cache_plays_the_same_episodes(maze_tokenizer):
    frozen = tiny_for_tokenizer(maze_tokenizer, "llama", hidden_size=32, num_layers=2, seed=8).eval()
    value = AutoModelForCausalLMWithILQLHeads.from_causal_lm(
        tiny_for_tokenizer(maze_tokenizer, "gpt2", hidden_size=32, num_layers=1, seed=9), beta=4.0).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in value.named_parameters():
            if "pretrained_model" not in name:
                p.normal_(0, 0.3)
    make_env = lambda: TASK.make_env("eval", observation="full")  # noqa: E731
    played = [rollout(make_env, GeneratePolicy(frozen, maze_tokenizer, max_new_tokens=4, steer=value, reuse_cache=reuse),
                      range(3), max_turns=4, progress=False) for reuse in (False, True)]
    assert [e.messages for e in played[1]] == [e.messages for e in played[0]]


def test_with_max_length_each_prompt_is_a_window_of_half_to_all_of_it(maze_tokenizer):
    model = tiny_for_tokenizer(maze_tokenizer, "llama", hidden_size=32, num_layers=2, seed=3).eval()
    cache = ConversationCache()
    max_length = 120
    seen_restart = False
    for turns in range(1, 9):
        conversations = _conversations(turns)
        texts, logits = _scores(model, maze_tokenizer, conversations, cache, max_length=max_length)
        for conversation, row in zip(conversations, cache._rows):
            ids = encode_prompt(maze_tokenizer, conversation)
            window = ids[row.start:]
            assert len(window) <= max_length
            assert len(ids) <= max_length or len(window) >= max_length // 2
            seen_restart |= row.start > 0
        # the replies are a fresh pass's over each window's token ids
        for i, (conversation, row) in enumerate(zip(conversations, cache._rows)):
            ids = torch.tensor([encode_prompt(maze_tokenizer, conversation)[row.start:]])
            fresh = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                   do_sample=False, pad_token_id=maze_tokenizer.pad_token_id,
                                   return_dict_in_generate=True, output_logits=True)
            steps = len(fresh.logits)
            torch.testing.assert_close(logits[i, :steps], torch.cat(fresh.logits), atol=1e-4, rtol=1e-4)
    assert seen_restart


def test_a_policy_with_a_reused_cache_plays_the_same_episodes(maze_tokenizer):
    model = tiny_for_tokenizer(maze_tokenizer, "gpt2", hidden_size=32, num_layers=2, seed=4).eval()
    make_env = lambda: TASK.make_env("eval", observation="full")  # noqa: E731
    plain = rollout(make_env, GeneratePolicy(model, maze_tokenizer, max_new_tokens=4), range(4), max_turns=6,
                    progress=False)
    policy = GeneratePolicy(model, maze_tokenizer, max_new_tokens=4, reuse_cache=True)
    reused = rollout(make_env, policy, range(4), max_turns=6, progress=False)
    assert [e.messages for e in reused] == [e.messages for e in plain]
    assert policy.cache.reused_tokens > policy.cache.fed_tokens  # six turns: most of each prompt is reused


def test_lmrl_eval_with_reuse_cache_plays_the_same_episodes(tmp_path):
    from pathlib import Path

    from lmrl.api import evaluate, make_data, train

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "lmrl_gym" / "wordle" / "bc.yaml"
    data = tmp_path / "wordle.jsonl"
    make_data("lmrl_gym_wordle", episodes=100, out=str(data), seed=0)
    common = ["--dataset", str(data), "--output_dir", str(tmp_path / "bc"), "--do_sample", "false"]
    train(recipe, [*common, "--max_steps", "3", "--disable_tqdm", "true",
                   "--tiny_model", "{architecture: llama, hidden_size: 32, num_layers: 1, vocab_size: 600}"])
    plain, reused = (evaluate(recipe, episodes=4, overrides=[*common, "--reuse_cache", flag], out_dir=str(tmp_path / flag))
                     for flag in ("false", "true"))
    assert reused["examples"] == plain["examples"] and reused["returns"] == plain["returns"]


def test_the_bench_rollout_rows_time_both_policies_on_the_same_replies(maze_tokenizer):
    from lmrl.cost.rollout import rollout_rows
    from lmrl.cost.shapes import RolloutBench

    model = tiny_for_tokenizer(maze_tokenizer, "gpt2", hidden_size=32, num_layers=2, seed=7).eval()
    rows = rollout_rows(model, maze_tokenizer, RolloutBench("tiny", "gpt2-tiny", episodes=3, turns=5, repeats=2),
                        torch.device("cpu"))
    assert [row.unit for row in rows] == ["turns/s", "turns/s", "tokens", "tokens"]
    assert "same replies: True" in rows[0].section
    assert rows[0].value > 0 and rows[1].value > 0 and len(rows[1].samples) == 2
    assert rows[3].value < rows[2].value and rows[3].ratio == pytest.approx(rows[3].value / rows[2].value)


def test_refusals_say_what_to_do(maze_tokenizer):
    model = tiny_for_tokenizer(maze_tokenizer, "llama", hidden_size=32, num_layers=2, seed=5).eval()
    cache = ConversationCache()
    with pytest.raises(ValueError, match="one reply per conversation"):
        generate_replies(model, maze_tokenizer, _conversations(1), cache=cache, max_new_tokens=2,
                         do_sample=True, num_return_sequences=2)
    generate_replies(model, maze_tokenizer, _conversations(1), cache=cache, max_new_tokens=2, max_length=100)
    with pytest.raises(ValueError, match="max_length changed from 100 to 200"):
        generate_replies(model, maze_tokenizer, _conversations(2), cache=cache, max_new_tokens=2, max_length=200)
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        ConversationCache().prepare(model, [[1, 2, 3]], 0, max_length=1)
    recipe = {"algorithm": "chai", "task": "negotiation", "dataset": "d.jsonl", "output_dir": "o",
              "tiny_model": {"hidden_size": 32}, "reuse_cache": True}
    with pytest.raises(ValueError, match="'reuse_cache' keeps generate"):
        parse_recipe(recipe)
