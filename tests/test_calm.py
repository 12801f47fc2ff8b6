"""CALM: the outcome head over the context, relabelled training data, the trainer and its checkpoint."""

import math

import pytest
import torch

from lmrl import CALMConfig, CALMTrainer
from lmrl.models.calm import OutcomeHead
from lmrl.tasks.flight_booking import generate_flight_episodes, outcome_label, relabel_row
from lmrl.trainers.calm import relabel_rows


@pytest.mark.slow  # over 15 s: left out of CI's latest and floor jobs
def test_the_outcome_head_learns_to_find_the_answer_in_the_context_above_chance():
    """The class is written at a random context position among distractors; only attention over
    the context (guided by the query) can read it."""
    torch.manual_seed(0)
    h, classes, length = 32, 6, 12
    codes = torch.randn(classes, h)
    marker = torch.randn(h)

    def batch(n):
        hidden = torch.randn(n, length, h) * 0.5
        labels = torch.randint(classes, (n,))
        where = torch.randint(0, length - 2, (n,))
        hidden[torch.arange(n), where] = codes[labels] + 2 * marker
        hidden[:, -1] = marker  # the query position
        context = torch.zeros(n, length)
        context[:, : length - 2] = 1
        return hidden, context, torch.full((n,), length - 1), labels

    head = OutcomeHead(h, classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(300):
        hidden, context, query, labels = batch(64)
        loss = torch.nn.functional.cross_entropy(head(hidden, context, query), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hidden, context, query, labels = batch(500)
    accuracy = (head(hidden, context, query).argmax(-1) == labels).float().mean().item()
    assert accuracy > 3 / classes  # chance is 1/6


def test_the_head_attends_only_to_context_tokens():
    head = OutcomeHead(8, 3)
    hidden = torch.randn(1, 5, 8)
    context = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]])
    changed = hidden.clone()
    changed[0, 2:4] = torch.randn(2, 8)  # outside the context, not the query (index 4)
    torch.testing.assert_close(head(hidden, context, torch.tensor([4])), head(changed, context, torch.tensor([4])))


def test_failed_dialogues_are_relabelled_and_the_impossible_ones_counted(caplog):
    from lmrl.tasks.flight_booking import relabel_row

    rows = [r.as_row() for r in generate_flight_episodes(120, seed=3, num_flights=6, progress=False)]
    failed = sum(1 for r in rows if r["messages"][-1]["reward"] < 1)
    out = relabel_rows(rows, relabel_row)
    assert all(r["messages"][-1]["reward"] == 1.0 for r in out)
    assert len(rows) - failed < len(out) <= len(rows)
    assert "relabelled to succeed" in caplog.text
    assert len(relabel_rows(rows, relabel_row, keep_failed=True)) == len(out) + failed


def test_calm_trainer_trains_lm_and_outcome_head_and_saves_a_plain_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM

    from lmrl.models.tiny import build_tiny

    rows = [r.as_row() for r in generate_flight_episodes(24, seed=0, num_flights=3, progress=False)]
    model, tokenizer = build_tiny(rows, hidden_size=32, num_layers=1, vocab_size=300)
    args = CALMConfig(output_dir=str(tmp_path), outcome_task="flight_booking", num_train_epochs=4,
                      per_device_train_batch_size=8, learning_rate=3e-3, logging_steps=1, report_to="none",
                      save_strategy="no", disable_tqdm=True, max_length=1024)
    trainer = CALMTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                          outcome_label=outcome_label, relabel=relabel_row)
    item = trainer.train_dataset[0]
    context = sum(item["context_mask"])
    system = tokenizer(rows[0]["messages"][0]["content"])["input_ids"]
    assert abs(context - len(system)) <= 2 and item["context_mask"][:context] == [1] * context
    assert item["outcome"] == outcome_label(trainer_rows_first(trainer, rows))
    head_before = [p.detach().clone() for p in trainer.model.outcome_head.parameters()]
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss/outcome" in e]
    assert logs and all(math.isfinite(e["loss/outcome"]) for e in logs)
    assert logs[-1]["loss/lm"] < logs[0]["loss/lm"]
    assert any(not torch.equal(b, p) for b, p in zip(head_before, trainer.model.outcome_head.parameters()))
    trainer.save_model()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)  # a plain LM: no unexpected head weights
    assert not any(k.startswith("outcome_head") for k in loaded.state_dict())
    head = OutcomeHead.load(tmp_path)
    for a, b in zip(head.parameters(), trainer.model.outcome_head.parameters()):
        torch.testing.assert_close(a, b.detach().cpu())


def trainer_rows_first(trainer, rows):
    """The first training row after relabelling (successful rows keep their order)."""
    return relabel_rows(rows, relabel_row)[0]


