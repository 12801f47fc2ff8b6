"""Behaviour data for LMRL-Gym's maze. LMRL-Gym publishes its maze datasets (on its own servers) but not
the program that made them; what is known of them is their average return, -83 (their
`llm_rl_scripts/maze/misc/compute_score_normalizations.py`). This module's behaviour policy is lmrl's
own, made to match that average:

at every step, with probability `optimal_share` the shortest-path move, otherwise one of the four moves
at random (a move into a wall included); the start is drawn at random from every non-goal cell, as
LMRL-Gym's environment draws it. With the default `optimal_share` the expected return is -83.0
(`expected_return` computes it exactly): the data is close to a random walk, whose expected return is
-85.9, and most episodes run out of steps (-101). The walker reads the true position, so fully and
partially observed data hold the same kinds of walks, told in their own observation texts.
"""

from __future__ import annotations

import random

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import FAILURE_REWARD, GOAL_REWARD, MAX_STEPS, MOVE_REWARD, MOVES, LmrlGymMazeEnv, Maze

# The share of shortest-path moves whose expected return is LMRL-Gym's data average, -83.
OPTIMAL_SHARE = 0.0167


class MazeMixturePolicy:
    """Takes the shortest-path move with probability `optimal_share`, else a uniformly random move.

    Example:
        ```python
        >>> policy = MazeMixturePolicy(Maze.from_layout("double_t_maze"), optimal_share=1.0)
        >>> policy.act((1, 1))
        'move right'
        ```
    """

    def __init__(self, maze: Maze, optimal_share: float = OPTIMAL_SHARE, seed: int = 0):
        if not 0.0 <= optimal_share <= 1.0:
            raise ValueError(f"optimal_share must be a probability in [0, 1], got {optimal_share}.")
        self.maze, self.optimal_share = maze, optimal_share
        self.rng = random.Random(seed)
        self.best = {cell: maze.optimal_moves(cell) for cell in maze.starts()}

    def act(self, position: tuple[int, int]) -> str:
        if self.rng.random() < self.optimal_share:
            return self.rng.choice(self.best[position])
        return self.rng.choice(list(MOVES))


def expected_return(layout: str = "double_t_maze", optimal_share: float = OPTIMAL_SHARE) -> float:
    """The exact expected return of [`MazeMixturePolicy`] from a uniformly drawn start, by dynamic
    programming over (cell, steps left)."""
    maze = Maze.from_layout(layout)
    starts = maze.starts()
    best = {cell: maze.optimal_moves(cell) for cell in starts}
    value = dict.fromkeys(starts, FAILURE_REWARD)  # no steps left: the next reply fails the episode
    for _ in range(MAX_STEPS):
        previous = value
        value = {}
        for cell in starts:
            total = 0.0
            for move in MOVES:
                chance = (1.0 - optimal_share) / len(MOVES)
                if move in best[cell]:
                    chance += optimal_share / len(best[cell])
                target = maze.move(cell, move)
                total += chance * (GOAL_REWARD if target == maze.goal else MOVE_REWARD + previous[target])
            value[cell] = total
    return sum(value.values()) / len(starts)


def generate_episodes(n: int, layout: str = "double_t_maze", observation: str = "full",
                      optimal_share: float = OPTIMAL_SHARE, seed: int = 0, progress: bool = True
                      ) -> list[EpisodeResult]:
    """`n` episodes of [`MazeMixturePolicy`] in [`LmrlGymMazeEnv`] ("train" starts), one at a time (the
    walker reads each environment's position)."""
    behaviour = MazeMixturePolicy(Maze.from_layout(layout), optimal_share, seed)
    results = []
    for i in tqdm(range(n), desc=f"LMRL-Gym maze episodes ({layout}, {observation})", disable=not progress,
                  leave=False):
        env = LmrlGymMazeEnv(layout, observation, split="train")

        def policy(conversations, env=env):
            return [behaviour.act(env.position)]

        results += rollout(lambda env=env: env, policy, [seed * 1_000_003 + i], MAX_STEPS + 1, batch_size=1,
                           progress=False)
    return results
