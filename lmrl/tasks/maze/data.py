"""Behaviour data for the maze: suboptimal walkers whose best moves must be stitched together.

- detour walkers (share `detour_share`) first walk to the cell farthest from the goal (the
  waypoint), then to the goal: consistent, but long from most starts;
- noisy walkers take a shortest-path move with probability 1 - `epsilon`, else a random move.

In most states the data's most frequent move is the detour's, so imitation inherits the detour;
the shortest moves are all in the data too (from noisy walkers), with their returns, which is what
offline RL can pick out.
"""

from __future__ import annotations

import random

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import MOVES, Maze, MazeEnv


class MazeBehaviourPolicy:
    """Scripted walkers, one per conversation; the walker type is fixed per episode by its seed."""

    def __init__(self, env_kwargs: dict, detour_share: float = 0.6, epsilon: float = 0.5, seed: int = 0):
        self.maze = MazeEnv(**env_kwargs).maze
        distances = self.maze.distances()
        self.waypoint = max(distances, key=lambda cell: (distances[cell], cell))
        self.detour_share = detour_share
        self.epsilon = epsilon
        self.rng = random.Random(seed)
        self._distances: dict = {}

    def _toward(self, cell, target) -> str:
        if target not in self._distances:
            self._distances[target] = Maze(self.maze.grid, target, ()).distances()
        distance = self._distances[target]
        best = min(distance[self.maze.move(cell, a)] for a in MOVES)
        return self.rng.choice([a for a in MOVES if distance[self.maze.move(cell, a)] == best])

    def act(self, walker: dict, position) -> str:
        if walker["kind"] == "noisy":
            if self.rng.random() < self.epsilon:
                return self.rng.choice(list(MOVES))
            return self._toward(position, self.maze.goal)
        if position == self.waypoint:
            walker["reached_waypoint"] = True
        target = self.maze.goal if walker["reached_waypoint"] else self.waypoint
        return self._toward(position, target)


def parse_position(text: str):
    inside = text[text.rindex("(") + 1 : text.rindex(")")]
    row, col = inside.split(",")
    return int(row), int(col)


def generate_maze_episodes(n: int, layout: str = "ring", detour_share: float = 0.6, epsilon: float = 0.5,
                           max_turns: int = 20, seed: int = 0, observation: str = "full", progress: bool = True
                           ) -> list[EpisodeResult]:
    """`n` behaviour episodes from the training starts, fully or partially observed. The scripted
    walkers read the true position from the environment (they are not limited by the observation),
    one episode at a time, each with its own walker (this is cheap)."""
    env_kwargs = {"layout": layout, "observation": observation, "starts": "train"}
    behaviour = MazeBehaviourPolicy(env_kwargs, detour_share, epsilon, seed)
    rng = random.Random(seed)
    results = []
    for i in tqdm(range(n), desc=f"Maze behaviour episodes ({layout})", disable=not progress, leave=False):
        env = MazeEnv(**env_kwargs)
        walker = {"kind": "detour" if rng.random() < detour_share else "noisy", "reached_waypoint": False}

        def policy(conversations, env=env, walker=walker):
            return [behaviour.act(walker, env.position)]

        results += rollout(lambda env=env: env, policy, [seed * 1_000_003 + i], max_turns, batch_size=1,
                           progress=False)
    return results