def test_calm_trainer_is_given_the_tasks_functions_and_does_not_look_a_task_up_by_name(tmp_path):
    from lmrl.models.tiny import build_tiny

    rows = [r.as_row() for r in generate_flight_episodes(8, seed=0, num_flights=3, progress=False)]
    model, tokenizer = build_tiny(rows, hidden_size=16, num_layers=1, vocab_size=300)
    args = CALMConfig(output_dir=str(tmp_path), outcome_task="flight_booking", report_to="none", max_length=1024)
    with pytest.raises(ValueError, match=r"outcome_task='flight_booking' names a task.*outcome_label="):
        CALMTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    # a user's own labels, no task name needed: every dialogue in class 1 of 2
    args = CALMConfig(output_dir=str(tmp_path), relabel=False, report_to="none", max_length=1024)
    trainer = CALMTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                          outcome_label=lambda row: 1)
    assert set(trainer.train_dataset["outcome"]) == {1} and len(trainer.train_dataset) == len(rows)
    assert trainer.model.outcome_head is not None
    plain = CALMTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    assert set(plain.train_dataset["outcome"]) == {-100} and not hasattr(plain.model, "outcome_head")


class DelayedEnv:
    """'stop' pays 1 now; 'setup' pays nothing now but makes the next 'go' pay 2."""

    def reset(self, seed=None):
        self.ready = False
        self.steps = 0
        return "start"

    def step(self, text):
        self.steps += 1
        if text == "stop":
            return "bye", 1.0, True, {}
        if text == "setup":
            self.ready = True
            return "ready", 0.0, False, {}
        return "bye", 2.0 if self.ready else 0.0, True, {}


def _planner(horizon, user=None):
    from lmrl.generation import PlanningPolicy
    from lmrl.generation.planning import SimulatedUser

    planner = PlanningPolicy.__new__(PlanningPolicy)  # no model: candidates and continuations scripted
    planner.horizon, planner.gamma = horizon, 1.0
    planner.user = user or SimulatedUser()
    planner.propose = lambda conversations: [["go", "stop"] if c[-1]["content"] == "ready" else ["stop", "setup"]
                                             for c in conversations]
    planner.continue_ = lambda conversations: ["go" for _ in conversations]
    return planner


def test_planning_looks_ahead_with_the_user_model_and_never_steps_the_live_env():
    env = DelayedEnv()
    env.reset()
    conversation = [[{"role": "user", "content": "start"}]]
    assert _planner(horizon=1)(conversation, envs=[env]) == ["stop"]  # greedy in reward
    assert _planner(horizon=2)(conversation, envs=[env]) == ["setup"]  # sees the delayed 2
    assert env.steps == 0 and not env.ready


def test_rollout_hands_planners_the_environments():
    from lmrl.envs import rollout

    results = rollout(DelayedEnv, _planner(horizon=2), seeds=[0, 1], max_turns=3, progress=False)
    assert [r.total_reward for r in results] == [2.0, 2.0]  # setup, then go
    assert [m["content"] for m in results[0].messages if m["role"] == "assistant"] == ["setup", "go"]


def _learned_user(values):
    """A LearnedUser whose user LM always answers 'ready' and whose value model is the table `values`
    of (last user message, agent reply) -> predicted return."""
    from lmrl.generation.planning import LearnedUser

    user = LearnedUser.__new__(LearnedUser)
    user.asked = []
    user.user = lambda conversations: (user.asked.extend(conversations), ["ready"] * len(conversations))[1]
    user.scorer = lambda conversations, replies: torch.tensor(
        [[values[(c[-1]["content"], r[0])]] for c, r in zip(conversations, replies)])
    user.ends_episode = lambda reply: reply in ("stop", "go")
    return user


def test_planning_with_a_learned_user_model_needs_no_environment_and_scores_with_the_value_model():
    # the value model thinks stopping now is worth 1, setting up 0.5, and going after setup 2
    values = {("start", "stop"): 1.0, ("start", "setup"): 0.5, ("ready", "go"): 2.0, ("ready", "stop"): 1.0}
    conversation = [[{"role": "system", "content": "private table"}, {"role": "user", "content": "start"}]]
    user = _learned_user(values)
    assert _planner(horizon=1, user=user)(conversation) == ["stop"]  # setup is cut at the horizon: worth 0.5
    assert user.asked == [[{"role": "system", "content": "You are the user in this conversation. Reply as the user "
                                                        "would."},
                           {"role": "assistant", "content": "start"}, {"role": "user", "content": "setup"}]]
    assert _planner(horizon=2, user=_learned_user(values))(conversation) == ["setup"]  # the user says ready; go: 2


def test_user_side_swaps_the_roles_and_drops_the_agents_private_context():
    from lmrl.data import user_side

    messages = [{"role": "system", "content": "Flights: 1001 ..."}, {"role": "user", "content": "I need a flight."},
                {"role": "assistant", "content": "From where?", "reward": 0.0}, {"role": "user", "content": "DEN."}]
    assert user_side(messages, system="Be a customer.") == [
        {"role": "system", "content": "Be a customer."}, {"role": "assistant", "content": "I need a flight."},
        {"role": "user", "content": "From where?"}, {"role": "assistant", "content": "DEN."}]


