"""`lmrl play`: a person takes the other side of the agent's task; each finished episode becomes a
training row, appended atomically to a JSONL file that trainers read."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmrl.api import make_data
from lmrl.cli import main
from lmrl.data import load_episodes, prepare_dataset, validate_row
from lmrl.play import PlaySession, append_row
from lmrl.tasks.flight_booking import HumanCustomer, correct_action, render_action
from lmrl.tasks.negotiation import HumanBuyer

ROOT = Path(__file__).resolve().parents[1]


def _train(root: Path, task: str, recipe: str, options: dict, overrides: list[str]) -> tuple[Path, Path]:
    data = root / f"{task}.jsonl"
    make_data(task, 40, str(data), seed=0, task_kwargs={"progress": False, **options})
    out = root / "agent"
    assert main(["train", str(ROOT / "recipes" / recipe), "--dataset", str(data), "--output_dir", str(out),
                 "--max_steps", "2", "--disable_tqdm", "true", *overrides]) == 0
    return out, data


@pytest.fixture(scope="module")
def seller(tmp_path_factory):
    """A tiny negotiation BC model trained for two steps, and its data."""
    return _train(tmp_path_factory.mktemp("seller"), "negotiation", "negotiation/bc.yaml", {}, [])


@pytest.fixture(scope="module")
def flight_agent(tmp_path_factory):
    options = {"num_flights": 2, "success_rule": "flight_status"}
    return _train(tmp_path_factory.mktemp("flights"), "flight_booking", "flight_booking/bc.yaml", options,
                  ["--task_kwargs", "{num_flights: 2, success_rule: flight_status}"])


def _play(monkeypatch, capsys, args: list[str], lines: list[str]) -> tuple[int, str]:
    """Run `lmrl play ARGS` with these lines typed; the exit code and what it printed (stdout and stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    code = main(["play", *args])
    printed = capsys.readouterr()
    return code, printed.out + printed.err


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_negotiation_played_in_the_terminal_is_a_row_the_trainer_reads(seller, tmp_path, monkeypatch, capsys):
    agent, _ = seller
    out = tmp_path / "played.jsonl"
    # an empty line and a line without a price get a message and another try; "deal" accepts the seller's
    # price (or, when the seller already closed, is an unreadable rating and "5" follows)
    code, text = _play(monkeypatch, capsys, [str(agent), "--out", str(out)],
                       ["", "hello there", "I can pay $100.", "deal", "5"])
    assert code == 0
    assert "You are the buyer. For sale:" in text and "Your budget:" in text
    assert "Your line is empty" in text and "No price in your line" in text
    assert "agent> " in text and "The seller scores" in text and f"Saved episode 1 to {out}" in text
    [row] = _rows(out)
    assert row["task"] == "negotiation" and row["source"] == "human" and row["rating"] == 5 and row["done"]
    humans = [m["content"] for m in row["messages"] if m["role"] == "user"]
    assert humans[0] == "I can pay $100." and "hello there" not in humans
    expected = row["sale_price"] / row["list_price"] if row["sale_price"] is not None else -0.5
    assert validate_row(row).total_reward == pytest.approx(expected)
    from transformers import AutoTokenizer

    tokenized = prepare_dataset(str(out), AutoTokenizer.from_pretrained(agent))
    assert len(tokenized) == 1 and sum(tokenized[0]["action_mask"]) > 0


def test_a_flight_booking_played_in_the_terminal_keeps_the_fields_calm_learns_from(flight_agent, tmp_path,
                                                                                  monkeypatch, capsys):
    agent, _ = flight_agent
    out = tmp_path / "played.jsonl"
    # any line answers the agent; once the episode ends, the next "4" is the rating
    code, text = _play(monkeypatch, capsys, [str(agent), "--out", str(out)],
                       ["  ", "Hi, I'd like to book a round trip.", *["4"] * 11])
    assert code == 0
    assert "You are the customer. Your name:" in text and "Your line is empty" in text
    [row] = _rows(out)
    assert row["task"] == "flight_booking" and row["rating"] == 4 and row["success_rule"] == "flight_status"
    assert len(row["context"]["kb"]) == 2 and row["expected_action"]["status"] == correct_action(
        row["context"]["kb"], row["context"]["reservation"], row["intent"])[0]
    assert validate_row(row).total_reward in (0.0, 1.0)
    from transformers import AutoTokenizer

    assert len(prepare_dataset(str(out), AutoTokenizer.from_pretrained(agent))) == 1


class Scripted:
    """A policy that says the given replies in turn."""

    def __init__(self, *replies):
        self.replies = list(replies)

    def __call__(self, conversations):
        return [self.replies.pop(0) for _ in conversations]


def test_the_negotiation_is_scored_by_the_tasks_rules():
    session = PlaySession(Scripted("I can do $200.", "Deal."), HumanBuyer(), "negotiation", max_turns=10)
    session.start(seed=3)  # a Nintendo Switch listed at $260
    assert session.hear("Would you take $150?") == "I can do $200."
    assert session.hear("How about $180?") == "Deal." and session.finished  # sold at the buyer's offer
    assert session.row()["messages"][-1]["reward"] == pytest.approx(180 / 260)

    session = PlaySession(Scripted("I can do $230."), HumanBuyer(), "negotiation", max_turns=10)
    session.start(seed=3)
    session.hear("I can pay $150.")
    assert session.hear("Deal!") is None and "Sold at $230" in session.summary  # at the seller's price
    assert validate_row(session.row()).total_reward == pytest.approx(230 / 260)

    session = PlaySession(Scripted("The price is firm at $260."), HumanBuyer(), "negotiation", max_turns=10)
    session.start(seed=3)
    session.hear("$100?")
    session.hear("No deal, bye.")
    assert session.row()["messages"][-1]["reward"] == -0.5 and session.row()["sale_price"] is None


def test_the_flight_booking_is_scored_by_the_tasks_rules():
    customer = HumanCustomer(num_flights=4, success_rule="flight_status")
    customer.reset(seed=5)
    status, flight = correct_action(customer.env.kb, customer.env.reservation, customer.env.intent)
    right, wrong = render_action(status, flight), "Final action: book flight 1."
    for reply, reward in ((right, 1.0), (wrong, 0.0)):
        session = PlaySession(Scripted("Where to?", reply), HumanCustomer(4, "flight_status"), "flight_booking", 10)
        session.start(seed=5)
        session.hear("Hello.")
        session.hear("Boston.")
        row = session.row(rating=3)
        assert session.finished and row["done"] and row["messages"][-1]["reward"] == reward
        assert row["action"]["status"] in (status, "book") and ("(right)" in session.summary) == bool(reward)


def test_ending_early_keeps_a_cut_off_row_and_nothing_without_a_reply():
    session = PlaySession(Scripted("I can do $250."), HumanBuyer(), "negotiation", max_turns=10)
    session.start(seed=3)
    session.end()
    assert session.row() is None  # the agent never spoke: nothing to learn from
    session.start(seed=3)
    session.hear("$120")
    session.end()
    assert session.row()["done"] is False  # bootstrapped, not terminal


def test_an_interrupted_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "played.jsonl"
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "reward": 1.0}],
           "done": True}
    append_row(out, row)
    before = out.read_bytes()

    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        append_row(out, row)
    assert out.read_bytes() == before and list(tmp_path.iterdir()) == [out]
    monkeypatch.undo()
    append_row(out, row)
    assert len(load_episodes(str(out))) == 2


