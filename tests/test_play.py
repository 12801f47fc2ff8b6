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
from lmrl.envs.human import FreeChat, UnreadableLine
from lmrl.play import Player, PlaySession, append_row, check_out
from lmrl.play_web import check_serving, is_loopback, parse_auth
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
    # seed 50000: a helmet listed at $40, a budget of $35. An empty line, a line without a price and an offer
    # above the budget get a message and another try; "bye" walks away (or, when the seller already accepted
    # the offer, is an unreadable rating and "5" follows)
    code, text = _play(monkeypatch, capsys, [str(agent), "--out", str(out)],
                       ["", "hello there", "I can pay $100.", "I can pay $20.", "bye", "5"])
    assert code == 0
    assert "You are the buyer. For sale:" in text and "Your budget:" in text and 'take $25?' in text
    assert "Your line is empty" in text and "No price in your line" in text and "above your budget of $35" in text
    assert "agent> " in text and "The seller scores" in text and f"Saved episode 1 to {out}" in text
    [row] = _rows(out)
    assert row["task"] == "negotiation" and row["source"] == "human" and row["rating"] == 5 and row["done"]
    humans = [m["content"] for m in row["messages"] if m["role"] == "user"]
    assert humans == ["I can pay $20."]
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
    """A policy that says the given replies in turn, and keeps the conversations it was shown."""

    def __init__(self, *replies):
        self.replies, self.seen = list(replies), []

    def __call__(self, conversations):
        self.seen += conversations
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


def test_a_deal_needs_the_buyer_to_agree_and_the_budget_holds():
    buyer = HumanBuyer()
    briefing = buyer.reset(seed=3)  # a Nintendo Switch listed at $260, a budget of $235
    assert "A deal closes only when" in briefing and "-0.50" in briefing
    buyer.hear("Would you take $150?")
    assert buyer.step("Ok, $15 then.")[1] is False  # a price at or below the offer is not a sale
    assert buyer.step("Deal at $140.")[1] is False  # nor is "deal" at a price the buyer did not offer
    assert buyer.hear("deal")[1] and buyer.sale_price == 140  # the buyer accepts the seller's last price
    buyer.reset(seed=3)
    buyer.hear("Would you take $150?")
    assert buyer.step("Deal.")[:2] == (pytest.approx(150 / 260), True)  # the seller accepts the offer
    buyer.reset(seed=3)
    with pytest.raises(UnreadableLine, match=r"\$300 is above your budget of \$235"):
        buyer.hear("I can pay $300.")
    buyer.hear("$200")
    buyer.step("The price is firm at $260.")
    with pytest.raises(UnreadableLine, match=r"\$260, is above your budget"):
        buyer.hear("deal")


def test_the_example_offer_follows_the_listing():
    buyer = HumanBuyer()
    for seed in range(40):
        briefing = buyer.reset(seed)
        offer = float(briefing.split('("Would you take $')[1].split("?")[0].replace(",", ""))
        assert 0.4 * buyer.list_price <= offer <= 0.8 * buyer.list_price, briefing
        with pytest.raises(UnreadableLine) as err:
            buyer.hear("hello")
        assert f"${offer:,.0f}?" in str(err.value)


