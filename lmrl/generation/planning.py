"""CALM planning: sample N candidate replies, roll each forward with a user model, keep the best.

Each candidate is simulated for up to `horizon` agent turns, the conversation continuing with the
policy's greedy replies; a candidate's score is the discounted reward of its simulated continuation.
Two user models:

- [`SimulatedUser`]: the task's own simulator. Each candidate is tried on a copy of the episode's
  environment (`copy.deepcopy`, random state included): planning with a perfect user model, an oracle
  that a deployed agent does not have (an upper bound on what a learned user model gives).
- [`LearnedUser`]: what a deployed agent can have. A user LM trained on the other side of the same
  dialogues ([`lmrl.data.user_side`]) writes the user's turns, and a value model trained on the agent's
  side (Monte-Carlo regression, or ILQL) scores each simulation: `min_k Q_k` at the last agent reply,
  i.e. the return expected after it, whether that reply ended the episode or the horizon cut it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ..data.schema import user_side
from .policy import GeneratePolicy
from .propose import ILQLScorer, sample_replies


class SimulatedUser:
    """The task's simulator as the user model: each simulation steps its own copy of the episode's
    environment. A simulation cut by the horizon scores what it has collected so far."""

    needs_envs = True

    def fork(self, env):
        return copy.deepcopy(env)

    def step(self, states: list, conversations: list[list[dict]], replies: list[str]
             ) -> list[tuple[str, float, bool]]:
        return [tuple(state.step(reply)[:3]) for state, reply in zip(states, replies)]

    def bootstrap(self, conversations: list[list[dict]]) -> list[float]:
        return [0.0] * len(conversations)


class LearnedUser:
    """A learned user model: `user_model` (a causal LM trained on [`user_side`] rows) answers the agent,
    `ends_episode(reply)` says which agent replies end the episode (e.g. a final action), and
    `value_model` (an ILQL/MC model trained on the agent's rows) estimates the return after a reply.

    Example:
        ```python
        >>> user = LearnedUser(customer_lm, tokenizer, mc_model, mc_tokenizer, ends_episode=is_final_action)
        >>> policy = PlanningPolicy(calm_lm, tokenizer, num_candidates=8, horizon=4, user=user)
        ```
    """

    needs_envs = False

    def __init__(self, user_model, user_tokenizer, value_model, value_tokenizer,
                 ends_episode: Callable[[str], bool], max_new_tokens: int = 24, max_length: int | None = None):
        self.user = GeneratePolicy(user_model, user_tokenizer, max_new_tokens=max_new_tokens, max_length=max_length)
        self.scorer = ILQLScorer(value_model, value_tokenizer, score="q")
        self.ends_episode = ends_episode

    def fork(self, env):
        return None

    def _values(self, conversations: list[list[dict]], replies: list[str]) -> list[float]:
        if not conversations:
            return []
        return self.scorer(conversations, [[reply] for reply in replies])[:, 0].tolist()

    @torch.no_grad()
    def step(self, states: list, conversations: list[list[dict]], replies: list[str]
             ) -> list[tuple[str, float, bool]]:
        ending = [self.ends_episode(reply) for reply in replies]
        final = [i for i, end in enumerate(ending) if end]
        going = [i for i, end in enumerate(ending) if not end]
        values = self._values([conversations[i] for i in final], [replies[i] for i in final])
        answers = self.user([user_side([*conversations[i], {"role": "assistant", "content": replies[i]}])
                             for i in going]) if going else []
        out: list[tuple[str, float, bool]] = [("", 0.0, False)] * len(replies)
        for i, value in zip(final, values):
            out[i] = ("", value, True)
        for i, answer in zip(going, answers):
            out[i] = (answer, 0.0, False)
        return out

    def bootstrap(self, conversations: list[list[dict]]) -> list[float]:
        """The value after the last agent reply of each unfinished simulation."""
        cut = [(c[:-2], c[-2]["content"]) for c in conversations]  # [..., agent reply, user answer]
        return self._values([c for c, _ in cut], [r for _, r in cut])


class PlanningPolicy:
    """A policy that plans with a user model (default: [`SimulatedUser`], for which `rollout` hands it
    the live environments; it never steps them, only copies).

    Example:
        ```python
        >>> policy = PlanningPolicy(model, tokenizer, num_candidates=4, horizon=3)
        >>> results = rollout(make_env, policy, seeds=range(100), max_turns=10)
        ```
    """

    def __init__(self, model, tokenizer, num_candidates: int = 4, horizon: int = 2, gamma: float = 1.0,
                 temperature: float = 1.0, max_new_tokens: int = 24, max_length: int | None = None, user=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.num_candidates = num_candidates
        self.horizon = horizon
        self.gamma = gamma
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.max_length = max_length
        self.user = user if user is not None else SimulatedUser()

        self.greedy = GeneratePolicy(model, tokenizer, max_new_tokens=max_new_tokens)

    @property
    def needs_envs(self) -> bool:
        """Whether `rollout` must hand over the environments (the simulator is planned with)."""
        return self.user.needs_envs

    def propose(self, conversations: list[list[dict]]) -> list[list[str]]:
        """N candidates per conversation: the greedy reply and N - 1 samples."""
        greedy = self.greedy(conversations)
        if self.num_candidates == 1:
            return [[g] for g in greedy]
        samples, _ = sample_replies(self.model, self.tokenizer, conversations, self.num_candidates - 1,
                                    self.temperature, self.max_new_tokens, max_length=self.max_length)
        return [[g, *s] for g, s in zip(greedy, samples)]

    def continue_(self, conversations: list[list[dict]]) -> list[str]:
        return self.greedy(conversations)

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]], envs=None) -> list[str]:
        if envs is None and self.needs_envs:
            raise ValueError("PlanningPolicy with the task's simulator needs the environments: run it through "
                             "lmrl.envs.rollout (or pass envs=), or plan with a LearnedUser.")
        envs = envs if envs is not None else [None] * len(conversations)
        candidates = self.propose(conversations)
        # one simulation per (conversation, candidate), advanced together turn by turn
        sims = [{"owner": i, "state": self.user.fork(env), "conversation": list(conversation), "score": 0.0,
                 "done": False, "reply": reply}
                for i, (conversation, env, replies) in enumerate(zip(conversations, envs, candidates))
                for reply in replies]
        replies = [s["reply"] for s in sims]
        for depth in range(self.horizon):
            active = [s for s in sims if not s["done"]]
            if not active:
                break
            if depth > 0:
                replies = self.continue_([s["conversation"] for s in active])
            steps = self.user.step([s["state"] for s in active], [s["conversation"] for s in active], replies)
            for sim, reply, (observation, reward, done) in zip(active, replies, steps):
                sim["score"] += self.gamma**depth * float(reward)
                sim["done"] = done
                sim["conversation"] += [{"role": "assistant", "content": reply},
                                        {"role": "user", "content": observation}]
        cut = [s for s in sims if not s["done"]]
        for sim, value in zip(cut, self.user.bootstrap([s["conversation"] for s in cut])):
            sim["score"] += self.gamma ** (self.horizon - 1) * value  # Q of the reply made at depth horizon - 1
        best: dict[int, dict] = {}
        for sim in sims:  # the first candidate (greedy) wins ties
            if sim["owner"] not in best or sim["score"] > best[sim["owner"]]["score"]:
                best[sim["owner"]] = sim
        return [best[i]["reply"] for i in range(len(conversations))]
