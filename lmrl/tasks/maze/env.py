"""Text maze navigation (after LMRL-Gym's maze): moves are words, every move costs -1."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from functools import cache

from .memoryless import memoryless_conflicts

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}

# '#' wall, '.' open, 'G' goal. Each layout lists the start cells held out for evaluation.
LAYOUTS = {
    # A ring: half of the start cells are closer the "other way round" than a wall follower walks. Fully
    # observed only: partially observed, one move per observation is optimal everywhere.
    "ring": (
        [
            "#######",
            "#G....#",
            "#.###.#",
            "#.###.#",
            "#.###.#",
            "#.....#",
            "#######",
        ],
        [(5, 3), (1, 4), (4, 1)],
    ),
    "rooms": (
        [
            "#########",
            "#...#...#",
            "#.......#",
            "#...#...#",
            "##.###.##",
            "#...#..G#",
            "#.......#",
            "#########",
        ],
        [(1, 1), (6, 3), (2, 6)],
    ),
    "corridors": (
        [
            "#########",
            "#.#.....#",
            "#.#.###.#",
            "#...#G#.#",
            "###.#.#.#",
            "#.....#.#",
            "#.#####.#",
            "#.......#",
            "#########",
        ],
        [(1, 1), (7, 4), (1, 5)],
    ),
}


@dataclass(frozen=True)
class Maze:
    grid: tuple[str, ...]
    goal: tuple[int, int]
    eval_starts: tuple[tuple[int, int], ...]

    @classmethod
    def from_layout(cls, name: str) -> Maze:
        if name not in LAYOUTS:
            raise ValueError(f"Unknown maze layout {name!r}; choose one of {', '.join(LAYOUTS)}.")
        rows, eval_starts = LAYOUTS[name]
        goal = next((r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "G")
        return cls(tuple(rows), goal, tuple(eval_starts))

    def is_open(self, cell: tuple[int, int]) -> bool:
        r, c = cell
        return 0 <= r < len(self.grid) and 0 <= c < len(self.grid[r]) and self.grid[r][c] != "#"

    def open_cells(self) -> list[tuple[int, int]]:
        return [(r, c) for r, row in enumerate(self.grid) for c, ch in enumerate(row) if ch != "#"]

    def train_starts(self) -> list[tuple[int, int]]:
        return [cell for cell in self.open_cells() if cell != self.goal and cell not in self.eval_starts]

    def move(self, cell: tuple[int, int], action: str) -> tuple[int, int]:
        dr, dc = MOVES[action]
        target = (cell[0] + dr, cell[1] + dc)
        return target if self.is_open(target) else cell

    def distances(self) -> dict[tuple[int, int], int]:
        """BFS distance (number of moves) from every open cell to the goal."""
        dist = {self.goal: 0}
        queue = deque([self.goal])
        while queue:
            cell = queue.popleft()
            for dr, dc in MOVES.values():
                nxt = (cell[0] + dr, cell[1] + dc)
                if self.is_open(nxt) and nxt not in dist:
                    dist[nxt] = dist[cell] + 1
                    queue.append(nxt)
        return dist

    def optimal_moves(self, cell: tuple[int, int]) -> list[str]:
        dist = self.distances()
        return [a for a in MOVES if dist.get(self.move(cell, a), 10**9) == dist[cell] - 1]


class MazeEnv:
    """Reach the goal. Observation: the agent's position (fully observed) or which moves are open
    (partially observed; refused on a layout that one move per observation solves: `layout_conflicts`).
    A move into a wall or an unreadable reply costs -1 and keeps the agent in
    place; every move costs -1; the episode ends at the goal.

    Example:
        ```python
        >>> env = MazeEnv("ring")
        >>> env.reset(seed=0)
        'You are at (3, 5).'
        >>> env.step("up")
        ('You are at (2, 5).', -1.0, False, {...})
        ```
    """

    def __init__(self, layout: str = "ring", observation: str = "full", starts: str = "train"):
        if observation not in ("full", "partial"):
            raise ValueError(f"observation must be 'full' or 'partial', got {observation!r}.")
        if starts not in ("train", "eval", "all"):
            raise ValueError(f"starts must be 'train', 'eval' or 'all', got {starts!r}.")
        self.maze = Maze.from_layout(layout)
        if observation == "partial":
            check_partially_observed(layout)
        self.layout = layout
        self.observation = observation
        self.starts = {"train": self.maze.train_starts(), "eval": list(self.maze.eval_starts),
                       "all": self.maze.train_starts() + list(self.maze.eval_starts)}[starts]
        goal = self.maze.goal
        self.system_prompt = (
            f"Find the goal at ({goal[0]}, {goal[1]}). Moves: up, down, left, right."
            if observation == "full" else "Find the goal. Moves: up, down, left, right."
        )
        self.position = self.starts[0]

    def observe(self) -> str:
        if self.observation == "full":
            return f"You are at ({self.position[0]}, {self.position[1]})."
        open_moves = [a for a in MOVES if self.maze.move(self.position, a) != self.position]
        return "Open: " + ", ".join(open_moves) + "."

    def reset(self, seed: int | None = None) -> str:
        self.position = random.Random(seed).choice(self.starts)
        return self.observe()

    def step(self, text: str) -> tuple[str, float, bool, dict]:
        action = text.strip().lower().rstrip(".")
        if action not in MOVES:
            return "Invalid move; say up, down, left or right. " + self.observe(), -1.0, False, {"invalid": True}
        self.position = self.maze.move(self.position, action)
        if self.position == self.maze.goal:
            return "You reached the goal.", -1.0, True, {"success": True}
        return self.observe(), -1.0, False, {}


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
