"""CHAI's context embeddings read from a feature cache of the proposal LM's hidden states over the data's
episodes (the cache an ILQL or MC run over the same model, data and max_length builds) instead of an
embedding pass per state: a state's prompt is the start of its episode's tokens, so its pooled states
there are the ones `embed_contexts` computes."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data import prepare_dataset
from ..data.tokenization import pad_token_id
from ..generation.propose import embed_token_lists, prompt_ids
from .feature_cache import FeatureCache, build_feature_cache

logger = logging.getLogger(__name__)


def cached_context_embeddings(cache: FeatureCache, states: list[list[dict]], state_rows: list[int], model,
                              tokenizer, max_length: int | None = None,
                              batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Each state's context embedding `[N, hidden]`, equal to what [`embed_contexts`] gives, and which
    states were read from `cache` (`[N]` bool). `cache` holds `model`'s hidden states over the episodes;
    state `i` comes from the episode in its row `state_rows[i]`.

    A causal LM's hidden states over a prefix do not depend on what follows it: where a state's
    [`prompt_ids`] are the first ids of its episode's cached row, the mean of the row's first
    `len(prompt_ids)` states is the state's embedding. Every other state is embedded by `model`: the
    states of an episode cut to `max_length` from the left (its row starts later than the prompt), with a
    chat template the last state of an unfinished episode (its prompt ends with the header of a reply the
    episode does not hold), and an empty prompt (embedded as one pad token)."""
    prompts = [prompt_ids(tokenizer, state, max_length) for state in states]
    embeddings = torch.empty(len(states), cache.manifest["hidden_size"])
    cached = torch.zeros(len(states), dtype=torch.bool)
    for i, (prompt, row) in enumerate(zip(prompts, state_rows)):
        if prompt and cache.input_ids(row)[: len(prompt)].tolist() == prompt:
            embeddings[i] = cache.hidden(row)[: len(prompt)].float().mean(0)
            cached[i] = True
    missing = (~cached).nonzero().flatten().tolist()
    if missing:
        embeddings[missing] = embed_token_lists(model, [prompts[i] for i in missing], pad_token_id(tokenizer),
                                                batch_size)
    return embeddings, cached


def feature_cache_contexts(rows, states: list[list[dict]], state_rows: list[int], folder: Path, proposal_model,
                           tokenizer, args, progress: bool = True) -> torch.Tensor:
    """The states' context embeddings from the feature cache in `folder` of the proposal LM over the rows'
    episodes, tokenized as every trainer tokenizes them (`prepare_dataset`), so that an ILQL or MC run over
    the same model, data and max_length shares the cache ([`cached_context_embeddings`]). The cache is built
    when missing; one built from another model, tokenizer or data is refused (`build_feature_cache`). `args`
    is the trainer's `CHAIConfig` (its max_length, truncation, unlabeled reward and cache batch size)."""
    episodes = prepare_dataset(rows, tokenizer, args.max_length, args.dataset_num_proc,
                               truncation_mode=args.truncation_mode, unlabeled_reward=args.unlabeled_reward)
    name = getattr(proposal_model, "name_or_path", "") or "a proposal LM built in memory"
    cache = build_feature_cache(proposal_model, tokenizer, episodes, folder, name,
                                batch_tokens=args.feature_cache_batch_tokens, progress=progress)
    embeddings, cached = cached_context_embeddings(cache, states, state_rows, proposal_model, tokenizer,
                                                   args.max_length)
    logger.info("Context embeddings: %d of %d states read from the feature cache %s, %d embedded (states of "
                "episodes cut to max_length, last states of unfinished episodes).", int(cached.sum()), len(states),
                folder, int((~cached).sum()))
    return embeddings
