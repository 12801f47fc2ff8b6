"""End to end on the maze, with the shipped recipes: offline RL beats imitation online."""

from pathlib import Path

from transformers import set_seed

from lmrl.cli import build_trainer, make_data, parse_recipe, read_recipe
from lmrl.evaluation import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_ilql_beats_bc_online_on_held_out_maze_starts(tmp_path, monkeypatch):
    """The data's most frequent move is usually the detour walkers'; BC copies it, ILQL learns from
    the returns which moves are shorter and takes them from starts the data never began at."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "maze.jsonl"
    make_data("maze", 1000, str(data), seed=0, task_kwargs={"progress": False})
    reports = {}
    for algo in ("bc", "ilql"):
        overrides = ["--dataset", str(data), "--output_dir", str(tmp_path / algo), "--disable_tqdm", "true"]
        script, config = parse_recipe(read_recipe(ROOT / "recipes" / "maze" / f"{algo}.yaml", overrides))
        set_seed(0)
        trainer = build_trainer(script, config)
        trainer.train()
        trainer.save_model()
        reports[algo] = evaluate_checkpoint(script, config, config.output_dir, episodes=30, progress=False)
    bc, ilql = reports["bc"], reports["ilql"]
    print(f"maze: BC {bc['normalized']:.1f} [{bc['normalized_low']:.1f}, {bc['normalized_high']:.1f}], "
          f"ILQL {ilql['normalized']:.1f} [{ilql['normalized_low']:.1f}, {ilql['normalized_high']:.1f}]")
    assert ilql["invalid_action_rate"] == 0
    assert ilql["normalized"] > bc["normalized"] + 15
    assert ilql["normalized_low"] > bc["normalized_high"]
