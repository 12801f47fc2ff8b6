"""Tasks as a plugin boundary: a task of one's own plugs in by registration, by an installed package's
entry point or by a 'module:ATTRIBUTE' reference, and every task's options are checked by name."""

import importlib.metadata
import json
import random
import sys
import textwrap

import pytest

import lmrl.tasks
from lmrl.cli import main
from lmrl.envs import EpisodeResult, TaskAnchors, rollout
from lmrl.tasks import Task, get_task, register_task, task_names


class CoinEnv:
    """Two turns; each reply that is the asked-for word pays 1."""

    def __init__(self, word: str = "heads"):
        self.word = word

    def reset(self, seed=None):
        self.turn = 0
        return f"Say {self.word}."

    def step(self, text):
        self.turn += 1
        reward = float(text.strip() == self.word)
        done = self.turn == 2
        return f"Again: say {self.word}.", reward, done, {"success": done and reward == 1.0}


def coin_episodes(n: int, seed: int = 0, progress: bool = True, word: str = "heads") -> list[EpisodeResult]:
    """A behaviour policy that says heads or tails at random."""
    rng = random.Random(seed)

    def policy(conversations):
        return [rng.choice(["heads", "tails"]) for _ in conversations]

    return rollout(lambda: CoinEnv(word), policy, range(seed, seed + n), max_turns=2, progress=False)


COIN = Task("coin", make_env=lambda split="eval", word="heads": CoinEnv(word), make_data=coin_episodes,
            anchors=lambda dataset_return: TaskAnchors(minimum=0.0, dataset=dataset_return, best=2.0),
            max_turns=2, max_new_tokens=3)


@pytest.fixture(autouse=True)
def no_task_registered_before(monkeypatch):
    monkeypatch.setattr(lmrl.tasks, "_REGISTERED", {})


# ---------------------------------------------------------------- options
def test_a_misspelt_option_names_itself_the_task_and_the_valid_options():
    with pytest.raises(ValueError) as error:
        get_task("maze").make_env("eval", layuot="rooms")
    assert str(error.value) == ("Task 'maze' has no option 'layuot'; its options: layout, observation, max_turns, "
                                "detour_share, epsilon (did you mean 'layout'?).")
    with pytest.raises(ValueError, match="Task 'coin' has no option 'wrod'; its options: word"):
        COIN.make_data(4, seed=0, wrod="tails")


def test_each_factory_receives_the_options_it_takes_of_the_ones_they_share():
    assert COIN.options == ("word",)
    # the recipe's task_kwargs go to make_env and anchors alike; anchors takes none of them
    assert COIN.make_env("eval", word="tails").reset(0) == "Say tails."
    assert COIN.anchors(0.5, word="tails").best == 2.0
    assert get_task("maze").make_env("eval", layout="rooms", max_turns=10).layout == "rooms"


def test_a_factory_that_swallows_any_option_is_refused_when_the_task_is_made():
    with pytest.raises(ValueError, match="Task 'loose': make_env takes \\*\\*kwargs"):
        Task("loose", make_env=lambda split="eval", **_: CoinEnv(), make_data=coin_episodes,
             anchors=COIN.anchors, max_turns=2)


def test_make_data_on_the_command_line_refuses_a_misspelt_option(tmp_path, capsys):
    assert main(["make-data", "maze", "--episodes", "2", "--out", str(tmp_path / "d.jsonl"),
                 "--option", "layuot=rooms"]) == 2
    assert "Task 'maze' has no option 'layuot'" in capsys.readouterr().err
    assert not (tmp_path / "d.jsonl").exists()


# ---------------------------------------------------------------- the registry
def test_an_unknown_task_lists_the_known_ones_and_how_to_add_one():
    with pytest.raises(ValueError, match="Unknown task 'mze'; available: flight_booking, lmrl_gym_maze, "
                                         "lmrl_gym_wordle, maze, negotiation, wordle \\(did you mean 'maze'\\?\\)"
                                         ".*register_task"):
        get_task("mze")


