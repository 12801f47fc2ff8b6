"""A run never writes over another run's model in silence, and never resumes another run's checkpoint:
an output_dir that holds a run is refused unless the user resumes it or says overwrite_output_dir, and a
checkpoint written with other data, another tokenizer or other settings is refused, naming what differs."""

import json
import shutil
import stat
from pathlib import Path

import pytest

from lmrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "doors_ilql.yaml"
DOORS = ROOT / "examples" / "data" / "doors.jsonl"


def _train(out: Path, *extra: str) -> int:
    return main(["train", str(RECIPE), "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "steps",
                 "--save_steps", "1", "--disable_tqdm", "true", *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "first"
    assert _train(out) == 0
    return out


def test_training_into_a_folder_that_holds_a_run_is_refused_and_leaves_it_untouched(run, tmp_path, capsys):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("model.safetensors", "config.json", "train_summary.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    assert _train(copy) == 2
    err = capsys.readouterr().err
    assert f"{copy} already holds another run (config.json, model.safetensors, train_summary.json)" in err
    assert "overwrite_output_dir=true" in err and "resume_from_checkpoint=true" in err
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_overwrite_output_dir_replaces_the_run(run, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes())
    assert _train(out, "--overwrite_output_dir", "true", "--seed", "1") == 0
    assert json.loads((out / "lmrl_run.json").read_text())["settings"]["seed"] == 1


def test_a_checkpoint_of_the_same_run_resumes(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    assert _train(out, "--max_steps", "3", "--resume_from_checkpoint", "true") == 0
    assert json.loads((out / "trainer_state.json").read_text() if (out / "trainer_state.json").exists()
                      else (out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3


@pytest.mark.parametrize("change, named", [
    (["--learning_rate", "0.01"], "learning_rate (0.001 there, 0.01 here)"),
    (["--tau", "0.9"], "tau (0.7 there, 0.9 here)"),
    (["--dataset", "OTHER_DATA"], "the training data"),
    (["--tiny_model", "{architecture: gpt2, hidden_size: 64, num_layers: 2, vocab_size: 300, chat_template: true}"],
     "the tokenizer"),
], ids=["learning_rate", "tau", "data", "tokenizer"])
def test_resuming_a_checkpoint_of_another_run_is_refused_naming_what_differs(run, tmp_path, capsys, change, named):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(line.replace("Pick", "Choose") + "\n" for line in DOORS.read_text().splitlines()))
    change = [str(other) if value == "OTHER_DATA" else value for value in change]
    before = (out / "checkpoint-2" / "model.safetensors").read_bytes()
    assert _train(out, "--max_steps", "3", "--resume_from_checkpoint", "true", *change) == 2
    err = capsys.readouterr().err
    assert f"{out}/checkpoint-2 was written by another run: " in err and named in err
    assert (out / "checkpoint-2" / "model.safetensors").read_bytes() == before and not (out / "checkpoint-3").exists()


def test_a_saved_run_has_no_pickle_and_its_weights_are_as_readable_as_its_other_files(run):
    for folder in (run, run / "checkpoint-2"):
        assert not (folder / "training_args.bin").exists() and (folder / "training_args.json").is_file()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}
        assert modes["model.safetensors"] == modes["config.json"], modes
