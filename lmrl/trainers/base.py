"""What every lmrl trainer shares: the base config, model/tokenizer loading, data path and logging."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, Trainer, TrainingArguments

from ..compat import HAS_ACTIVATION_CHECKPOINTING
from ..data import EpisodeCollator, prepare_dataset
from ..data.loading import check_tokenized
from ..data.tokenization import pad_token_id
from ..models.adapters import is_peft_model, trainable_parameters
from ..models.gguf import drop_gguf_quantization, is_gguf_model
from ..models.model_files import check_model_source, check_safetensors_files
from ..models.policy_logits import PolicyLogits
from ..ops.vocab import MEMORY_BUDGET
from .checkpointing import SafeCheckpointMixin, require_safetensors
from .guards import NONFINITE_MODES, NonFiniteGuardMixin

logger = logging.getLogger(__name__)



def check_choices(config) -> None:
    """Raise a `ValueError` for a field whose value is not among the `choices` its metadata declares (the
    same list `lmrl train --help` shows); `None` passes where it is the field's default."""
    for spec in dataclasses.fields(config):
        choices = spec.metadata.get("choices")
        value = getattr(config, spec.name)
        if choices is not None and value not in choices and not (value is None and spec.default is None):
            raise ValueError(f"{type(config).__name__}: {spec.name} must be one of {', '.join(map(str, choices))}, "
                             f"got {value!r}.")


def check_ranges(config, rules: dict) -> None:
    """Raise a `ValueError` naming the config class, the field and its value for the first field whose value
    breaks its rule; `rules` maps a field name to `(is the value allowed, what it must be)`, e.g.
    `{"gamma": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")}`. NaN breaks every comparison, so it is refused."""
    for name, (allowed, rule) in rules.items():
        value = getattr(config, name)
        if not allowed(value):
            raise ValueError(f"{type(config).__name__}: {name} must be {rule}, got {value!r}.")


