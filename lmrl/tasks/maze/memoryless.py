"""Does a partially observed maze test memory? A policy that sees only the current observation (a
memoryless policy) plays one move per observation, so it can act optimally in every cell only if,
for each observation, some move is a shortest-path move in every cell that shows that observation.
A layout where such a move exists for every observation is solved by a lookup table, and offering it
as partially observed tests nothing that the fully observed maze does not. `env.layout_conflicts` applies
this to lmrl's layouts, and `MazeEnv` refuses such a layout partially observed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable


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