def test_a_registered_task_is_found_by_name_and_a_taken_name_needs_replace():
    register_task(COIN)
    assert get_task("coin") is COIN and "coin" in task_names()
    with pytest.raises(ValueError, match="'coin' is taken by a registered task; pass replace=True"):
        register_task(COIN)
    with pytest.raises(ValueError, match="'maze' is taken by a built-in task"):
        register_task(Task("maze", COIN.make_env, COIN.make_data, COIN.anchors, max_turns=2))
    other = Task("coin", COIN.make_env, COIN.make_data, COIN.anchors, max_turns=5)
    register_task(other, replace=True)
    assert get_task("coin") is other


def test_tasks_installed_packages_publish_are_read_from_the_entry_point_group(monkeypatch):
    published = {"lmrl.tasks": [importlib.metadata.EntryPoint("coin", f"{__name__}:COIN", "lmrl.tasks"),
                                importlib.metadata.EntryPoint("dice", f"{__name__}:COIN", "lmrl.tasks"),
                                importlib.metadata.EntryPoint("text", f"{__name__}:__doc__", "lmrl.tasks")]}
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: published.get(group, []))
    assert get_task("coin") is COIN
    assert task_names() == ["coin", "dice", "flight_booking", "lmrl_gym_maze", "lmrl_gym_wordle", "maze",
                            "negotiation", "text", "wordle"]
    with pytest.raises(ValueError, match="Entry point 'dice' .* gives the task named 'coin'; .* same name"):
        get_task("dice")
    with pytest.raises(ValueError, match="Entry point 'text' .* is a str, not an lmrl.tasks.Task"):
        get_task("text")


def test_a_reference_names_a_task_object_in_a_module():
    assert get_task(f"{__name__}:COIN") is COIN
    with pytest.raises(ValueError, match="module 'lmrl.tasks' has no 'COIN'"):
        get_task("lmrl.tasks:COIN")
    with pytest.raises(ValueError, match="no module 'no_such_tasks' to import"):
        get_task("no_such_tasks:COIN")


def test_a_reference_finds_a_module_in_the_working_directory(tmp_path, monkeypatch):
    """As `lmrl eval` started in the folder of the user's tasks file finds it (the console script does
    not put that folder on sys.path)."""
    (tmp_path / "my_coin_tasks.py").write_text(textwrap.dedent(f"""
        from {__name__} import COIN
        FAIR = COIN
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    assert get_task("my_coin_tasks:FAIR") is COIN


# ---------------------------------------------------------------- end to end through the command line
RECIPE = """\
algorithm: bc
dataset: {data}
task: {task}
task_kwargs: {{word: tails}}
tiny_model: {{architecture: gpt2, hidden_size: 32, num_layers: 1, vocab_size: 300}}
output_dir: {out}
learning_rate: 1.0e-2
max_steps: 6
per_device_train_batch_size: 16
save_strategy: "no"
report_to: none
disable_tqdm: true
seed: 0
"""


@pytest.mark.parametrize("by", ["registration", "reference"])
def test_a_task_of_ones_own_makes_data_trains_and_evaluates_through_the_command_line(by, tmp_path, capsys):
    if by == "registration":
        register_task(COIN)
        task = "coin"
    else:
        task = f"{__name__}:COIN"
    data, out = tmp_path / "coin.jsonl", tmp_path / "bc"
    assert main(["make-data", task, "--episodes", "64", "--out", str(data), "--option", "word=tails"]) == 0
    first = json.loads(data.read_text().splitlines()[0])
    assert first["messages"][0] == {"role": "user", "content": "Say tails."}
    recipe = tmp_path / "coin.yaml"
    recipe.write_text(RECIPE.format(data=data, task=task, out=out))
    assert main(["train", str(recipe)]) == 0
    assert main(["eval", str(recipe), "--episodes", "4"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["task"] == "coin" and report["task_kwargs"] == {"word": "tails"} and report["episodes"] == 4
    assert report["anchors"]["best"] == 2.0 and all(r in (0.0, 1.0, 2.0) for r in report["returns"])
    assert report["examples"][0][0] == {"role": "user", "content": "Say tails."}  # the option reached make_env
    capsys.readouterr()
    recipe.write_text(RECIPE.format(data=data, task=task, out=out).replace("word: tails", "wrod: tails"))
    assert main(["eval", str(recipe), "--episodes", "1"]) == 2
    assert "Task 'coin' has no option 'wrod'; its options: word (did you mean 'word'?)" in capsys.readouterr().err
