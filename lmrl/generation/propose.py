"""Propose-and-rank decoding (CHAI): a proposal LM samples K replies, a critic picks one.

The critic is either a [`CHAICritic`] (utterance-level Q over frozen LM embeddings) or a token-level
ILQL model ([`AutoModelForCausalLMWithILQLHeads`]) that scores a reply by the sum of its tokens'
advantages `min_k Q_k(s, a) - V(s)` ("utterance-level ILQL") or by Q at its last token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..data.schema import Episode
from ..data.tokenization import eos_token_id, episode_segments, pad_token_id
from ..models import AutoModelForCausalLMWithILQLHeads
from ..models.chai import CHAICritic
from .replies import generate_replies, prompt_ids

__all__ = ["CriticScorer", "ILQLScorer", "ProposeAndRank", "embed_contexts", "embed_replies", "embed_token_lists",
           "prompt_ids", "reply_ids", "sample_replies"]


def _stop_ids(model, tokenizer) -> set[int]:
    stop = {eos_token_id(tokenizer)}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stop.update([configured] if isinstance(configured, int) else (configured or []))
    return stop


@torch.no_grad()
def sample_replies(model, tokenizer, conversations: list[list[dict]], k: int, temperature: float = 1.0,
                   max_new_tokens: int = 32, batch_size: int = 16, max_length: int | None = None,
                   progress: bool = False) -> tuple[list[list[str]], torch.Tensor]:
    """`k` sampled replies per conversation, and each reply's mean token log-probability under
    the (untempered) model, `[len(conversations), k]`. Conversations go `batch_size` at a time (in
    order of prompt length when they take several batches; `progress`: a bar over the conversations)."""
    stop = _stop_ids(model, tokenizer)
    # several batches: of similar prompt lengths, so that little padding is prefilled (k times: once per sample)
    order = list(range(len(conversations)))
    if len(conversations) > batch_size:
        order.sort(key=lambda i: len(prompt_ids(tokenizer, conversations[i], max_length)))
    conversations = [conversations[i] for i in order]
    replies: list[list[str]] = []
    logps = []
    bar = tqdm(total=len(conversations), desc=f"Sampling {k} proposals per state", disable=not progress,
               leave=False)
    for start in range(0, len(conversations), batch_size):
        texts, tokens, out = generate_replies(  # tokens: [b * k, T]
            model, tokenizer, conversations[start : start + batch_size], max_length, do_sample=True,
            temperature=temperature, top_k=0, top_p=1.0, num_return_sequences=k, max_new_tokens=max_new_tokens,
            output_logits=True, return_dict_in_generate=True)
        logits = torch.stack(out.logits, dim=1).float()  # [b * k, T, V] raw scores
        token_logp = logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
        is_stop = torch.zeros_like(tokens, dtype=torch.bool)
        for s in stop:
            is_stop |= tokens == s
        after_stop = (is_stop.cumsum(-1) - is_stop.long()) > 0  # tokens after the first stop token
        keep = (~after_stop).float()
        logps.append(((token_logp * keep).sum(-1) / keep.sum(-1).clamp(min=1)).view(-1, k).cpu())
        replies += [texts[i : i + k] for i in range(0, len(texts), k)]
        bar.update(len(conversations[start : start + batch_size]))
    bar.close()
    back = sorted(range(len(order)), key=order.__getitem__)  # the callers' order again
    return [replies[i] for i in back], torch.cat(logps)[back]


def reply_ids(tokenizer, reply: str) -> list[int]:
    """Token ids the critic embeds for a reply: its text and the end-of-turn token."""
    return tokenizer(reply, add_special_tokens=False)["input_ids"] + [eos_token_id(tokenizer)]


@torch.no_grad()
def embed_token_lists(model, token_lists: list[list[int]], pad: int, batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled last hidden state of a frozen LM over each token list, `[N, hidden]` (float32).
    Lists are batched by length so little padding is computed."""
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    out = [None] * len(token_lists)
    for start in range(0, len(order), batch_size):
        chunk = [token_lists[i] or [pad] for i in order[start : start + batch_size]]
        length = max(map(len, chunk))
        ids = torch.tensor([t + [pad] * (length - len(t)) for t in chunk], device=model.device)
        mask = torch.tensor([[1] * len(t) + [0] * (length - len(t)) for t in chunk], device=model.device)
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1].float()
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        for i, vector in zip(order[start : start + batch_size], pooled.cpu()):
            out[i] = vector
    return torch.stack(out)


