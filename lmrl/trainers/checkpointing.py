"""Checkpoints that survive a crash: written atomically, checked before a resume, weights from safetensors.

`transformers.Trainer` writes `checkpoint-N/` file by file, and `resume_from_checkpoint=True` takes the
highest-numbered folder whether it is complete or not: after a job is killed while saving, every
resume fails on the half-written folder (no, or a truncated, trainer_state.json) until someone
deletes it by hand. lmrl's trainers write each checkpoint into `.partial-checkpoint-N/` and rename it
to `checkpoint-N` once every file (weights, optimizer, scheduler, RNG states, trainer state) is on
disk, so a `checkpoint-N` folder is always whole. Before resuming they check the folder (complete,
weights in safetensors, shapes that match the model), and `resume_from_checkpoint=True` skips
incomplete folders left by other tools.

Optimizer, scheduler and RNG states are `torch.save` files; transformers 5 loads them with
`torch.load(weights_only=True)`, which refuses pickles that would run code. The training arguments
are written as `training_args.json` (Trainer's pickled `training_args.bin` is not kept).

A run refuses an `output_dir` that holds another run's model or checkpoints, unless it resumes or is
told `overwrite_output_dir`. Every checkpoint and saved model carries `lmrl_run.json`: fingerprints of
the run's data, tokenizer and training settings, so that a resume from a checkpoint written by
another run (other data, another tokenizer with the same vocabulary size, other settings) is refused,
naming what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..models.adapters import HEADS_WEIGHTS
from ..models.model_files import check_safetensors_files, saved_shapes

logger = logging.getLogger(__name__)

PARTIAL_PREFIX = ".partial-"
TRAINER_STATE = "trainer_state.json"
TRAINING_ARGS_JSON = "training_args.json"
RUN_FINGERPRINT = "lmrl_run.json"
# files and folders whose presence at the top of an output_dir mean a run already wrote there
RUN_OUTPUTS = ("config.json", "model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
               HEADS_WEIGHTS, "train_summary.json", RUN_FINGERPRINT)
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", HEADS_WEIGHTS)
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def require_safetensors(path: str | Path) -> None:
    """Refuse a local model folder whose weights are only pickles (`pytorch_model.bin`)."""
    names = set(os.listdir(path))
    if not names & set(SAFE_WEIGHTS) and names & set(PICKLE_WEIGHTS):
        pickles = ", ".join(sorted(names & set(PICKLE_WEIGHTS)))
        raise ValueError(
            f"{path}: the weights are only in pickle format ({pickles}); lmrl loads weights only from "
            "safetensors, because unpickling can run code. If you trust the file, convert it once: "
            "AutoModelForCausalLM.from_pretrained(path, use_safetensors=False).save_pretrained(path)."
        )


def checkpoint_problem(path: str | Path) -> str | None:
    """Why `path` cannot be resumed from, or `None` when it is a complete checkpoint."""
    path = Path(path)
    if not path.is_dir():
        return "no such checkpoint directory"
    names = set(os.listdir(path))
    sharded = any(name.startswith("pytorch_model_fsdp") for name in names)  # FSDP: torch.distributed.checkpoint
    if not names & set(SAFE_WEIGHTS) and not sharded:
        if names & set(PICKLE_WEIGHTS):
            return "its weights are only in pickle format (pytorch_model.bin); lmrl loads weights only from safetensors"
        return "it has no model weights (model.safetensors), so it is incomplete"
    try:
        json.loads((path / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return f"its {TRAINER_STATE} is missing or unreadable, so it is incomplete (killed while being written?)"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` in `output_dir` that can be resumed from; incomplete ones are skipped
    with a warning."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = sorted(
        ((int(match.group(1)), name) for name in os.listdir(output_dir) if (match := _CHECKPOINT.match(name))),
        reverse=True,
    )
    for _, name in steps:
        problem = checkpoint_problem(output_dir / name)
        if problem is None:
            return str(output_dir / name)
        logger.warning("Not resuming from %s: %s. Trying the one before.", output_dir / name, problem)
    return None


def check_checkpoint(path: str | Path) -> None:
    """Raise a `ValueError` in words when `path` cannot be resumed from."""
    problem = checkpoint_problem(path)
    if problem is None:
        return
    if problem == "no such checkpoint directory":
        advice = "Check the path, or pass resume_from_checkpoint=True to take the last complete checkpoint."
    elif "pickle" in problem:
        advice = "Convert the weights to model.safetensors if you trust the file (see docs/guides/reliability.md)."
    else:
        advice = "Resume from an earlier checkpoint, or pass resume_from_checkpoint=True to skip incomplete ones."
    raise ValueError(f"{path}: cannot resume: {problem}. {advice}")


def _saved_shapes(path: Path) -> dict[str, list[int]] | None:
    """Tensor shapes in a checkpoint's safetensors files (read from the headers, not loaded); `None` for
    adapters (PEFT) or FSDP shards, which their own loaders check. Every safetensors file of the folder
    must have a readable header: a truncated one is a `ValueError` naming it."""
    check_safetensors_files(path)
    return saved_shapes(path)


def _structure(config) -> dict:
    fields = ("model_type", "head_type", "num_q_heads", "target_heads", "head_hidden_size")
    return {key: getattr(config, key) for key in fields if getattr(config, key, None) is not None}


def check_matches_model(path: str | Path, model: torch.nn.Module) -> None:
    """Raise a `ValueError` when the checkpoint's weights do not fit `model` (other heads or sizes).

    Trainer loads checkpoints with `strict=False`, so a missing head would otherwise start fresh in
    silence and a different head shape fail deep inside `load_state_dict`."""
    path = Path(path)
    saved = _saved_shapes(path)
    if saved is None:
        return
    # a model that saves itself in another layout (CALM's LM + head) says what its weights file holds
    state = model.checkpoint_state_dict() if hasattr(model, "checkpoint_state_dict") else model.state_dict()
    pointers = {tensor.data_ptr() for key, tensor in state.items() if key in saved}
    problems = []
    for key, tensor in state.items():
        if key in saved:
            if saved[key] != list(tensor.shape):
                problems.append(f"'{key}' has shape {saved[key]} in the checkpoint but {list(tensor.shape)} in the model")
        elif tensor.data_ptr() not in pointers:  # tied weights are saved once, under another name
            problems.append(f"'{key}' is missing from the checkpoint")
    problems += [f"'{key}' is in the checkpoint but not in the model" for key in sorted(set(saved) - set(state))]
    if not problems:
        return
    detail = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    settings = ""
    if (path / "config.json").is_file() and hasattr(model, "config"):
        written = json.loads((path / "config.json").read_text())
        ours = _structure(model.config)
        differ = [f"{key}={written.get(key)!r} (model: {value!r})" for key, value in ours.items()
                  if written.get(key) != value]
        settings = f" The checkpoint was written with {', '.join(differ)}." if differ else ""
    raise ValueError(
        f"{path} does not match the model being trained: {detail}.{settings} Resume with the model, "
        "head_type, num_q_heads and algorithm of the run that wrote it, or train into a new output_dir."
    )


def finish_saved_folder(output_dir: str | Path, args, fingerprint: dict | None) -> None:
    """What every saved model and checkpoint gets once its files are written: `training_args.json` (the
    arguments in a form that loads without unpickling) instead of Trainer's pickled `training_args.bin`,
    the run's fingerprints, and weights readable like the other files (the umask's mode, not 0600)."""
    output_dir = Path(output_dir)
    (output_dir / TRAINING_ARGS_JSON).write_text(args.to_json_string())
    (output_dir / TRAINING_ARGS_NAME).unlink(missing_ok=True)
    if fingerprint is not None:
        (output_dir / RUN_FINGERPRINT).write_text(json.dumps(fingerprint, indent=2, sort_keys=True))
    umask = os.umask(0)
    os.umask(umask)
    for path in output_dir.glob("*.safetensors"):
        path.chmod(0o666 & ~umask)


def existing_run(output_dir: str | Path) -> list[str]:
    """What another run left at the top of `output_dir` (a model, checkpoints), by name."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return sorted(name for name in os.listdir(output_dir)
                  if name in RUN_OUTPUTS or _CHECKPOINT.match(name))


