"""LMRL-Gym's maze (double T maze, fully or partially observed), ported exactly: see README.md beside
this file for where each fact comes from, the behaviour data and the anchors."""

from lmrl.envs import TaskAnchors
from lmrl.tasks import Task

from .data import OPTIMAL_SHARE, MazeMixturePolicy, expected_return, generate_episodes
from .env import (
    LAST_K,
    LAYOUTS,
    MAX_STEPS,
    MOVES,
    LmrlGymMazeEnv,
    Maze,
    describe_full,
    describe_partial,
    optimal_return,
    read_move,
    reference_context,
)
from .reference import PositionPolicy, RandomMovePolicy, offline_q_policy, offline_q_values, read_position
from .reference import reference_policies as _reference_policies

__all__ = ["LAST_K", "LAYOUTS", "MAX_STEPS", "MINIMUM_RETURN", "MOVES", "OPTIMAL_SHARE", "TASK", "LmrlGymMazeEnv",
           "Maze", "MazeMixturePolicy", "describe_full", "describe_partial", "expected_return", "generate_episodes",
           "lmrl_gym_maze_anchors", "offline_q_policy", "offline_q_values", "optimal_return", "PositionPolicy",
           "RandomMovePolicy", "read_move", "read_position", "reference_context"]

# LMRL-Gym's 0 anchor: an episode that never reaches the goal and whose every reply is a move.
MINIMUM_RETURN = -101.0


def lmrl_gym_maze_anchors(dataset_return: float, layout: str = "double_t_maze") -> TaskAnchors:
    """LMRL-Gym's anchors: 0 = -101, 50 = the data's average return, 100 = the optimal return averaged
    over the evaluation starts (-6.84 on the double T maze, for both observations).

    Example:
        ```python
        >>> lmrl_gym_maze_anchors(-83.0)
        TaskAnchors(minimum=-101.0, dataset=-83.0, best=-6.84)
        ```
    """
    maze = Maze.from_layout(layout)
    starts = maze.starts()
    best = sum(optimal_return(maze, cell) for cell in starts) / len(starts)
    return TaskAnchors(minimum=MINIMUM_RETURN, dataset=dataset_return, best=best)


def _make_env(split: str = "eval", layout: str = "double_t_maze", observation: str = "full") -> LmrlGymMazeEnv:
    return LmrlGymMazeEnv(layout, observation, split)


def _make_data(n: int, seed: int = 0, progress: bool = True, layout: str = "double_t_maze",
               observation: str = "full", optimal_share: float = OPTIMAL_SHARE):
    return generate_episodes(n, layout=layout, observation=observation, optimal_share=optimal_share, seed=seed,
                             progress=progress)


def _anchors(dataset_return: float, layout: str = "double_t_maze") -> TaskAnchors:
    return lmrl_gym_maze_anchors(dataset_return, layout)


# An episode holds at most MAX_STEPS + 1 replies: the last one, after 100 steps, ends it with "Failure".
TASK = Task("lmrl_gym_maze", _make_env, _make_data, _anchors, max_turns=MAX_STEPS + 1, max_new_tokens=8,
            reference_policies=_reference_policies)
