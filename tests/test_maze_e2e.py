"""End to end on the maze, with the shipped recipes: offline RL beats imitation online."""

from pathlib import Path

import pytest
from conftest import train_and_evaluate

from lmrl.api import make_data

pytestmark = pytest.mark.slow  # left out of CI's latest and floor jobs (make test-latest / test-floor)

ROOT = Path(__file__).resolve().parents[1]


def test_ilql_beats_bc_online_on_held_out_maze_starts(tmp_path, monkeypatch):
    """The data's most frequent move is usually the detour walkers'; BC copies it, ILQL learns from
    the returns which moves are shorter and takes them from starts the data never began at."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "maze.jsonl"
    make_data("maze", 1000, str(data), seed=0, task_kwargs={"progress": False})
    bc, ilql = (train_and_evaluate(ROOT / "recipes" / "maze" / f"{algo}.yaml",
                                   ["--dataset", str(data), "--output_dir", str(tmp_path / algo)], episodes=30)
                for algo in ("bc", "ilql"))
    assert ilql["invalid_action_rate"] == 0
    assert ilql["normalized"] > bc["normalized"] + 15
    assert ilql["normalized_low"] > bc["normalized_high"]
