"""Non-finite guard: a NaN reward or an exploding learning rate stops training in words (or skips the
step when asked), and the last checkpoint on disk stays a good one."""

import hashlib
import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from lmrl import ILQLConfig, ILQLTrainer
from lmrl.data import EpisodeCollator, prepare_dataset
from lmrl.models.tiny import tiny_causal_lm
from lmrl.trainers.checkpointing import check_checkpoint
from lmrl.trainers.guards import NonFiniteError

POISONED_ROW = 5  # rows are taken in order, two per step: row 5 is in step 3


def episodes(tokenizer, poison: bool):
    """12 tokenized episodes; a `poisoned` column marks the one the collator gives a NaN reward."""
    rows = [{"messages": [{"role": "user", "content": "Pick a door:"},
                          {"role": "assistant", "content": " blue" if i % 3 == 0 else " red",
                           "reward": float(i % 3 == 0)}]} for i in range(12)]
    return prepare_dataset(rows, tokenizer).add_column("poisoned", [poison and i == POISONED_ROW for i in range(12)])


class NaNRewardCollator(EpisodeCollator):
    """Pads as usual, then puts a NaN reward on the poisoned row: past the row validation, in the tensors."""

    def __call__(self, features):
        batch = super().__call__(features)
        for i, feature in enumerate(features):
            if feature["poisoned"]:
                batch["rewards"][i][batch["action_mask"][i].bool()] = float("nan")
        return batch


class RecordSteps(TrainerCallback):
    """Keeps the online parameters after each step and the digest of each checkpoint when it is written."""

    def __init__(self):
        self.parameters, self.checkpoints = {}, {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.parameters[state.global_step] = {name: p.detach().clone() for name, p in model.named_parameters()
                                              if p.requires_grad}

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self.checkpoints[state.global_step] = _digest(folder)


class ExplodingLearningRate(TrainerCallback):
    """From step 3 on, multiplies the learning rate by 1e30 just before the optimizer step."""

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step >= 2:
            for group in optimizer.param_groups:
                group["lr"] *= 1e30


def _digest(folder) -> dict[str, str]:
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def _trainer(tokenizer, tmp_path, callback, poison=True, **overrides):
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=2, learning_rate=1e-3, max_steps=4,
                    save_strategy="steps", save_steps=2, train_sampling_strategy="sequential", report_to="none",
                    disable_tqdm=True, logging_steps=1, seed=0)
    settings.update(overrides)
    torch.manual_seed(0)
    trainer = ILQLTrainer(model=tiny_causal_lm(tokenizer, hidden_size=32), args=ILQLConfig(**settings),
                          train_dataset=episodes(tokenizer, poison), processing_class=tokenizer,
                          data_collator=NaNRewardCollator(tokenizer.pad_token_id), callbacks=[callback])
    return trainer


def _assert_last_checkpoint_intact(tmp_path, recorder, trainer):
    assert sorted(name for name in os.listdir(tmp_path) if "checkpoint" in name) == ["checkpoint-2"]
    check_checkpoint(tmp_path / "checkpoint-2")
    assert _digest(tmp_path / "checkpoint-2") == recorder.checkpoints[2]
    saved = load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in saved.values())
    assert torch.equal(saved["q_heads.0.mlp.2.weight"], trainer.model.q_heads[0].mlp[2].weight.detach())


def test_a_nan_reward_stops_training_naming_the_step_and_the_term(tokenizer, tmp_path):
    recorder = RecordSteps()
    trainer = _trainer(tokenizer, tmp_path, recorder)
    with pytest.raises(NonFiniteError, match=r"loss term 'loss/q' = nan at optimizer step 3") as error:
        trainer.train()
    assert "checkpoint-2, was written before it and is intact" in str(error.value)
    assert trainer.state.global_step == 2  # the weights are those of step 2: the failing step changed nothing
    _assert_last_checkpoint_intact(tmp_path, recorder, trainer)


def test_with_nonfinite_skip_the_poisoned_step_is_skipped_and_counted(tokenizer, tmp_path):
    recorder = RecordSteps()
    trainer = _trainer(tokenizer, tmp_path, recorder, nonfinite="skip")
    trainer.train()
    assert all(torch.equal(recorder.parameters[2][name], value) for name, value in recorder.parameters[3].items())
    assert not all(torch.equal(recorder.parameters[3][name], value) for name, value in recorder.parameters[4].items())
    adam = trainer.optimizer.state[trainer.model.q_heads[0].bias]
    assert int(adam["step"]) == 3  # 4 steps, one skipped
    history = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    assert [entry["nonfinite_skipped_steps"] for entry in history if "loss" in entry] == [0, 0, 1, 1]
    assert [math.isnan(entry["loss/q"]) for entry in history if "loss" in entry] == [False, False, True, False]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_an_exploding_learning_rate_stops_training_and_keeps_the_last_good_checkpoint(tokenizer, tmp_path):
    recorder = RecordSteps()
    trainer = _trainer(tokenizer, tmp_path, recorder, poison=False, max_steps=6)
    trainer.add_callback(ExplodingLearningRate())
    with pytest.raises(NonFiniteError, match=r"Non-finite .* at optimizer step 4.*learning_rate too high"):
        trainer.train()
    assert max(p.abs().max() for p in trainer.model.parameters()) > 1e20  # step 3 blew the weights up
    assert sorted(name for name in os.listdir(tmp_path) if "checkpoint" in name) == ["checkpoint-2"]
    check_checkpoint(tmp_path / "checkpoint-2")
    assert _digest(tmp_path / "checkpoint-2") == recorder.checkpoints[2]
    saved = load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in saved.values())


def test_a_model_with_non_finite_parameters_is_never_saved(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, RecordSteps())
    with torch.no_grad():
        trainer.model.v_head.mlp[0].weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"v_head.mlp.0.weight are not finite.*nothing was saved"):
        trainer.save_model()
    assert not (tmp_path / "model.safetensors").exists()