@pytest.mark.slow  # over 15 s: left out of CI's latest and floor jobs
def test_calm_recipes_train_and_evaluate_with_planning_from_the_command_line(tmp_path, capsys):
    import json
    from pathlib import Path

    from lmrl.cli import main

    recipes = Path(__file__).resolve().parents[1] / "recipes" / "flight_booking"
    data = tmp_path / "flights.jsonl"
    assert main(["make-data", "flight_booking", "--episodes", "30", "--option", "num_flights=4",
                 "--option", "success_rule=flight_status", "--out", str(data)]) == 0
    common = ["--dataset", str(data)]
    assert main(["train", str(recipes / "calm.yaml"), *common, "--output_dir", str(tmp_path / "calm"),
                 "--max_steps", "2", "--disable_tqdm", "true"]) == 0
    assert (tmp_path / "calm" / "outcome_head.safetensors").is_file()
    assert main(["eval", str(recipes / "calm_plan.yaml"), *common, "--checkpoint", str(tmp_path / "calm"),
                 "--out", str(tmp_path / "plan"), "--episodes", "2", "--plan_candidates", "2",
                 "--plan_horizon", "1"]) == 0
    report = json.loads((tmp_path / "plan" / "eval.json").read_text())
    assert report["run"] == "plan" and report["episodes"] == 2 and report["algorithm"] == "calm"

    # the same with a learned customer model (user side of the data, BC) scored by a value model (MC)
    customer_data = tmp_path / "customer.jsonl"
    assert main(["user-side", str(data), "--out", str(customer_data)]) == 0
    first = json.loads(customer_data.read_text().splitlines()[0])
    assert first["messages"][1]["role"] == "assistant" and "Final action" in first["messages"][-1]["content"]
    steps = ["--max_steps", "2", "--disable_tqdm", "true"]
    assert main(["train", str(recipes / "customer.yaml"), "--dataset", str(customer_data),
                 "--output_dir", str(tmp_path / "customer"), *steps]) == 0
    assert main(["train", str(recipes / "value.yaml"), *common, "--output_dir", str(tmp_path / "value"), *steps]) == 0
    assert main(["eval", str(recipes / "calm_plan_learned.yaml"), *common, "--checkpoint", str(tmp_path / "calm"),
                 "--out", str(tmp_path / "learned"), "--episodes", "2", "--plan_candidates", "2", "--plan_horizon", "2",
                 "--plan_user_model", str(tmp_path / "customer"), "--plan_value_model", str(tmp_path / "value")]) == 0
    report = json.loads((tmp_path / "learned" / "eval.json").read_text())
    assert report["episodes"] == 2 and report["algorithm"] == "calm"
    capsys.readouterr()
    assert main(["eval", str(recipes / "calm_plan_learned.yaml"), *common, "--checkpoint", str(tmp_path / "calm"),
                 "--episodes", "1", "--plan_user_model", str(tmp_path / "customer"), "--plan_value_model", ""]) == 2
    assert "plan_user_model needs plan_value_model" in capsys.readouterr().err


def test_calm_trains_with_activation_checkpointing_and_gets_the_plain_runs_losses(tmp_path):
    """`activation_checkpointing=True` reaches the LM inside CALM's wrapper (with transformers'
    every_n_layers/offload options), its layers rerun in the backward pass, and the losses are the
    plain run's."""
    from lmrl.models.tiny import build_tiny

    rows = [r.as_row() for r in generate_flight_episodes(8, seed=0, num_flights=3, progress=False)]

    def run(**overrides):
        torch.manual_seed(0)
        model, tokenizer = build_tiny(rows, hidden_size=32, num_layers=1, vocab_size=300)
        model.config.attn_pdrop = model.config.resid_pdrop = model.config.embd_pdrop = 0.0
        calls = []
        model.transformer.h[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
        args = CALMConfig(output_dir=str(tmp_path / str(len(overrides))), outcome_task="flight_booking",
                          max_steps=2, per_device_train_batch_size=4, logging_steps=1, report_to="none",
                          save_strategy="no", disable_tqdm=True, max_length=1024, seed=0, **overrides)
        trainer = CALMTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                              outcome_label=outcome_label, relabel=relabel_row)
        trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        return losses, len(calls), model.transformer.gradient_checkpointing

    plain_losses, plain_calls, plain_flag = run()
    losses, calls, flag = run(activation_checkpointing=True)
    assert (plain_flag, flag) == (False, True)
    assert calls == 2 * plain_calls  # every training forward of the layer ran again in backward
    assert len(losses) == len(plain_losses) == 2
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), rtol=1e-6, atol=1e-6)
