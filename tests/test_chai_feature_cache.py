"""CHAI's critic over a feature cache: the contexts' embeddings are read from the proposal LM's cached
hidden states over the data's episodes (the cache an ILQL run over the same model, data and max_length
builds) and equal CHAI's own embedding pass; proposals and replies are embedded as before
(docs/guides/feature-cache.md)."""

import math

import pytest
import torch
from safetensors.torch import load_file
from test_chai import ROWS
from transformers import AutoModelForCausalLM, AutoTokenizer

import lmrl.trainers.chai as chai_module
import lmrl.trainers.chai_contexts as contexts_module
import lmrl.trainers.feature_cache as feature_cache
from lmrl import CHAIConfig, CHAICritic, CHAITrainer, ILQLConfig, ILQLTrainer, ProposeAndRank
from lmrl.generation import CriticScorer
from lmrl.generation.propose import embed_contexts
from lmrl.models.tiny import build_tiny
from lmrl.tasks.negotiation import negotiation_features
from lmrl.trainers.chai import build_chai_dataset, episode_states

OPENING = {"messages": [{"role": "assistant", "content": "Hello, the desk is $200."},
                        {"role": "user", "content": "Would you take $150?"},
                        {"role": "assistant", "content": "I can do $190."}]}
LONG = {"messages": [{"role": "system", "content": "You are selling: lamp. Listed at $80. Sell it."}]
        + [m for p in (40, 50, 60, 70) for m in ({"role": "user", "content": f"Would you take ${p}?"},
                                                  {"role": "assistant", "content": f"No, ${p + 15} is my lowest."})],
        "reward": -0.1}
# a finished episode, an unfinished one (its last state is bootstrapped), one that opens with the seller's
# reply (an empty state) and one longer than MAX_LENGTH (cut from the left when tokenized)
DATA = ROWS + [OPENING, LONG]
MAX_LENGTH = {False: 64, True: 128}  # longer than every episode but LONG, for each tokenizer


def _save(tmp_path_factory, chat: bool, seed: int) -> str:
    model, tokenizer = build_tiny(DATA * 2, hidden_size=32, num_layers=1, vocab_size=300, chat_template=chat,
                                  seed=seed)
    path = tmp_path_factory.mktemp(f"{'chat' if chat else 'plain'}-{seed}") / "proposal-lm"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def plain_lm(tmp_path_factory) -> str:
    """A tiny GPT-2 with a tokenizer without a chat template, saved to disk."""
    return _save(tmp_path_factory, chat=False, seed=0)


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory) -> str:
    """The same with a chat template: headers, end-of-turn tokens and a trailer after each turn."""
    return _save(tmp_path_factory, chat=True, seed=0)


def _load(path: str):
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _args(tmp_path, chat: bool = False, **fields) -> CHAIConfig:
    defaults = dict(output_dir=str(tmp_path / "chai"), num_proposals=2, proposal_max_new_tokens=4,
                    max_length=MAX_LENGTH[chat], report_to="none", save_strategy="no", critic_hidden_size=8,
                    per_device_train_batch_size=4, feature_cache=str(tmp_path / "cache"),
                    proposal_cache_dir=str(tmp_path / "proposals"))
    return CHAIConfig(**{**defaults, **fields})


def _context_passes(monkeypatch) -> list[list[list[int]]]:
    """Record the token lists CHAI embeds itself when the contexts come from a feature cache; fail on
    a whole context-embedding pass."""
    passes = []
    real = contexts_module.embed_token_lists
    monkeypatch.setattr(contexts_module, "embed_token_lists", lambda model, lists, *a: passes.append(lists) or
                        real(model, lists, *a))
    monkeypatch.setattr(chai_module, "embed_contexts", lambda *a, **k: pytest.fail("contexts embedded in one pass"))
    return passes


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat-template"])
def test_contexts_read_from_the_feature_cache_equal_chais_own_embeddings(chat, plain_lm, chat_lm, tmp_path,
                                                                         monkeypatch):
    model, tokenizer = _load(chat_lm if chat else plain_lm)
    args = _args(tmp_path, chat)
    states, _ = episode_states(DATA)
    own = embed_contexts(model, tokenizer, states, args.max_length)
    passes = _context_passes(monkeypatch)
    candidates = build_chai_dataset(DATA, model, tokenizer, args)
    cached = candidates.tensors["state_embedding"]
    assert cached.dtype == torch.float32 and cached.shape == own.shape
    torch.testing.assert_close(cached, own, rtol=1e-5, atol=1e-5)
    # only what the cache cannot hold is embedded: LONG's states (its cached row starts later than their
    # prompts); with a chat template, the unfinished episode's bootstrap state (its prompt ends with the
    # header of a reply the episode does not have); without one, the empty state before OPENING's first reply
    long_states = len(episode_states([LONG])[0])
    assert [len(p) for p in passes] == [long_states + 1]  # the other states: read from the cache
    assert ([] in passes[0]) != chat
    assert "state_embedding" not in load_file(next((tmp_path / "proposals").glob("*.safetensors")))