def test_slash_end_ends_the_episode_and_never_reaches_the_agent():
    policy = Scripted("Hello! How can I help?")
    session = PlaySession(policy, FreeChat())
    assert "/end" in session.start(seed=0)
    session.hear("Hi")
    with pytest.raises(UnreadableLine, match="/quit is not a command here: type /end"):
        session.hear("/quit")
    assert session.hear(" /END ") is None and session.finished and session.summary == "Chat ended."
    row = session.row()
    assert row["done"] and [m["content"] for m in row["messages"]] == ["Hi", "Hello! How can I help?"]
    assert [m["content"] for c in policy.seen for m in c] == ["Hi"]
    session = PlaySession(Scripted(), FreeChat())
    session.start(seed=0)
    session.hear("/end")
    assert "nothing to save" in session.summary and session.row() is None


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
    assert "at most 10 replies" in session.start(seed=3)
    session.end()
    assert session.row() is None and "nothing to save" in session.summary  # nothing to learn from
    session.start(seed=3)
    session.hear("$120")
    session.hear("/end")
    assert session.row()["done"] is False and "unfinished" in session.summary  # bootstrapped, not terminal
    assert "done" not in session.summary and "/end" not in json.dumps(session.row())


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
    process.stdin.write("I can pay $20.\nbye\n5\n")  # episode 1, then episode 2 waits for the first line
    process.stdin.flush()
    seen, started = "", time.monotonic()
    while seen.count("You are the buyer") < 2:
        assert time.monotonic() - started < 60 and process.poll() is None, seen
        seen += process.stdout.readline()
    # episode 1 is written before episode 2's briefing is printed: the process dies between the two
    assert len(_rows(out)) == 1
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
    code, text = _play(monkeypatch, capsys, [str(agent), "--out", str(out), "--resume"], ["$20", "/end", ""])
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
    _play(monkeypatch, capsys, [str(agent), "--out", str(played)], ["I can pay $20.", "bye", "5"])
    both = load_episodes([str(data), str(played)])
    assert len(both) == 41 and both[40]["rating"] == 5 and both[0]["rating"] is None
    out = tmp_path / "again"
    assert main(["train", str(ROOT / "recipes" / "negotiation" / "bc.yaml"), "--dataset", f"[{data}, {played}]",
                 "--output_dir", str(out), "--max_steps", "1", "--disable_tqdm", "true"]) == 0
    assert json.loads((out / "train_summary.json").read_text())["train_loss"] > 0


def test_the_log_is_never_a_file_or_folder_play_reads(seller, tmp_path, monkeypatch, capsys):
    agent, data = seller
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.jsonl").symlink_to(data)  # the dataset under another name
    relative = os.path.relpath(agent / "recipe.yaml", tmp_path)
    for out, named in (("link.jsonl", str(data)), (relative, str(agent)), (str(agent / "played.jsonl"), str(agent))):
        before = data.read_bytes()
        code, text = _play(monkeypatch, capsys, [str(agent), "--out", out, "--resume"], ["$100", "bye", ""])
        assert code == 2 and f"--out ({out}) is" in text and named in text and "another path for --out" in text
        assert data.read_bytes() == before
    (tmp_path / "models" / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match="is inside"):
        check_out(tmp_path / "models" / "x" / ".." / "played.jsonl", [tmp_path / "models"])
    check_out(tmp_path / "played.jsonl", [tmp_path / "models", data])  # beside them: fine


def test_the_web_page_beyond_this_machine_needs_a_login_or_an_explicit_choice(monkeypatch, capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("play.example.org")
    # refused before any model loads: the folder does not even exist
    code, text = _play(monkeypatch, capsys, ["no/such/model", "--web", "--host", "0.0.0.0"], [])
    assert code == 2 and "--host 0.0.0.0 serves the page to other machines" in text and "--auth" in text
    code, text = _play(monkeypatch, capsys, ["no/such/model", "--auth", "me:secret"], [])
    assert code == 2 and "--auth: only for the web page; add --web" in text
    with pytest.raises(ValueError, match="contradict"):
        check_serving("0.0.0.0", ("me", "secret"), True)
    check_serving("0.0.0.0", None, True)  # on purpose
    assert parse_auth("me:se:cret") == ("me", "se:cret")
    monkeypatch.setattr("getpass.getpass", lambda prompt: "typed")
    assert parse_auth("me") == ("me", "typed")
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_auth(":secret")


def test_play_options_are_parsed_apart_from_the_recipe_fields(monkeypatch, capsys):
    served = {}
    monkeypatch.setattr("lmrl.play.load_player", lambda agent, checkpoint, overrides: (
        served.update(overrides=overrides) or Player(Scripted(), None, {}, agent, "model")))
    monkeypatch.setattr("lmrl.play_web.play_web", lambda player, out, *args: served.update(args=args) or 0)
    code = main(["play", "model", "--web", "--host", "0.0.0.0", "--auth", "me:secret", "--port", "7000", "--api",
                 "--proposal_max_new_tokens", "12"])
    assert code == 0 and served["overrides"] == {"proposal_max_new_tokens": 12}
    assert served["args"] == (50_000, False, "0.0.0.0", 7000, ("me", "secret"), False, True)
    with pytest.raises(SystemExit):
        main(["play", "--web", "--help"])
    help_text = capsys.readouterr().out
    for option in ("play options", "--out OUT", "--web", "web page options", "--auth USER:PASSWORD",
                   "--no-auth-on-network", "--api", "--host HOST"):
        assert option in help_text