@dataclass
class LMRLConfig(TrainingArguments):
    """Arguments every lmrl trainer takes, on top of `transformers.TrainingArguments`.

    Parameters that control the model:
        model_init_kwargs: keyword arguments for `from_pretrained` when `model` is given as a string.
        trust_remote_code: allow code from the model repository to run (off by default).
    Parameters that control the data preprocessing:
        max_length: episodes longer than this many tokens are truncated from the left (the
            outcome is at the end); `None` keeps everything.
        truncation_mode: `"keep_end"` truncates long episodes as above and counts them in the log;
            `"error"` stops at the first one, naming its row.
        dataset_num_proc: processes used to tokenize the dataset.
        unlabeled_reward: the reward each assistant turn of an unlabeled episode (`"labeled": false`)
            gets; 0.0 is UDS (Yu et al., 2022). `None` refuses unlabeled rows, naming the first.

    Parameters that control the training:
        loss_chunk_size: tokens per chunk of the cross-entropies over the vocabulary (BC, CQL), each
            fused with its output projection so that [tokens x vocab] logits never exist whole.
        loss_memory_budget_mb: with `loss_chunk_size=None`, a cross-entropy whose plain computation
            fits this many MiB (three fp32 [tokens x vocab] tensors) materializes its logits (faster);
            a larger one is chunked.
        nonfinite: `"error"` stops at a NaN/inf loss term or gradient norm, naming the step and the
            term; `"skip"` skips that optimizer step and counts it in the logs (see `trainers/guards.py`).

    Note: defaults that differ from `TrainingArguments`: `remove_unused_columns=False` (the losses
    read `action_mask`, `rewards`, `dones`), `logging_steps=10`; and `use_cpu` turns on by itself
    when several processes are launched on a machine without an accelerator (DDP over gloo).
    """

    model_init_kwargs: dict | None = field(
        default=None, metadata={"help": "Keyword arguments for from_pretrained when the model is a string."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that already holds another run's model or checkpoints (its "
                  "files are replaced as this run saves). Without it such an output_dir is refused, unless the "
                  "run resumes from its checkpoint (resume_from_checkpoint)."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code from a model repository to run. Off unless you trust it."}
    )
    max_length: int | None = field(
        default=512, metadata={"help": "Truncate episodes longer than this many tokens, from the left."}
    )
    truncation_mode: str = field(
        default="keep_end",
        metadata={"help": "Episodes longer than max_length: 'keep_end' truncates them from the left and counts "
                  "them in the log; 'error' stops, naming the row.", "choices": ["keep_end", "error"]},
    )
    nonfinite: str = field(
        default="error",
        metadata={"help": "A NaN/inf loss term or gradient norm: 'error' stops training naming the step and the "
                  "term; 'skip' skips that optimizer step (no update) and logs nonfinite_skipped_steps.",
                  "choices": list(NONFINITE_MODES)},
    )
    unlabeled_reward: float | None = field(
        default=None,
        metadata={"help": "Reward for each assistant turn of episodes marked 'labeled': false (UDS: 0.0, the minimum "
                  "reward). None: such rows are an error."},
    )
    dataset_num_proc: int | None = field(
        default=None, metadata={"help": "Number of processes used to tokenize the dataset."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the losses need the action mask, rewards and dones."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every this many optimizer steps."})
    loss_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Tokens per chunk of the cross-entropies over the vocabulary (BC, CQL), computed fused "
                  "with the output projection so [tokens x vocab] logits are never materialized whole. None: "
                  "about 2^24 logits per chunk (130 tokens at a 128k vocabulary), and only when the logits do not "
                  "fit loss_memory_budget_mb; 0: materialize the logits (the plain computation)."},
    )
    loss_memory_budget_mb: float = field(
        default=MEMORY_BUDGET / 2**20,
        metadata={"help": "With loss_chunk_size=None: a cross-entropy over the vocabulary whose plain computation "
                  "(three fp32 [tokens x vocab] tensors: logits, log-probabilities, their gradient) fits this many "
                  "MiB materializes its logits, the faster path; a larger one is chunked. 0: always chunk."},
    )
    if not HAS_ACTIVATION_CHECKPOINTING:  # transformers < 5.23 names it gradient_checkpointing only
        activation_checkpointing: bool = field(
            default=False, metadata={"help": "Recompute the LM's layers in the backward pass to save memory."}
        )
        activation_checkpointing_kwargs: dict | None = field(
            default=None, metadata={"help": "Keyword arguments for activation_checkpointing_enable()."}
        )

    def __post_init__(self):
        if not self.use_cpu and launched_on_cpu_only():
            # transformers would run each process alone; on CPUs, several processes mean DDP over gloo
            self.use_cpu = True
        if not HAS_ACTIVATION_CHECKPOINTING:  # what Trainer reads there: the old names
            self.gradient_checkpointing = bool(self.activation_checkpointing or self.gradient_checkpointing)
            self.gradient_checkpointing_kwargs = self.activation_checkpointing_kwargs or self.gradient_checkpointing_kwargs
            self.activation_checkpointing = self.gradient_checkpointing
        super().__post_init__()
        check_choices(self)
        is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        check_ranges(self, {
            # an episode needs a state and an action: its last two tokens at least
            "max_length": (lambda v: v is None or (is_int(v) and v >= 2),
                           "an integer >= 2 (a state and an action) or None (no truncation)"),
            "per_device_train_batch_size": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
            "per_device_eval_batch_size": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
            "gradient_accumulation_steps": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
            "learning_rate": (lambda v: 0.0 <= v < float("inf"), "a finite number >= 0"),
            "num_train_epochs": (lambda v: self.max_steps > 0 or 0 < v < float("inf"),
                                 "a finite number > 0 (or set max_steps)"),
        })
        if self.nonfinite == "skip" and self.deepspeed:
            raise ValueError("nonfinite='skip' does not work with DeepSpeed, whose engine steps the optimizer "
                             "itself (its fp16 loss scaler skips overflowing steps); use nonfinite='error'.")
        if self.loss_chunk_size is not None and self.loss_chunk_size < 0:
            raise ValueError(f"loss_chunk_size must be >= 0 (0 = no chunking) or None, got {self.loss_chunk_size}.")
        if not self.loss_memory_budget_mb >= 0:
            raise ValueError(f"loss_memory_budget_mb must be >= 0 (MiB; 0 = always chunk), got "
                             f"{self.loss_memory_budget_mb}.")

    @property
    def loss_memory_budget(self) -> int:
        """`loss_memory_budget_mb` in bytes, as the losses take it."""
        return int(self.loss_memory_budget_mb * 2**20)

    def load_kwargs(self) -> dict:
        """`from_pretrained` keyword arguments for a model given as a string: `model_init_kwargs`, with
        weights from safetensors only and remote code off unless asked for."""
        kwargs = dict(self.model_init_kwargs or {})
        if not kwargs.get("gguf_file"):  # a GGUF file is plain tensors too
            kwargs.setdefault("use_safetensors", True)
        return {**kwargs, "trust_remote_code": self.trust_remote_code}