def embed_contexts(model, tokenizer, conversations: list[list[dict]], max_length: int | None = None,
                   batch_size: int = 64) -> torch.Tensor:
    """The critic's view of each state, `[N, hidden]`: the prompt the agent replies to, embedded."""
    prompts = [prompt_ids(tokenizer, c, max_length) for c in conversations]
    return embed_token_lists(model, prompts, pad_token_id(tokenizer), batch_size)


def embed_replies(model, tokenizer, replies: list[str], batch_size: int = 64) -> torch.Tensor:
    """The critic's view of each reply, `[N, hidden]`."""
    return embed_token_lists(model, [reply_ids(tokenizer, r) for r in replies], pad_token_id(tokenizer), batch_size)


class CriticScorer:
    """Scores replies with a [`CHAICritic`]: embeddings from the frozen `embedding_model` (the
    proposal LM the critic was trained with), and for a critic trained with features, the same
    `features(messages, reply) -> list[float]` function (the task's `critic_features`).

    Example:
        ```python
        >>> scorer = CriticScorer(CHAICritic.from_pretrained("runs/chai"), proposal_lm, tokenizer,
        ...                       features=get_task("negotiation").critic_features)
        >>> scorer([conversation], [["Deal.", "The lowest I can go is $160."]])  # [1, 2] values
        ```
    """

    def __init__(self, critic, embedding_model, tokenizer, max_length: int | None = None, batch_size: int = 64,
                 features: Callable[[list[dict], str], list[float]] | None = None):
        wanted = critic.config.num_features
        if wanted and features is None:
            named = f" ({critic.config.features})" if critic.config.features else ""
            raise ValueError(
                f"The critic was trained with {wanted} features per reply{named}: pass the function that computes "
                "them as features= (a task's critic_features, e.g. lmrl.tasks.get_task('negotiation')"
                ".critic_features); in a recipe, set critic_features to that task.")
        if not wanted and features is not None:
            raise ValueError("The critic was trained without reply features: leave features= out (None).")
        self.critic = critic.eval()
        self.embedding_model = embedding_model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.features = features

    def embed(self, conversations: list[list[dict]], candidates: list[list[str]]):
        """Context embeddings [B, E], candidate embeddings [B, C, E] and features [B, C, F]."""
        width = len(candidates[0])
        if self.critic.config.embedding_size:
            context = embed_contexts(self.embedding_model, self.tokenizer, conversations, self.max_length,
                                     self.batch_size)
            flat = [r for replies in candidates for r in replies]
            replies = embed_replies(self.embedding_model, self.tokenizer, flat, self.batch_size).view(
                len(candidates), width, -1)
        else:  # a critic of the features alone
            context, replies = torch.zeros(len(candidates), 0), torch.zeros(len(candidates), width, 0)
        features = None
        if self.features is not None:
            features = torch.tensor([[self.features(c, r) for r in rs] for c, rs in zip(conversations, candidates)],
                                    dtype=torch.float32)
        return context, replies, features

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]], candidates: list[list[str]]) -> torch.Tensor:
        context, replies, features = self.embed(conversations, candidates)
        device = self.critic.device
        q = self.critic(context.to(device), replies.to(device), None if features is None else features.to(device))
        return q.min(dim=0).values.cpu()  # [B, C]


class RuleScorer:
    """Scores replies with a hand-written `rule(messages, reply) -> float` (a task's `rank_rule`), for
    propose-and-rank with no trained model."""

    def __init__(self, rule: Callable[[list[dict], str], float]):
        if not callable(rule):
            raise ValueError(f"RuleScorer: rule must be a function (messages, reply) -> float, got {rule!r}.")
        self.rule = rule

    def __call__(self, conversations: list[list[dict]], candidates: list[list[str]]) -> torch.Tensor:
        return torch.tensor([[float(self.rule(c, r)) for r in rs] for c, rs in zip(conversations, candidates)])


