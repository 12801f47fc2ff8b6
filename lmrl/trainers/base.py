"""What every lmrl trainer shares: the base config, model/tokenizer loading, data path and logging."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, Trainer, TrainingArguments

from ..data import EpisodeCollator, prepare_dataset
from ..data.tokenization import pad_token_id
from ..models.adapters import is_peft_model, trainable_parameters

logger = logging.getLogger(__name__)


@dataclass
class LMRLConfig(TrainingArguments):
    """Arguments every lmrl trainer takes, on top of `transformers.TrainingArguments`.

    Parameters that control the model:
        model_init_kwargs: keyword arguments for `from_pretrained` when `model` is given as a string.
        trust_remote_code: allow code from the model repository to run (off by default).
    Parameters that control the data preprocessing:
        max_length: episodes longer than this many tokens are truncated from the left (the
            outcome is at the end); `None` keeps everything.
        dataset_num_proc: processes used to tokenize the dataset.

    Note: defaults that differ from `TrainingArguments`: `remove_unused_columns=False` (the losses
    read `action_mask`, `rewards`, `dones`), `logging_steps=10`.
    """

    model_init_kwargs: dict | None = field(
        default=None, metadata={"help": "Keyword arguments for from_pretrained when the model is a string."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code from a model repository to run. Off unless you trust it."}
    )
    max_length: int | None = field(
        default=512, metadata={"help": "Truncate episodes longer than this many tokens, from the left."}
    )
    dataset_num_proc: int | None = field(
        default=None, metadata={"help": "Number of processes used to tokenize the dataset."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the losses need the action mask, rewards and dones."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every this many optimizer steps."})


def load_tokenizer(model_id: str, trust_remote_code: bool = False):
    return AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code)


def check_vocabulary(tokenizer, model: PreTrainedModel) -> None:
    rows = model.get_output_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's output layer has {rows} rows, so "
            "some token ids have no logits. Use the tokenizer that belongs to the model, or call "
            "model.resize_token_embeddings(len(tokenizer)) before training."
        )


class LMRLTrainer(Trainer):
    """A `Trainer` over episodes: tokenizes messages rows (DESIGN §2) once, pads them with
    [`EpisodeCollator`], and logs the per-term statistics its `compute_loss` records.

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
        if processing_class is None:
            if not isinstance(model, str):
                raise ValueError("Pass the tokenizer as processing_class= (or give the model as an id string).")
            processing_class = load_tokenizer(model, args.trust_remote_code)
        if isinstance(model, str):
            model = self._load_model(model, args)
        model = self._prepare_model(model, args)
        if peft_config is not None:
            model = self._apply_peft(model, peft_config)
        check_vocabulary(processing_class, model)
        train_dataset = self._prepare_episodes(train_dataset, processing_class, args, train=True)
        eval_dataset = self._prepare_episodes(eval_dataset, processing_class, args, train=False)
        self._initialize_from_data(model, train_dataset, args)
        model = self._model_to_train(model, train_dataset, args)
        self.parameter_counts = trainable_parameters(model)
        logger.info("trainable params: {trainable_parameters:,} || all params: {total_parameters:,} || "
                    "trainable: {trainable_fraction:.2%}".format(**self.parameter_counts))
        if data_collator is None:
            data_collator = EpisodeCollator(pad_token_id(processing_class))
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
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

    # ------------------------------------------------------------ hooks for subclasses
    def _load_model(self, model_id: str, args: LMRLConfig) -> PreTrainedModel:
        kwargs = dict(args.model_init_kwargs or {})
        return AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=args.trust_remote_code, **kwargs)

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
        """The module the optimizer trains (the model itself, except for CHAI's critic)."""
        return model

    def _episode_transform(self, args):
        return None

    def _prepare_episodes(self, dataset, tokenizer, args, train: bool):
        if dataset is None:
            return None
        if "input_ids" not in getattr(dataset, "column_names", []):
            dataset = prepare_dataset(
                dataset, tokenizer, args.max_length, args.dataset_num_proc, self._episode_transform(args)
            )
        return dataset

    # ------------------------------------------------------------ loss plumbing
    def model_inputs(self, inputs: dict) -> dict:
        return {k: inputs[k] for k in ("input_ids", "attention_mask")}

    def record(self, stats: dict[str, torch.Tensor]) -> None:
        mode = "train" if self.model.training else "eval"
        for key, value in stats.items():
            self._metrics[mode][key].append(float(value))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for key, values in self._metrics[mode].items():
            if values:
                logs[prefix + key] = sum(values) / len(values)
        self._metrics[mode].clear()
        super().log(logs, start_time)