GGUF_WITH_PEFT = (
    "peft_config on a model read from a GGUF file: the adapter checkpoint would name the GGUF's folder as its "
    "base, which does not load without gguf_file. Convert the GGUF file once to a plain checkpoint "
    "(lmrl.models.gguf.convert_gguf, or `lmrl fetch-model` for the models it knows) and train from that folder."
)


def launched_on_cpu_only() -> bool:
    """True when torchrun / accelerate launch started several processes on a machine without an
    accelerator (GPU, MPS, XPU...)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()


def load_tokenizer(model_id: str, trust_remote_code: bool = False, gguf_file: str | None = None):
    gguf = {"gguf_file": gguf_file} if gguf_file else {}
    return AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code, **gguf)


def check_vocabulary(tokenizer, model: PreTrainedModel) -> None:
    rows = model.get_output_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's output layer has {rows} rows, so "
            "some token ids have no logits. Use the tokenizer that belongs to the model, or call "
            "model.resize_token_embeddings(len(tokenizer)) before training."
        )


class LMRLTrainer(NonFiniteGuardMixin, SafeCheckpointMixin, Trainer):
    """A `Trainer` over episodes: tokenizes messages rows (docs/design.md, section 1: Data) once, pads them with
    [`EpisodeCollator`], and logs the per-term statistics its `compute_loss` records. Checkpoints are
    written atomically and checked before a resume (`checkpointing.py`); NaN/inf losses and gradients
    stop training or skip the step (`guards.py`).

    `peft_config` (e.g. `peft.LoraConfig(r=8, lora_alpha=16)`), as in TRL, trains a PEFT adapter on
    the language model instead of its weights; heads an algorithm adds (ILQL's Q and V, CALM's
    outcome head) stay fully trainable. The count of trainable parameters is logged and kept in
    `trainer.parameter_counts`.
    """

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: LMRLConfig,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        data_collator=None,
        peft_config=None,
        **kwargs,
    ):
        model, processing_class = self._language_model(model, args, processing_class, peft_config)
        train_dataset = self._prepare_episodes(train_dataset, processing_class, args, train=True)
        eval_dataset = self._prepare_episodes(eval_dataset, processing_class, args, train=False)
        self._initialize_from_data(model, train_dataset, args)
        model = self._model_to_train(model, train_dataset, args)
        self._setup_trainer(model, args, train_dataset, eval_dataset, processing_class, data_collator, **kwargs)

    def _language_model(self, model: PreTrainedModel | str, args: LMRLConfig, processing_class,
                        peft_config=None) -> tuple[PreTrainedModel, object]:
        """The language model (loaded when given as an id or path, prepared, adapted when `peft_config`
        is set) and its tokenizer, checked against each other."""
        gguf_file = args.load_kwargs().get("gguf_file") if isinstance(model, str) else None
        if isinstance(model, str):
            check_model_source(model, f"model ({type(self).__name__})", args.load_kwargs().get("cache_dir"))
        if processing_class is None:
            if not isinstance(model, str):
                raise ValueError("Pass the tokenizer as processing_class= (or give the model as an id string).")
            processing_class = load_tokenizer(model, args.trust_remote_code, gguf_file)
        if peft_config is not None and (gguf_file or is_gguf_model(model)):
            raise ValueError(GGUF_WITH_PEFT)
        if isinstance(model, str):
            if os.path.isdir(model) and not gguf_file:
                require_safetensors(model)
                check_safetensors_files(model)
            model = self._load_model(model, args)
        model = self._prepare_model(drop_gguf_quantization(model), args)
        if peft_config is not None:
            model = self._apply_peft(model, peft_config)
        check_vocabulary(processing_class, model)
        pad_token_id(processing_class)  # no pad and no eos token: an error in words, before any work
        return model, processing_class

    def _setup_trainer(self, model, args: LMRLConfig, train_dataset, eval_dataset, processing_class,
                       data_collator=None, **kwargs) -> None:
        """`Trainer.__init__` for the module the optimizer trains, with lmrl's collator and logging."""
        self.parameter_counts = trainable_parameters(model)
        logger.info("trainable params: {trainable_parameters:,} || all params: {total_parameters:,} || "
                    "trainable: {trainable_fraction:.2%}".format(**self.parameter_counts))
        if data_collator is None:
            data_collator = EpisodeCollator(pad_token_id(processing_class), pad_values=dict(self.padded_columns),
                                            scalar_columns=self.stacked_columns)
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._policy_logits = PolicyLogits()
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            data_collator=data_collator,
            **kwargs,
        )
        # our losses are means over action tokens; let Trainer scale them for gradient accumulation
        self.model_accepts_loss_kwargs = False

    # columns an algorithm adds to the tokenized episodes, for the collator: token-level ones (with their
    # pad value) and per-row numbers
    padded_columns: dict[str, int | float] = {}
    stacked_columns: tuple[str, ...] = ()

    # ------------------------------------------------------------ hooks for subclasses
    def _load_model(self, model_id: str, args: LMRLConfig) -> PreTrainedModel:
        return AutoModelForCausalLM.from_pretrained(model_id, **args.load_kwargs())

    def _prepare_model(self, model: PreTrainedModel, args: LMRLConfig) -> PreTrainedModel:
        return model

    def _apply_peft(self, model: PreTrainedModel, peft_config) -> PreTrainedModel:
        """Wrap the model in a PEFT adapter (`peft.get_peft_model`)."""
        from peft import get_peft_model

        if is_peft_model(model):
            raise ValueError("The model already has a PEFT adapter: pass peft_config=None to keep training it "
                             "(load it with is_trainable=True), or merge it first (model.merge_and_unload()).")
        return get_peft_model(model, peft_config)

    def _initialize_from_data(self, model: PreTrainedModel, train_dataset, args: LMRLConfig) -> None:
        """Set up anything that depends on the training data (e.g. where fresh heads start)."""

    def _model_to_train(self, model: PreTrainedModel, train_dataset, args: LMRLConfig) -> PreTrainedModel:
        """The module the optimizer trains (the model itself, or a wrapper around it such as CALM's)."""
        return model

    def _episode_transform(self, args):
        return None

    def _prepare_episodes(self, dataset, tokenizer, args, train: bool):
        if dataset is None:
            return None
        if "input_ids" not in getattr(dataset, "column_names", []):
            dataset = prepare_dataset(
                dataset, tokenizer, args.max_length, args.dataset_num_proc, self._episode_transform(args),
                truncation_mode=args.truncation_mode, unlabeled_reward=args.unlabeled_reward,
            )
        return check_tokenized(dataset)

    # ------------------------------------------------------------ loss plumbing
    def model_inputs(self, inputs: dict) -> dict:
        return {k: inputs[k] for k in ("input_ids", "attention_mask")}

    def policy_logits(self, model, steps: torch.Tensor, **model_inputs):
        """Run the causal LM; return (output, last hidden state, its logits at the action `steps`),
        the logits factored for a chunked cross-entropy unless `loss_chunk_size` is 0."""
        return self._policy_logits(model, steps, self.args.loss_chunk_size == 0, **model_inputs)

    def record(self, stats: dict[str, torch.Tensor]) -> None:
        mode = "train" if self.model.training else "eval"
        values = {key: float(value) for key, value in stats.items()}
        if mode == "train":
            self.check_loss_terms(values)
        for key, value in values.items():
            self._metrics[mode][key].append(value)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        keys = sorted(key for key, values in self._metrics[mode].items() if values)
        if keys:
            means = torch.tensor([sum(self._metrics[mode][k]) / len(self._metrics[mode][k]) for k in keys],
                                 device=self.accelerator.device)
            # every process logs at the same steps: average over processes, as Trainer does for `loss`
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update({prefix + key: float(value) for key, value in zip(keys, means)})
        self._metrics[mode].clear()
        super().log(logs, start_time)

