"""Reference policies for LMRL-Gym's maze: random, the data's player, the shortest path, and the best
policy tabular Q-learning can extract from the seed's data when it knows the true state.

Which ones are oracles depends on the observation. Fully observed, the observation states the position,
so a policy that acts on the position uses only what the agent is shown ("reference"). Partially
observed, the agent sees only walls: a policy that acts on the true position reads the environment, not
the conversation ("upper_bound").
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from lmrl.envs import ReferencePolicy

from .data import OPTIMAL_SHARE, MazeMixturePolicy
from .env import DESCRIBE, GOAL_REWARD, MOVES, Maze, read_move

Cell = tuple[int, int]

_POSITION = re.compile(r"Your current position is at position ([\d ]+), ([\d ]+)\.")


def read_position(observation: str) -> Cell | None:
    """The position a fully observed text states (its digits written apart), or None.

    Example:
        ```python
        >>> read_position("The goal is at position 8, 6. Your current position is at position 1, 1 1. There ...")
        (1, 11)
        ```
    """
    found = _POSITION.search(observation)
    return None if found is None else (int(found[1].replace(" ", "")), int(found[2].replace(" ", "")))


class PositionPolicy:
    """Plays `choose(position)`, the position read from the last observation (fully observed) or from the
    environment (`from_env=True`, then `needs_envs` asks the rollout loop for them).

    Example:
        ```python
        >>> policy = PositionPolicy(lambda cell: "move right")
        >>> policy([[{"role": "user", "content": "The goal is at position 8, 6. Your current position is at "
        ...                                       "position 1, 1. There are walls to your left, above you, below you.\\n"}]])
        ['move right']
        ```
    """

    def __init__(self, choose: Callable[[Cell], str], from_env: bool = False):
        self.choose, self.needs_envs = choose, from_env

    def __call__(self, conversations: list[list[dict]], envs: list | None = None) -> list[str]:
        if self.needs_envs:
            return [self.choose(env.position) for env in envs]
        positions = [read_position(conversation[-1]["content"]) for conversation in conversations]
        if None in positions:
            raise ValueError("PositionPolicy reads the position from a fully observed text; this conversation's last "
                             "message states none (partially observed? use from_env=True).")
        return [self.choose(cell) for cell in positions]


class RandomMovePolicy:
    """One of the four moves, uniformly, whatever it sees."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        return [self.rng.choice(list(MOVES)) for _ in conversations]


def _trajectories(maze: Maze, observation: str, row: dict) -> list[list[tuple[Cell, str, float, Cell | None]]]:
    """The row's transitions (position, move, reward, next position; None when the move reached the goal),
    for each start cell consistent with the row's texts. Fully observed texts give one start; a partially
    observed row can fit several (e.g. mirror cells: 17% of the rows of 1,000 double-T episodes fit two),
    and each of their walks is a true walk of the maze, so all are kept. A reply after the step limit
    ends the episode without being played (a time-out, not a transition) and is left out."""
    messages = [m for m in row["messages"] if m["role"] in ("user", "assistant")]
    describe = DESCRIBE[observation]
    fits = []
    for start in maze.starts():
        cell, transitions, consistent = start, [], True
        for i, message in enumerate(messages):
            if message["role"] == "user":
                if describe(maze, cell) != message["content"]:
                    consistent = False
                    break
                continue
            move, reward = read_move(message["content"]), float(message.get("reward", 0.0))
            last = i == len(messages) - 1
            if move is None or (last and reward != GOAL_REWARD):
                continue  # an invalid reply (the agent stays) or the time-out (not played)
            target = maze.move(cell, move)
            if (target == maze.goal) != last:
                consistent = False
                break
            transitions.append((cell, move, reward, None if last else target))
            cell = target
        if consistent:
            fits.append(transitions)
    return fits


def offline_q_values(rows: list[dict], layout: str = "double_t_maze", observation: str = "full",
                     sweeps: int = 500) -> dict[Cell, dict[str, float]]:
    """Q(position, move) by value iteration on the data's transitions (undiscounted; the maze is
    deterministic, so the data's transitions are the model): only the (position, move) pairs the data
    shows get a value, as offline Q-learning can only back up what it has seen."""
    maze = Maze.from_layout(layout)
    model: dict[Cell, dict[str, tuple[float, Cell | None]]] = {}
    for row in rows:
        for transitions in _trajectories(maze, observation, row):
            for cell, move, reward, target in transitions:
                model.setdefault(cell, {})[move] = (reward, target)
    q = {cell: dict.fromkeys(moves, 0.0) for cell, moves in model.items()}

    def value(cell: Cell | None) -> float:
        if cell is None:
            return 0.0
        return max(q[cell].values()) if cell in q else -float(sweeps)  # never left in the data: a dead end
    for _ in range(sweeps):
        q = {cell: {move: reward + value(target) for move, (reward, target) in moves.items()}
             for cell, moves in model.items()}
    return q


def offline_q_policy(rows: list[dict], layout: str = "double_t_maze", observation: str = "full",
                     seed: int = 0) -> PositionPolicy:
    """Greedy in [`offline_q_values`] (ties in `MOVES` order); a random move in a position the data never
    acted in."""
    q = offline_q_values(rows, layout, observation)
    rng = random.Random(seed)

    def choose(cell: Cell) -> str:
        if cell not in q:
            return rng.choice(list(MOVES))
        return max(q[cell], key=lambda move: (q[cell][move], -list(MOVES).index(move)))
    return PositionPolicy(choose, from_env=observation == "partial")


def reference_policies(rows: list[dict], seed: int = 0, layout: str = "double_t_maze",
                       observation: str = "full", optimal_share: float = OPTIMAL_SHARE) -> list[ReferencePolicy]:
    """random, behaviour, optimal and offline Q (true state); see the module's docstring for their kinds."""
    maze = Maze.from_layout(layout)
    full = observation == "full"
    best = {cell: maze.optimal_moves(cell)[0] for cell in maze.starts()}
    behaviour = MazeMixturePolicy(maze, optimal_share, seed)
    seen = "the position the observation states" if full else "the true position, which the agent is not shown"
    return [
        ReferencePolicy("random", RandomMovePolicy(seed), "reference", "one of the four moves, uniformly"),
        ReferencePolicy("behaviour", PositionPolicy(behaviour.act, from_env=True), "reference",
                        f"the data's player (MazeMixturePolicy, optimal_share={optimal_share}): the shortest-path "
                        "move with that probability, else a random move; it reads the true position, as it did "
                        "when it made the data, and places the data's average return"),
        ReferencePolicy("optimal", PositionPolicy(best.__getitem__, from_env=not full),
                        "reference" if full else "upper_bound",
                        f"the shortest path from {seen}" + ("" if full else " (an oracle)")),
        ReferencePolicy("offline Q (true state)", offline_q_policy(rows, layout, observation, seed),
                        "reference" if full else "upper_bound",
                        "greedy in the Q-values that value iteration gets from this seed's data, its states the "
                        "positions: the best a learner can extract from this data when it knows the state. "
                        + ("Fully observed, the observation states the position, so a learner does know it."
                           if full else "Partially observed, the position is hidden (the data's positions are "
                           "recovered from each episode's texts and moves), so this is an upper bound.")),
    ]
