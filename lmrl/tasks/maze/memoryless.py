"""Does a partially observed maze test memory? A policy that sees only the current observation (a
memoryless policy) plays one move per observation, so it can act optimally in every cell only if,
for each observation, some move is a shortest-path move in every cell that shows that observation.
A layout where such a move exists for every observation is solved by a lookup table, and offering it
as partially observed tests nothing that the fully observed maze does not.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from functools import cache

from .env import LAYOUTS, MazeEnv


def memoryless_conflicts(cells: Iterable[Hashable], observe: Callable[[Hashable], Hashable],
                         optimal_moves: Callable[[Hashable], Iterable[str]]) -> dict[Hashable, list]:
    """The observations under which no single move is optimal in every cell that shows them, each
    with those cells. Empty exactly when a memoryless policy can act optimally everywhere.

    `cells` are the non-goal cells an episode can be in, `observe(cell)` what a memoryless policy
    sees there, `optimal_moves(cell)` the moves that shorten the way to the goal by one.

    Example:
        ```python
        >>> corridor = {(0, 0): ["right"], (0, 2): ["left"]}  # both cells look the same, the goal between
        >>> memoryless_conflicts(corridor, lambda cell: "walls above and below", corridor.get)
        {'walls above and below': [(0, 0), (0, 2)]}
        ```
    """
    groups: dict[Hashable, list] = {}
    for cell in cells:
        groups.setdefault(observe(cell), []).append(cell)
    conflicts = {}
    for observation, members in groups.items():
        common = set(optimal_moves(members[0]))
        for cell in members[1:]:
            common &= set(optimal_moves(cell))
        if not common:
            conflicts[observation] = members
    return conflicts


def admits_memoryless_optimal_policy(cells: Iterable[Hashable], observe: Callable[[Hashable], Hashable],
                                     optimal_moves: Callable[[Hashable], Iterable[str]]) -> bool:
    """Whether one move per observation is optimal in every cell ([`memoryless_conflicts`] is empty)."""
    return not memoryless_conflicts(cells, observe, optimal_moves)


def layout_conflicts(layout: str) -> dict[str, list[tuple[int, int]]]:
    """[`memoryless_conflicts`] for one of lmrl's maze layouts, partially observed: what the policy sees
    in a cell is the system prompt and the observation text there (the same system prompt everywhere)."""
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown maze layout {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    env = MazeEnv(layout, observation="full", starts="all")
    env.observation = "partial"  # observe() as partially observed, whether or not the layout is offered so
    maze = env.maze

    def observe(cell):
        env.position = cell
        return env.observe()

    cells = [cell for cell in maze.open_cells() if cell != maze.goal]
    return memoryless_conflicts(cells, observe, maze.optimal_moves)


@cache
def check_partially_observed(layout: str) -> None:
    """Refuse to offer `layout` as partially observed when a memoryless policy solves it optimally."""
    if not layout_conflicts(layout):
        raise ValueError(
            f"maze layout {layout!r} is not offered partially observed (observation='partial'): one move per "
            "observation is optimal in every cell, so a policy without memory solves it and it tests nothing the "
            "fully observed maze does not. Use layout 'rooms' or 'corridors', or LMRL-Gym's partially observed maze "
            "(task lmrl_gym_maze, observation='partial').")
