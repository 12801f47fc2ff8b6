"""No command writes over or deletes a file it reads, and a command that fails leaves its output as it was."""

import shutil
from pathlib import Path

import pytest

from lmrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "doors_ilql.yaml"
DOORS = ROOT / "examples" / "data" / "doors.jsonl"


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "doors.jsonl"
    shutil.copy(DOORS, path)
    return path


def test_user_side_refuses_to_write_its_dataset_even_through_a_link(data, tmp_path, monkeypatch, capsys):
    link = tmp_path / "link.jsonl"
    link.symlink_to(data)
    monkeypatch.chdir(tmp_path)
    before = data.read_bytes()
    for out in (str(data), "./doors.jsonl", str(link)):
        assert main(["user-side", str(data), "--out", out]) == 2
        assert "which this command reads: writing it would destroy its input" in capsys.readouterr().err
    assert data.read_bytes() == before


def test_make_data_that_fails_leaves_the_old_file_as_it_was(tmp_path, capsys):
    out = tmp_path / "maze.jsonl"
    out.write_text("keep me\n")
    assert main(["make-data", "maze", "--episodes", "3", "--out", str(out), "--option", "layuot=rooms"]) == 2
    assert "no option 'layuot'" in capsys.readouterr().err
    assert out.read_text() == "keep me\n" and [p.name for p in tmp_path.iterdir()] == ["maze.jsonl"]


def test_make_data_replaces_its_output_whole(tmp_path):
    out = tmp_path / "maze.jsonl"
    out.write_text("old\n")
    assert main(["make-data", "maze", "--episodes", "3", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and "old" not in lines and [p.name for p in tmp_path.iterdir()] == ["maze.jsonl"]


@pytest.mark.parametrize("inside", ["dataset", "recipe"])
def test_train_refuses_an_output_dir_that_holds_what_it_reads(data, tmp_path, capsys, inside):
    recipe = tmp_path / "recipes" / "recipe.yaml"
    recipe.parent.mkdir()
    shutil.copy(RECIPE, recipe)
    output_dir = recipe.parent if inside == "recipe" else data.parent
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["train", str(recipe), "--dataset", str(data), "--output_dir", str(output_dir), "--max_steps", "1"])
    assert code == 2
    label = "the recipe" if inside == "recipe" else "dataset"
    assert f"{label} ({recipe if inside == 'recipe' else data}) is in output_dir" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_eval_refuses_to_write_its_report_over_the_recipe_or_the_data(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    data = folder / "eval.json"
    data.write_text(DOORS.read_text())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.read_text() + "task: maze\n")
    code = main(["eval", str(recipe), "--dataset", str(data), "--checkpoint", str(folder), "--episodes", "1"])
    assert code == 2
    assert f"eval.json ({data}) is {data}, which this command reads" in capsys.readouterr().err
    assert data.read_text() == DOORS.read_text()
