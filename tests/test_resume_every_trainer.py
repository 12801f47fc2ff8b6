"""Every trainer resumes exactly: a run resumed from its mid-run checkpoint ends with the weights, losses
and files of the run that was never stopped (ILQL's crash-while-saving case is in test_resume.py)."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, set_seed

from lmrl.models.calm import LMWithOutcomeHead
from lmrl.models.tiny import build_tiny
from lmrl.recipes import ALGORITHMS
from lmrl.tasks.flight_booking import outcome_label, relabel_row

STEPS, SAVE_EVERY = 6, 3
DOORS = [{"messages": [{"role": "user", "content": "Pick a door:"},
                       {"role": "assistant", "content": " blue" if i % 3 == 0 else " red", "reward": float(i % 3 == 0)}]}
         for i in range(20)]
HAGGLE = [{"messages": [{"role": "system", "content": "You are selling: desk. Listed at $200."},
                        {"role": "user", "content": f"Would you take ${100 + 10 * i}?"},
                        {"role": "assistant", "content": "I can do $180." if i % 2 else "Deal."},
                        {"role": "user", "content": "Fine."},
                        {"role": "assistant", "content": "Thanks.", "reward": 0.5 + 0.1 * (i % 3)}]}
          for i in range(6)]


def _flights():
    from lmrl.tasks.flight_booking import generate_flight_episodes

    return [r.as_row() for r in generate_flight_episodes(16, seed=0, num_flights=3, progress=False)]


SETUPS = {  # algorithm: (rows, config fields of its own)
    "ilql": (lambda: DOORS, {"alpha": 0.3}),
    "mc": (lambda: DOORS, {}),
    "bc": (lambda: DOORS, {}),
    "chai": (lambda: HAGGLE, {"num_proposals": 2, "proposal_max_new_tokens": 4, "critic_hidden_size": 16, "alpha": 0.3}),
    "calm": (_flights, {"outcome_task": "flight_booking", "max_length": 1024}),
}


def _run(algorithm, tmp_path, name, resume_from=None):
    config_class, trainer_class = ALGORITHMS[algorithm].config, ALGORITHMS[algorithm].trainer
    rows, extra = SETUPS[algorithm]
    rows = rows()
    set_seed(0)
    model, tokenizer = build_tiny(rows, hidden_size=32, num_layers=1, vocab_size=300)
    args = config_class(output_dir=str(tmp_path / name), max_steps=STEPS, save_strategy="steps",
                        save_steps=SAVE_EVERY, per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=1,
                        report_to="none", disable_tqdm=True, seed=0, **extra)
    if algorithm == "chai":
        args.proposal_cache_dir = str(tmp_path / "proposals")  # sampled once, read by both runs
    models = {"proposal_model": model} if algorithm == "chai" else {"model": model}
    task_functions = {"outcome_label": outcome_label, "relabel": relabel_row} if algorithm == "calm" else {}
    trainer = trainer_class(**models, args=args, train_dataset=rows, processing_class=tokenizer, **task_functions)
    trainer.train(resume_from_checkpoint=resume_from)
    return trainer


def _losses(trainer):
    return [{k: v for k, v in entry.items() if k.startswith(("loss", "grad_norm", "step"))}
            for entry in trainer.state.log_history if "train_runtime" not in entry]


@pytest.mark.parametrize("algorithm", list(SETUPS))
def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(algorithm, tmp_path):
    reference = _run(algorithm, tmp_path, "reference")
    resumed = _run(algorithm, tmp_path, "resumed", resume_from=str(tmp_path / "reference" / f"checkpoint-{SAVE_EVERY}"))
    assert resumed.state.global_step == reference.state.global_step == STEPS
    expected, got = reference.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    changed = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not changed, f"{algorithm}: {changed[:5]} differ after resuming"
    # the checkpoint's log, then the steps after it, with the uninterrupted run's values
    assert [entry["step"] for entry in _losses(resumed)] == list(range(1, STEPS + 1))
    assert _losses(resumed) == _losses(reference)
    checkpoint = tmp_path / "resumed" / f"checkpoint-{STEPS}"
    assert json.loads((checkpoint / "training_args.json").read_text())["max_steps"] == STEPS


def test_a_calm_checkpoint_is_a_plain_causal_lm_with_its_outcome_head_beside_it(tmp_path):
    trainer = _run("calm", tmp_path, "calm")
    checkpoint = tmp_path / "calm" / f"checkpoint-{STEPS}"
    assert {"model.safetensors", "outcome_head.safetensors", "outcome_head.json"} <= {p.name for p in checkpoint.iterdir()}
    lm = AutoModelForCausalLM.from_pretrained(checkpoint)
    for key, value in lm.state_dict().items():
        assert torch.equal(value, trainer.model.lm.state_dict()[key]), key
    both = LMWithOutcomeHead.from_pretrained(checkpoint)
    for key, value in both.outcome_head.state_dict().items():
        assert torch.equal(value, trainer.model.outcome_head.state_dict()[key]), key
