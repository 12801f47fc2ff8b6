"""Behaviour cloning baselines: BC, filtered BC (%BC) and reward-conditioned BC."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..data.schema import Episode, Turn
from ..losses.ilql import bc_loss
from .base import LMRLConfig, LMRLTrainer

logger = logging.getLogger(__name__)


@dataclass
class BCConfig(LMRLConfig):
    """Configuration of [`BCTrainer`].

    Parameters that control the data preprocessing:
        filter_top: keep only this fraction of episodes, those with the highest return (%BC);
            1.0 is plain BC.
        reward_conditioned: prepend each episode's return to its context (as a system message,
            `return_template`), so that decoding can ask for a high return.

    Example:
        ```python
        >>> args = BCConfig(output_dir="out", filter_top=0.1)  # 10% BC
        ```
    """

    filter_top: float = field(
        default=1.0, metadata={"help": "Fraction of episodes with the highest return to train on (1.0 = all)."}
    )
    reward_conditioned: bool = field(
        default=False, metadata={"help": "Condition the policy on the episode's return."}
    )
    return_template: str = field(
        default="Return: {return_:.1f}", metadata={"help": "Text of the return condition."}
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.filter_top <= 1.0:
            raise ValueError(f"filter_top must be in (0, 1], got {self.filter_top}.")


def condition_on_return(episode: Episode, value: float, template: str = "Return: {return_:.1f}") -> Episode:
    """Prepend the return to condition on as a system message (merged into an existing one)."""
    text = template.format(return_=value)
    turns = list(episode.turns)
    if turns and turns[0].role == "system":
        turns[0] = Turn("system", f"{text}\n{turns[0].content}")
    else:
        turns.insert(0, Turn("system", f"{text}\n"))
    return Episode(turns=turns, done=episode.done)


def conditioned_messages(messages: list[dict], value: float, template: str = "Return: {return_:.1f}") -> list[dict]:
    """The same conditioning for a conversation at decoding time."""
    return condition_on_return(Episode.from_messages(messages), value, template).messages()


def top_fraction(dataset, fraction: float):
    """Rows whose return is among the top `fraction` (ties at the threshold are kept)."""
    if fraction >= 1.0:
        return dataset
    returns = sorted(dataset["returns"], reverse=True)
    threshold = returns[max(0, int(round(fraction * len(returns))) - 1)]
    kept = dataset.filter(lambda r: r >= threshold, input_columns="returns")
    logger.info("filter_top=%s keeps %d of %d episodes (return >= %.3f).", fraction, len(kept), len(returns), threshold)
    return kept


class BCTrainer(LMRLTrainer):
    """Cross-entropy on the assistant tokens only, over the same tokenized episodes as ILQL.

    Example:
        ```python
        >>> trainer = BCTrainer(model="gpt2", args=BCConfig(output_dir="bc", filter_top=0.1), train_dataset=rows)
        >>> trainer.train()
        ```
    """

    def _episode_transform(self, args: BCConfig):
        if not args.reward_conditioned:
            return None
        return lambda episode: condition_on_return(episode, episode.total_reward, args.return_template)

    def _prepare_episodes(self, dataset, tokenizer, args: BCConfig, train: bool):
        dataset = super()._prepare_episodes(dataset, tokenizer, args, train)
        return top_fraction(dataset, args.filter_top) if train and dataset is not None else dataset

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        steps = inputs["action_mask"][:, 1:].bool()
        outputs, _, logits = self.policy_logits(model, steps, **self.model_inputs(inputs))
        loss = bc_loss(logits, inputs["input_ids"][:, 1:][steps], chunk_size=self.args.loss_chunk_size,
                       memory_budget=self.args.loss_memory_budget)
        self.record({"loss/bc": loss.detach()})
        return (loss, outputs) if return_outputs else loss