# settings that change neither the data nor the maths of a run, so a resume may change them
_RUN_CONTROL = {"output_dir", "overwrite_output_dir", "resume_from_checkpoint", "max_steps", "num_train_epochs",
                "logging_dir", "logging_steps", "logging_strategy", "logging_first_step", "save_steps",
                "save_strategy", "save_total_limit", "eval_steps", "eval_strategy", "disable_tqdm", "report_to",
                "run_name", "dataloader_num_workers", "dataloader_pin_memory", "dataset_num_proc",
                "loss_chunk_size", "loss_memory_budget_mb", "nonfinite", "trust_remote_code", "use_cpu",
                "activation_checkpointing", "activation_checkpointing_kwargs", "gradient_checkpointing",
                "gradient_checkpointing_kwargs", "model_init_kwargs", "push_to_hub", "hub_model_id"}
_COMPARED_TRAINING_ARGUMENTS = {"learning_rate", "seed", "data_seed", "per_device_train_batch_size",
                                "gradient_accumulation_steps", "weight_decay", "lr_scheduler_type", "warmup_steps",
                                "warmup_ratio", "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm"}


def digest(*parts) -> str:
    """A 16-hex-digit sha256 of `parts` in order: bytes as they are, anything else as sorted JSON."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:16]


def data_fingerprint(dataset) -> str | None:
    """A digest of a tokenized dataset's token ids, action mask and rewards (None for other datasets)."""
    import pyarrow.compute as pc

    table = getattr(dataset, "data", None)
    if table is None or not hasattr(table, "column_names"):
        return None
    columns = [name for name in ("input_ids", "action_mask", "rewards", "dones") if name in table.column_names]
    if not columns:
        return None
    parts = [len(dataset)]
    for name in columns:
        column = table.column(name)
        if column.type.__class__.__name__.endswith("ListType"):
            parts += [pc.list_value_length(column).to_numpy(zero_copy_only=False).tobytes(),
                      pc.list_flatten(column).to_numpy(zero_copy_only=False).tobytes()]
        else:
            parts.append(column.to_numpy(zero_copy_only=False).tobytes())
    return digest(*parts)


