"""CALM planning: sample N candidate replies, roll each forward with a user model, keep the best.

The user model here is the task's own simulator: each candidate is tried on a copy of the episode's
environment (`copy.deepcopy`, random state included), and the conversation continues with the
policy's greedy replies for up to `horizon` agent turns; a candidate's score is the discounted
reward of its simulated continuation. This is planning with a perfect user model (an upper bound
on what a learned user model gives); any object with the `TextEnv` `step` works as that model.
"""

from __future__ import annotations

import copy

import torch

from ..envs.policies import GeneratePolicy
from .propose import sample_replies


class PlanningPolicy:
    """A policy that plans with a user model. `rollout` hands it the live environments
    (`needs_envs = True`); it never steps them, only copies.

    Example:
        ```python
        >>> policy = PlanningPolicy(model, tokenizer, num_candidates=4, horizon=3)
        >>> results = rollout(make_env, policy, seeds=range(100), max_turns=10)
        ```
    """

    needs_envs = True

    def __init__(self, model, tokenizer, num_candidates: int = 4, horizon: int = 2, gamma: float = 1.0,
                 temperature: float = 1.0, max_new_tokens: int = 24, max_length: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.num_candidates = num_candidates
        self.horizon = horizon
        self.gamma = gamma
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.max_length = max_length
        self.greedy = GeneratePolicy(model, tokenizer, max_new_tokens=max_new_tokens)

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
        if envs is None:
            raise ValueError("PlanningPolicy needs the environments to simulate the user: run it through "
                             "lmrl.envs.rollout (or pass envs=).")
        candidates = self.propose(conversations)
        # one simulation per (conversation, candidate), advanced together turn by turn
        sims = [{"owner": i, "env": copy.deepcopy(env), "conversation": list(conversation), "score": 0.0,
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
            for sim, reply in zip(active, replies):
                observation, reward, done, _ = sim["env"].step(reply)
                sim["score"] += self.gamma**depth * float(reward)
                sim["done"] = done
                sim["conversation"] += [{"role": "assistant", "content": reply},
                                        {"role": "user", "content": observation}]
        best: dict[int, dict] = {}
        for sim in sims:  # the first candidate (greedy) wins ties
            if sim["owner"] not in best or sim["score"] > best[sim["owner"]]["score"]:
                best[sim["owner"]] = sim
        return [best[i]["reply"] for i in range(len(conversations))]