def test_a_chai_run_on_the_feature_cache_trains_the_same_critic_checkpoint_that_ranks_at_decoding(
        plain_lm, tmp_path, monkeypatch):
    passes = _context_passes(monkeypatch)
    args = _args(tmp_path, num_train_epochs=4, logging_steps=1, critic_features="negotiation")
    trainer = CHAITrainer(proposal_model=plain_lm, args=args, train_dataset=DATA * 2, features=negotiation_features)
    assert passes and (tmp_path / "cache" / "train" / "feature_cache.json").is_file()
    before = [p.detach().clone() for p in trainer.model.q.parameters()]
    assert math.isfinite(trainer.train().training_loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.q.parameters()))
    trainer.save_model()
    monkeypatch.undo()

    # the same critic a run without the cache saves: its config and weights' names and shapes
    plain = CHAITrainer(proposal_model=plain_lm, args=_args(tmp_path, output_dir=str(tmp_path / "plain"),
                                                            feature_cache=None, max_steps=1,
                                                            critic_features="negotiation"),
                        train_dataset=DATA * 2, features=negotiation_features)
    plain.train()
    plain.save_model()
    saved, reference = CHAICritic.from_pretrained(tmp_path / "chai"), CHAICritic.from_pretrained(tmp_path / "plain")
    assert ({k: v for k, v in saved.config.to_dict().items() if k != "_name_or_path"}
            == {k: v for k, v in reference.config.to_dict().items() if k != "_name_or_path"})
    assert {k: v.shape for k, v in saved.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    # ... trained on the same candidate sets: the contexts as CHAI embeds them, the rest read from the
    # proposals both runs share (the run without the cache adds its context embeddings to that file)
    for name, value in plain.train_dataset.tensors.items():
        torch.testing.assert_close(trainer.train_dataset.tensors[name], value, rtol=1e-5, atol=1e-5)
    assert "state_embedding" in load_file(next((tmp_path / "proposals").glob("*.safetensors")))

    model, tokenizer = _load(plain_lm)
    policy = ProposeAndRank(model, tokenizer, saved, k=4, max_new_tokens=6, max_length=args.max_length,
                            features=negotiation_features)
    conversations = [ROWS[0]["messages"][:2], OPENING["messages"][:2]]
    candidates = policy.propose(conversations)
    scores = policy.scorer(conversations, candidates)
    trained = CriticScorer(trainer.model, model, tokenizer, args.max_length, features=negotiation_features)
    torch.testing.assert_close(scores, trained(conversations, candidates))
    assert scores.shape == (2, 4) and not torch.equal(scores[:, 0:1].expand(-1, 4), scores)  # the scores rank
    policy.propose = lambda conversations: candidates
    assert policy(conversations) == [c[int(i)] for c, i in zip(candidates, scores.argmax(dim=-1))]


def test_the_cache_is_built_once_and_shared_with_an_ilql_run_over_the_same_model_data_and_max_length(
        chat_lm, tmp_path, monkeypatch):
    builds = []
    real = feature_cache._shard_features
    monkeypatch.setattr(feature_cache, "_shard_features", lambda *a: builds.append(1) or real(*a))
    args = _args(tmp_path, chat=True, max_steps=1)
    first = CHAITrainer(proposal_model=chat_lm, args=args, train_dataset=DATA, eval_dataset=ROWS)
    assert len(builds) == 2  # the train and eval splits, one shard each
    listing = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*")}
    second = CHAITrainer(proposal_model=chat_lm, args=_args(tmp_path, chat=True, max_steps=1,
                                                            output_dir=str(tmp_path / "again")),
                         train_dataset=DATA, eval_dataset=ROWS)
    ilql = ILQLTrainer(chat_lm, ILQLConfig(output_dir=str(tmp_path / "ilql"), feature_cache=args.feature_cache,
                                           max_length=args.max_length, bc_weight=0.0, max_steps=1, report_to="none"),
                       train_dataset=DATA, eval_dataset=ROWS)
    assert len(builds) == 2 and {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*")} == listing
    torch.testing.assert_close(second.train_dataset.tensors["state_embedding"],
                               first.train_dataset.tensors["state_embedding"])
    assert ilql.train_dataset.num_rows == len(DATA)


def test_a_feature_cache_of_another_model_is_refused_before_any_proposal_is_sampled(plain_lm, tmp_path_factory,
                                                                                     tmp_path, monkeypatch):
    other = _save(tmp_path_factory, chat=False, seed=1)  # the same shape and tokenizer, other weights
    CHAITrainer(proposal_model=other, args=_args(tmp_path, max_steps=1, output_dir=str(tmp_path / "other")),
                train_dataset=DATA)
    monkeypatch.setattr(chai_module, "sample_replies", lambda *a, **k: pytest.fail("proposals sampled"))
    with pytest.raises(ValueError, match=r"cache.train: this feature cache was built from another model"):
        CHAITrainer(proposal_model=plain_lm, args=_args(tmp_path, max_steps=1), train_dataset=DATA)


def test_feature_cache_batch_tokens_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="feature_cache_batch_tokens must be an integer >= 1"):
        _args(tmp_path, feature_cache_batch_tokens=0)