def tokenizer_fingerprint(tokenizer) -> str | None:
    """A digest of a tokenizer's vocabulary, special tokens and chat template."""
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return None
    return digest(sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens,
                   getattr(tokenizer, "chat_template", None))


def settings_fingerprint(args) -> dict:
    """The training settings a resume must keep: lmrl's own fields and the optimizer's, by name."""
    from transformers import TrainingArguments

    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    names = [f.name for f in dataclasses.fields(args) if f.init and f.name not in _RUN_CONTROL
             and (f.name not in inherited or f.name in _COMPARED_TRAINING_ARGUMENTS)]
    return {name: json.loads(json.dumps(getattr(args, name), default=str)) for name in sorted(names)}


def check_same_run(checkpoint: str | Path, fingerprint: dict, settings: bool = True) -> None:
    """Raise a `ValueError` when `checkpoint` was written by a run with another trainer, other data,
    another tokenizer or (with `settings`) other settings, as its `lmrl_run.json` says; a checkpoint
    without one (another tool's) is only logged."""
    path = Path(checkpoint, RUN_FINGERPRINT)
    if not path.is_file():
        if settings:  # said once, by the last check
            logger.warning("%s has no %s, so lmrl cannot check that it was written by this run.", checkpoint,
                           RUN_FINGERPRINT)
        return
    saved = json.loads(path.read_text())
    differ = []
    if saved.get("trainer") != fingerprint["trainer"]:
        differ.append(f"the trainer ({saved.get('trainer')} there, {fingerprint['trainer']} here)")
    for key, what in (("data", "the training data"), ("tokenizer", "the tokenizer")):
        if saved.get(key) is not None and fingerprint[key] is not None and saved[key] != fingerprint[key]:
            differ.append(what)
    if settings:
        saved_settings = saved.get("settings", {})
        differ += [f"{name} ({saved_settings[name]!r} there, {value!r} here)"
                   for name, value in fingerprint["settings"].items()
                   if name in saved_settings and saved_settings[name] != value]
    if differ:
        raise ValueError(
            f"{checkpoint} was written by another run: {'; '.join(differ)} differ. Resume a run with the data, "
            "tokenizer and recipe that wrote it, or train this one into a new output_dir."
        )


