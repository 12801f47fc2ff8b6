"""One rollout loop for every task: many episodes at once, any policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..data.schema import Episode
from .base import TextEnv

# A policy maps a batch of conversations (lists of {"role", "content"}) to one reply each.
Policy = Callable[[list[list[dict]]], list[str]]


@dataclass
class EpisodeResult:
    seed: int
    messages: list[dict] = field(default_factory=list)
    total_reward: float = 0.0
    done: bool = False
    success: bool = False
    invalid_actions: int = 0
    extra: dict = field(default_factory=dict)  # task fields kept with the row (e.g. a structured context)

    def as_row(self) -> dict:
        """The episode as a training row (docs/design.md, section 1: Data)."""
        return {"messages": self.messages, "done": self.done, **self.extra}


def rollout(
    make_env: Callable[[], TextEnv],
    policy: Policy,
    seeds: Sequence[int],
    max_turns: int,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "Rollouts",
) -> list[EpisodeResult]:
    """Run one episode per seed, `batch_size` environments at a time; each turn calls `policy` once
    for every unfinished episode of the batch. Episodes stop when the env says done or after
    `max_turns` agent turns (then `done=False`: truncated)."""
    results = []
    bar = tqdm(total=len(seeds), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(seeds), batch_size):
        chunk = list(seeds[start : start + batch_size])
        envs = [make_env() for _ in chunk]
        episodes = [EpisodeResult(seed=seed) for seed in chunk]
        for env, episode, seed in zip(envs, episodes, chunk):
            observation = env.reset(seed)
            system = getattr(env, "system_prompt", None)  # read after reset: it may describe this episode
            if system:
                episode.messages.append({"role": "system", "content": system})
            episode.messages.append({"role": "user", "content": observation})
        active = list(range(len(chunk)))
        for turn in range(max_turns):
            if not active:
                break
            bar.set_postfix(turn=turn + 1, playing=len(active))
            conversations = [Episode.from_messages(episodes[i].messages).messages() for i in active]
            if getattr(policy, "needs_envs", False):  # planners simulate the user on copies of the envs
                replies = policy(conversations, envs=[envs[i] for i in active])
            else:
                replies = policy(conversations)
            still_active = []
            for i, reply in zip(active, replies):
                observation, reward, done, info = envs[i].step(reply)
                episode = episodes[i]
                episode.messages.append({"role": "assistant", "content": reply, "reward": float(reward)})
                episode.total_reward += float(reward)
                episode.invalid_actions += int(bool(info.get("invalid", False)))
                if done:
                    episode.done = True
                    episode.success = bool(info.get("success", False))
                    bar.update(1)
                else:
                    episode.messages.append({"role": "user", "content": observation})
                    still_active.append(i)
            active = still_active
        for episode in episodes:  # a truncated episode ends on the agent's last reply
            if episode.messages[-1]["role"] == "user" and len(episode.messages) > 1:
                episode.messages.pop()
        results += episodes
        bar.update(len(active))  # the episodes cut at max_turns
    bar.close()
    return results
