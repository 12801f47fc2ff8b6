"""LMRL-Gym's maze, as their code defines it: layouts, observation texts, moves, rewards and horizon.

Cells are (row, column) from the top-left corner: "move down" adds one to the row, "move right" one to
the column. Every fact here is checked by tests/test_lmrl_gym_maze.py; README.md names the file of the
LMRL-Gym repository that each one comes from.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

# '#' wall, '.' open. The goal is given apart, as in LMRL-Gym (their grids mark only walls).
LAYOUTS = {
    "double_t_maze": (
        (
            "#############",
            "#.....#.....#",
            "###.#####.###",
            "###.#####.###",
            "###.#####.###",
            "###.......###",
            "######.######",
            "######.######",
            "######.######",
            "#############",
        ),
        (8, 6),
    ),
    "umaze": (
        (
            "#####",
            "#...#",
            "#.#.#",
            "#.#.#",
            "#####",
        ),
        (3, 3),
    ),
}

# The moves, in LMRL-Gym's order (the order a reranking policy proposes them in). A reply is one of
# these, optionally followed by one newline (the end of a reply in LMRL-Gym's text format).
MOVES = {"move left": (0, -1), "move right": (0, 1), "move up": (-1, 0), "move down": (1, 0)}

# Steps that return an observation; the reply after the last of them ends the episode with "Failure".
MAX_STEPS = 100
GOAL_REWARD, MOVE_REWARD, INVALID_REWARD, FAILURE_REWARD = 0.0, -1.0, -4.0, -1.0
SUCCESS_TEXT, FAILURE_TEXT = "Success\n", "Failure\n"

# How many texts (observations and replies) LMRL-Gym's policies condition on: the fully observed
# scripts show the current observation alone, the partially observed ones the last 40 texts.
LAST_K = {"full": 1, "partial": 40}

# The wall directions, in the order the observation lists them.
_DIRECTIONS = (("to your right", (0, 1)), ("to your left", (0, -1)), ("above you", (-1, 0)), ("below you", (1, 0)))


@dataclass(frozen=True)
class Maze:
    """A layout: its grid and its goal."""

    grid: tuple[str, ...]
    goal: tuple[int, int]

    @classmethod
    def from_layout(cls, name: str) -> Maze:
        if name not in LAYOUTS:
            raise ValueError(f"Unknown layout {name!r} of LMRL-Gym's maze; choose one of {', '.join(LAYOUTS)}.")
        grid, goal = LAYOUTS[name]
        return cls(grid, goal)

    def is_wall(self, cell: tuple[int, int]) -> bool:
        return self.grid[cell[0]][cell[1]] == "#"

    def open_cells(self) -> list[tuple[int, int]]:
        """The open cells, row by row (LMRL-Gym's order: numpy's `argwhere(maze == 0)`)."""
        return [(r, c) for r, row in enumerate(self.grid) for c, ch in enumerate(row) if ch != "#"]

    def starts(self) -> list[tuple[int, int]]:
        """Every open cell but the goal, in `open_cells` order: where episodes start."""
        return [cell for cell in self.open_cells() if cell != self.goal]

    def move(self, cell: tuple[int, int], move: str) -> tuple[int, int]:
        """Where `move` leads from `cell`: a move into a wall stays put."""
        dr, dc = MOVES[move]
        target = (cell[0] + dr, cell[1] + dc)
        return cell if self.is_wall(target) else target

    def distances(self) -> dict[tuple[int, int], int]:
        """The number of moves from every open cell to the goal (breadth-first search)."""
        distance = {self.goal: 0}
        queue = deque([self.goal])
        while queue:
            cell = queue.popleft()
            for move in MOVES:
                neighbour = self.move(cell, move)
                if neighbour not in distance:
                    distance[neighbour] = distance[cell] + 1
                    queue.append(neighbour)
        return distance

    def optimal_moves(self, cell: tuple[int, int]) -> list[str]:
        """The moves that bring `cell` one step closer to the goal."""
        distance = self.distances()
        return [move for move in MOVES if distance[self.move(cell, move)] == distance[cell] - 1]


def optimal_return(maze: Maze, cell: tuple[int, int]) -> float:
    """The best return from `cell`: -1 for every move but the last, which reaches the goal for 0."""
    return -float(maze.distances()[cell] - 1)


def _spaced(number: int) -> str:
    return " ".join(str(number))  # 11 -> "1 1": LMRL-Gym writes a coordinate's digits apart


def describe_walls(maze: Maze, cell: tuple[int, int]) -> str:
    """The sentence naming the walls next to `cell` (right, left, above, below)."""
    walls = [name for name, (dr, dc) in _DIRECTIONS if maze.is_wall((cell[0] + dr, cell[1] + dc))]
    if not walls:
        return "There are no walls near you."
    if len(walls) == 1:
        return f"There is a wall {walls[0]}."
    return f"There are walls {', '.join(walls)}."


def describe_full(maze: Maze, cell: tuple[int, int]) -> str:
    """The fully observed text: the goal, the agent's position and the walls next to it.

    Example:
        ```python
        >>> describe_full(Maze.from_layout("double_t_maze"), (1, 11))
        'The goal is at position 8, 6. Your current position is at position 1, 1 1. There are walls to your right, above you, below you.\\n'
        ```
    """
    goal = f"The goal is at position {_spaced(maze.goal[0])}, {_spaced(maze.goal[1])}."
    position = f"Your current position is at position {_spaced(cell[0])}, {_spaced(cell[1])}."
    return f"{goal} {position} {describe_walls(maze, cell)}\n"


def describe_partial(maze: Maze, cell: tuple[int, int]) -> str:
    """The partially observed text: only the walls next to the agent.

    Example:
        ```python
        >>> describe_partial(Maze.from_layout("double_t_maze"), (1, 2))
        'There are walls above you, below you.\\n'
        ```
    """
    return f"{describe_walls(maze, cell)}\n"


DESCRIBE = {"full": describe_full, "partial": describe_partial}


def read_move(text: str) -> str | None:
    """The move a reply names, or None when it is not one of `MOVES` (exactly, with at most one newline
    after it)."""
    move = text.removesuffix("\n")
    return move if move in MOVES else None


class LmrlGymMazeEnv:
    """LMRL-Gym's maze. Each step costs -1, a reply that is not a move -4 (the agent stays), and the move
    that reaches the goal 0, which ends the episode ("Success"). After 100 steps without the goal, the
    next reply ends it with -1 ("Failure") and is not played, so a lost episode returns -101 when every
    reply was a move.

    Split "eval" starts episode `seed` at the `seed % 25`-th start cell (`Maze.starts` order), so 25
    consecutive seeds play each start once; split "train" draws the start at random from the same cells
    (LMRL-Gym evaluates on every cell, none is held out).

    Example:
        ```python
        >>> env = LmrlGymMazeEnv(observation="partial")
        >>> env.reset(seed=0)  # start (1, 1)
        'There are walls to your left, above you, below you.\\n'
        >>> env.step("move right")
        ('There are walls above you, below you.\\n', -1.0, False, {'invalid': False})
        ```
    """

    def __init__(self, layout: str = "double_t_maze", observation: str = "full", split: str = "eval"):
        if observation not in DESCRIBE:
            raise ValueError(f"observation must be 'full' or 'partial', got {observation!r}.")
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}.")
        self.maze = Maze.from_layout(layout)
        self.layout, self.observation, self.split = layout, observation, split
        self.starts = self.maze.starts()
        self.describe = DESCRIBE[observation]
        self.position = self.starts[0]
        self.steps = 0

    def reset(self, seed: int | None = None) -> str:
        if self.split == "eval":
            self.position = self.starts[(seed or 0) % len(self.starts)]
        else:
            self.position = random.Random(seed).choice(self.starts)
        self.steps = 0
        return self.describe(self.maze, self.position)

    def step(self, text: str) -> tuple[str, float, bool, dict]:
        if self.steps >= MAX_STEPS:
            return FAILURE_TEXT, FAILURE_REWARD, True, {"success": False}
        move = read_move(text)
        if move is not None:
            self.position = self.maze.move(self.position, move)
        if self.position == self.maze.goal:
            return SUCCESS_TEXT, GOAL_REWARD, True, {"success": True}
        self.steps += 1
        reward = MOVE_REWARD if move is not None else INVALID_REWARD
        return self.describe(self.maze, self.position), reward, False, {"invalid": move is None}


def reference_context(messages: list[dict], observation: str) -> str:
    """The text LMRL-Gym's policy conditions on at the end of `messages` (an lmrl episode: one user
    message per observation, one assistant message per reply): the last `LAST_K[observation]` texts,
    replies written with their newline, joined without separators. A reply that is not a move makes
    LMRL-Gym's environment drop the history, so the window then starts again at the next observation.

    Example:
        ```python
        >>> messages = [{"role": "user", "content": "There is a wall above you.\\n"},
        ...             {"role": "assistant", "content": "move down"},
        ...             {"role": "user", "content": "There are walls to your right, to your left.\\n"}]
        >>> reference_context(messages, "partial")
        'There is a wall above you.\\nmove down\\nThere are walls to your right, to your left.\\n'
        >>> reference_context(messages, "full")
        'There are walls to your right, to your left.\\n'
        ```
    """
    if observation not in LAST_K:
        raise ValueError(f"observation must be 'full' or 'partial', got {observation!r}.")
    texts: list[str] = []
    for message in messages:
        if message["role"] == "user":
            texts.append(message["content"])
        elif message["role"] == "assistant":
            move = read_move(message["content"])
            texts = texts + [move + "\n"] if move is not None else []
    return "".join(texts[-LAST_K[observation]:])