def _fsync_tree(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            descriptor = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


def publish(staged: str, final: str) -> None:
    """Move a fully written checkpoint folder to its final name in one rename."""
    _fsync_tree(staged)
    old = None
    if os.path.exists(final):  # saved twice at one step: swap, then drop the old copy
        old = os.path.join(os.path.dirname(final), PARTIAL_PREFIX + "replaced-" + os.path.basename(final))
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    descriptor = os.open(os.path.dirname(final) or ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SafeCheckpointMixin:
    """`Trainer` methods that write checkpoints atomically and check them before resuming."""

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, PARTIAL_PREFIX + name)
        if self.args.should_save and os.path.isdir(staging):
            shutil.rmtree(staging)  # left behind by a job killed while saving
        self.accelerator.wait_for_everyone()
        self._get_output_dir = lambda trial=None: staging  # Trainer then writes staging/checkpoint-N
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        written, final = os.path.join(staging, name), os.path.join(run_dir, name)
        if self.state.best_model_checkpoint == written:
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(written, TRAINER_STATE))
        self.accelerator.wait_for_everyone()  # every process has written its files (e.g. its RNG state)
        if self.args.should_save:
            publish(written, final)
            os.rmdir(staging)
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            finish_saved_folder(output_dir or self.args.output_dir, self.args, self.run_fingerprint())

    def run_fingerprint(self) -> dict:
        """Fingerprints of this run's data, tokenizer and settings (written into every checkpoint)."""
        if getattr(self, "_run_fingerprint", None) is None:
            self._run_fingerprint = {
                "trainer": type(self).__name__,
                "data": data_fingerprint(self.train_dataset),
                "tokenizer": tokenizer_fingerprint(self.processing_class),
                "settings": settings_fingerprint(self.args),
            }
        return self._run_fingerprint

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs):
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "false"):
            resume_from_checkpoint = resume_from_checkpoint.lower() == "true"  # the command line's text
        if resume_from_checkpoint is True:
            found = last_complete_checkpoint(self.args.output_dir)
            if found is None:
                raise ValueError(
                    f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete checkpoint-N "
                    "folder. Train without resuming, or point resume_from_checkpoint at a checkpoint folder."
                )
            resume_from_checkpoint = found
        if not resume_from_checkpoint:
            found = existing_run(self.args.output_dir)
            if found and not getattr(self.args, "overwrite_output_dir", False) and self.args.should_save:
                raise ValueError(
                    f"{self.args.output_dir} already holds another run ({', '.join(found)}), which training "
                    "would overwrite. Train into a new output_dir, resume that run (resume_from_checkpoint=true), "
                    "or set overwrite_output_dir=true to replace it.")
            return super().train(resume_from_checkpoint=None, trial=trial, **kwargs)
        check_checkpoint(resume_from_checkpoint)
        # other data or tokenizer first (they also change the shapes), then the model, then the settings
        check_same_run(resume_from_checkpoint, self.run_fingerprint(), settings=False)
        check_matches_model(resume_from_checkpoint, self.model)
        check_same_run(resume_from_checkpoint, self.run_fingerprint())
        logger.info("Resuming from %s.", resume_from_checkpoint)
        try:
            return super().train(resume_from_checkpoint=str(resume_from_checkpoint), trial=trial, **kwargs)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"{resume_from_checkpoint}: its optimizer, scheduler or RNG state is not a plain tensor file, "
                f"so it was not loaded (lmrl loads them with weights_only=True: {err}). Resume from a "
                "checkpoint you wrote yourself."
            ) from err