@pytest.mark.slow  # a subprocess each (about 10 s): the locked suite runs it
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_the_file_is_valid_after_the_process_dies_mid_episode(seller, tmp_path, sig):
    agent, _ = seller
    out = tmp_path / "played.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-u", "-m", "lmrl.cli", "play", str(agent), "--out", str(out),
                                "--episodes", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    process.stdin.write("I can pay $100.\ndeal\n5\n")  # episode 1, then episode 2 waits for the first line
    process.stdin.flush()
    seen, started = "", time.monotonic()
    while seen.count("You are the buyer") < 2:
        assert time.monotonic() - started < 60 and process.poll() is None, seen
        seen += process.stdout.readline()
    time.sleep(0.3)  # at the prompt of episode 2
    process.send_signal(sig)
    rest, _ = process.communicate(timeout=30)
    if sig == signal.SIGINT:
        assert process.returncode == 130 and "holds 1 finished episode(s)" in rest
    [row] = _rows(out)  # the finished episode, whole; the unfinished one is not there
    validate_row(row)
    assert row["rating"] in (5, None) and sorted(p.name for p in tmp_path.iterdir()) == ["played.jsonl"]


def test_the_output_file_is_never_overwritten_and_resume_checks_it(seller, tmp_path, monkeypatch, capsys):
    agent, _ = seller
    out = tmp_path / "played.jsonl"
    out.write_text('{"messages": [{"role": "assistant", "content": "Hi"}], "done": true}\n{"messages": \n')
    code, text = _play(monkeypatch, capsys, [str(agent), "--out", str(out)], [])
    assert code == 2 and "already exists. Add --resume" in text
    code, text = _play(monkeypatch, capsys, [str(agent), "--out", str(out), "--resume"], [])
    assert code == 2 and "line 2 is not a valid episode row" in text
    out.write_text('{"messages": [{"role": "assistant", "content": "Hi"}], "done": true}\n')
    code, text = _play(monkeypatch, capsys, [str(agent), "--out", str(out), "--resume"], ["$100", "/end", ""])
    assert code == 0 and "(1 there already)" in text and len(_rows(out)) == 2


def test_a_model_without_a_recipe_is_a_free_chat(seller, tmp_path, monkeypatch, capsys):
    agent, _ = seller
    model = tmp_path / "model"
    shutil.copytree(agent, model, ignore=shutil.ignore_patterns("recipe.yaml"))
    monkeypatch.chdir(tmp_path)  # no recipes/ here that could name the folder
    code, text = _play(monkeypatch, capsys, [str(model), "--out", "chat.jsonl"], ["Hello!", "/end", "2"])
    assert code == 0 and "Free chat" in text
    [row] = _rows(tmp_path / "chat.jsonl")
    assert row["task"] is None and row["done"] and row["rating"] == 2 and row["messages"][0]["content"] == "Hello!"


def test_the_played_rows_train_beside_the_original_data(seller, tmp_path, monkeypatch, capsys):
    agent, data = seller
    played = tmp_path / "played.jsonl"
    _play(monkeypatch, capsys, [str(agent), "--out", str(played)], ["I can pay $100.", "deal", "5"])
    both = load_episodes([str(data), str(played)])
    assert len(both) == 41 and both[40]["rating"] == 5 and both[0]["rating"] is None
    out = tmp_path / "again"
    assert main(["train", str(ROOT / "recipes" / "negotiation" / "bc.yaml"), "--dataset", f"[{data}, {played}]",
                 "--output_dir", str(out), "--max_steps", "1", "--disable_tqdm", "true"]) == 0
    assert json.loads((out / "train_summary.json").read_text())["train_loss"] > 0