class ILQLScorer:
    """Scores replies with a token-level ILQL model: `score="advantage"` sums `min_k Q_k - V` over
    the reply's tokens (utterance-level ILQL); `score="q"` takes `min_k Q_k` at the reply's last token."""

    def __init__(self, model, tokenizer, score: str = "advantage", batch_size: int = 32):
        if score not in ("advantage", "q"):
            raise ValueError(f"score must be 'advantage' or 'q', got {score!r}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.score = score
        self.batch_size = batch_size

    def _tokens(self, conversation: list[dict], reply: str) -> tuple[list[int], list[int]]:
        episode = Episode.from_messages([*conversation, {"role": "assistant", "content": reply}])
        segments = episode_segments(self.tokenizer, episode.turns)
        ids = [t for seg, _, _ in segments for t in seg]
        n_reply = len(segments[-1][0])
        return ids, [0] * (len(ids) - n_reply) + [1] * n_reply

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]], candidates: list[list[str]]) -> torch.Tensor:
        pairs = [self._tokens(c, r) for c, rs in zip(conversations, candidates) for r in rs]
        pad = pad_token_id(self.tokenizer)
        scores = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            length = max(len(ids) for ids, _ in chunk)
            ids = torch.tensor([i + [pad] * (length - len(i)) for i, _ in chunk], device=self.model.device)
            attention = torch.tensor([[1] * len(i) + [0] * (length - len(i)) for i, _ in chunk], device=ids.device)
            actions = torch.tensor([m + [0] * (length - len(m)) for _, m in chunk], device=ids.device)
            out = self.model(input_ids=ids, attention_mask=attention, action_mask=actions, compute_q_logits=False)
            q = out.q_values.min(dim=0).values  # [b, T-1]: Q of token i+1 in state i
            steps = actions[:, 1:].float()
            if self.score == "advantage":
                scores.append(((q - out.v_values[:, :-1]) * steps).sum(-1).float().cpu())
            else:
                last = (steps * torch.arange(steps.shape[1], device=steps.device)).argmax(-1)
                scores.append(q.gather(1, last[:, None]).squeeze(1).float().cpu())
        width = len(candidates[0])
        return torch.cat(scores).view(len(candidates), width)


class ProposeAndRank:
    """A policy that samples `k` replies from `proposal_model` and keeps the one the critic values
    most (`temperature=0`), or samples one from `softmax(Q / temperature)`.

    `critic` is a [`CHAICritic`] (with `features`, the reply features it was trained with, if any) or
    an ILQL model (then ranked by the sum of advantages); any callable
    `(conversations, candidates) -> [B, k] scores` works too.

    Example:
        ```python
        >>> policy = ProposeAndRank(proposal_lm, tokenizer, CHAICritic.from_pretrained("runs/chai"), k=8,
        ...                         features=get_task("negotiation").critic_features)
        >>> policy([[{"role": "user", "content": "Would you take $120?"}]])
        ['The lowest I can go is $160.']
        ```
    """

    def __init__(self, proposal_model, tokenizer, critic, k: int, temperature: float = 0.0,
                 proposal_temperature: float = 1.0, max_new_tokens: int = 32, critic_tokenizer=None,
                 max_length: int | None = None, seed: int | None = 0,
                 features: Callable[[list[dict], str], list[float]] | None = None):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"ProposeAndRank: k (replies proposed per turn) must be an integer >= 1, got {k!r}.")
        self.proposal_model = proposal_model.eval()
        self.tokenizer = tokenizer
        if isinstance(critic, CHAICritic):
            critic = CriticScorer(critic, proposal_model, tokenizer, max_length, features=features)
        elif features is not None:
            raise ValueError("features= are the reply features of a CHAI critic; this critic is not one, so leave "
                             "them out.")
        elif isinstance(critic, AutoModelForCausalLMWithILQLHeads):
            critic = ILQLScorer(critic, critic_tokenizer or tokenizer)
        self.scorer = critic
        self.k = k
        self.temperature = temperature
        self.proposal_temperature = proposal_temperature
        self.max_new_tokens = max_new_tokens
        self.max_length = max_length
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if seed is not None:
            torch.manual_seed(seed)

    def propose(self, conversations: list[list[dict]]) -> list[list[str]]:
        replies, _ = sample_replies(self.proposal_model, self.tokenizer, conversations, self.k,
                                    self.proposal_temperature, self.max_new_tokens, max_length=self.max_length)
        return replies

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        if self.temperature <= 0:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores / self.temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        candidates = self.propose(conversations)
        picks = self.choose(self.scorer(conversations, candidates))
        return [replies[int(i)] for replies, i in zip(candidates, picks)]
