"""Maze: text grid navigation, fully or partially observed (after LMRL-Gym)."""

from lmrl.envs import TaskAnchors
from lmrl.tasks import Task

from .data import MazeBehaviourPolicy, generate_maze_episodes, parse_position
from .env import LAYOUTS, MOVES, Maze, MazeEnv

__all__ = ["LAYOUTS", "MOVES", "Maze", "MazeBehaviourPolicy", "MazeEnv", "TaskAnchors", "generate_maze_episodes",
           "maze_anchors", "parse_position"]


def maze_anchors(layout: str, dataset_return: float, max_turns: int = 20, starts: str = "eval") -> TaskAnchors:
    """0 = never reaching the goal (-max_turns), 50 = the dataset's average return, 100 = the BFS
    optimum averaged over the evaluation starts."""
    env = MazeEnv(layout, starts=starts)
    distances = env.maze.distances()
    best = -sum(distances[s] for s in env.starts) / len(env.starts)
    return TaskAnchors(minimum=-float(max_turns), dataset=dataset_return, best=best)


def _make_env(split: str = "eval", layout: str = "ring", observation: str = "full") -> MazeEnv:
    return MazeEnv(layout, observation=observation, starts=split)


def _make_data(n: int, seed: int = 0, progress: bool = True, layout: str = "ring", observation: str = "full",
               max_turns: int = 20, detour_share: float = 0.6, epsilon: float = 0.5):
    return generate_maze_episodes(n, layout=layout, detour_share=detour_share, epsilon=epsilon, max_turns=max_turns,
                                  seed=seed, observation=observation, progress=progress)


def _anchors(dataset_return: float, layout: str = "ring", max_turns: int = 20) -> TaskAnchors:
    return maze_anchors(layout, dataset_return, max_turns)


TASK = Task("maze", _make_env, _make_data, _anchors, max_turns=20, max_new_tokens=4)
