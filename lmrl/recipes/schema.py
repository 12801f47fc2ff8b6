"""What a recipe may hold: the algorithms (`ALGORITHMS`), the script fields (`ScriptArguments`), and
the plain-YAML reader that refuses a key given twice."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from ..trainers import (
    BCConfig,
    BCTrainer,
    CALMConfig,
    CALMTrainer,
    CHAIConfig,
    CHAITrainer,
    ILQLConfig,
    ILQLTrainer,
    MCConfig,
    MCTrainer,
)


@dataclass(frozen=True)
class Algorithm:
    """What the commands need to know about an algorithm, in one place.

    value_heads: its checkpoint is an `AutoModelForCausalLMWithILQLHeads` (Q and V heads on the LM),
        which can steer a frozen LM or rank proposals by advantages;
    trains_critic: it trains a separate critic over a frozen proposal LM (CHAI), so evaluation proposes
        replies and the checkpoint ranks them.
    """

    name: str
    config: type
    trainer: type
    value_heads: bool = False
    trains_critic: bool = False


ALGORITHMS = {a.name: a for a in (
    Algorithm("ilql", ILQLConfig, ILQLTrainer, value_heads=True),
    Algorithm("bc", BCConfig, BCTrainer),
    Algorithm("mc", MCConfig, MCTrainer, value_heads=True),
    Algorithm("chai", CHAIConfig, CHAITrainer, trains_critic=True),
    Algorithm("calm", CALMConfig, CALMTrainer),
)}


@dataclass
class ScriptArguments:
    """Fields of a recipe that are not training arguments."""

    algorithm: str = field(metadata={"help": "The training algorithm.", "choices": list(ALGORITHMS)})
    dataset: str | list[str] = field(
        metadata={"help": "Episodes: a local JSON/JSONL/Parquet file or folder, or a hub id; or a list of them, "
                  "trained on together (e.g. [runs/data/negotiation.jsonl, runs/played/negotiation.jsonl])."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local path of the causal LM (or of a saved lmrl model)."}
    )
    gguf_file: str | None = field(
        default=None,
        metadata={"help": "Read the model and tokenizer from this GGUF file inside model_name_or_path (a folder or "
                  "hub repo), dequantized to float (needs `pip install lmrl[gguf]`). Not with use_peft: convert "
                  "the file first (lmrl fetch-model, or lmrl.models.gguf.convert_gguf)."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, when it is not stored with the model."}
    )
    tiny_model: dict | None = field(
        default=None,
        metadata={"help": "Instead of model_name_or_path: build a small model from a config, e.g. "
                  "{architecture: gpt2, hidden_size: 64, num_layers: 2, vocab_size: 512}, with a tokenizer "
                  "trained on the dataset's text (merge_across_spaces: true lets a token span spaces); with tokenizer_name_or_path, for that tokenizer instead (no "
                  "vocab_size): e.g. a small value model that steers a frozen LM sharing its tokenizer. For CPU "
                  "demos and tests."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Optional episodes to evaluate the loss on."})
    task: str | None = field(default=None, metadata={"help": "Task to evaluate online in (lmrl eval): a name, e.g. maze, or a "
                                                "reference to your own, package.module:TASK."})
    task_kwargs: dict | None = field(default=None, metadata={"help": "Task options, e.g. {layout: ring}."})
    proposal_model: str | None = field(
        default=None,
        metadata={"help": "Evaluate by propose-and-rank: this LM samples num_proposals replies and the trained "
                  "model picks one (CHAI's critic; an ILQL model ranks by the sum of advantages). CHAI "
                  "defaults to model_name_or_path."},
    )
    rank_proposals: int | None = field(
        default=None, metadata={"help": "Replies proposed per turn when ranking (default: the CHAI config's num_proposals)."}
    )
    rank_rule: bool = field(
        default=False,
        metadata={"help": "Evaluate by propose-and-rank with the task's hand-written rule (its rank_rule; "
                  "negotiation: the highest price) instead of a trained model: proposal_model proposes, nothing "
                  "is read from the checkpoint. The baseline a learned reranker is measured against."},
    )
    steer_model: str | None = field(
        default=None,
        metadata={"help": "Evaluate by steering: this frozen LM (sharing the trained model's tokenizer) decodes, "
                  "reweighted by the trained ILQL model's advantages through ValueGuidedLogitsProcessor "
                  "(the trained model's beta, guidance_top_k and guidance_top_p)."},
    )
    do_sample: bool = field(
        default=False,
        metadata={"help": "Evaluate with sampled replies (generate(do_sample=True): the model's distribution, or "
                  "the guided one, as its generation config says; a tiny model's is temperature 1 with no top-k or "
                  "top-p) instead of greedy decoding. LMRL-Gym's evaluations sample. lmrl benchmark seeds the "
                  "sampling per suite seed."},
    )
    reuse_cache: bool = field(
        default=False,
        metadata={"help": "Keep the model's KV cache from one turn of an episode to the next, so each turn reads "
                  "only what the conversation added (ConversationCache). With max_length, each prompt is then a "
                  "window of max_length/2 to max_length tokens over the conversation instead of its last "
                  "max_length. For generate() policies (not propose-and-rank or planning)."},
    )
    plan_candidates: int = field(
        default=0, metadata={"help": "Evaluate by CALM planning: candidates per turn, each simulated with the "
                             "task's user simulator (0 = no planning)."}
    )
    plan_horizon: int = field(default=2, metadata={"help": "Agent turns each planning simulation looks ahead."})
    plan_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the planning candidates (beside the greedy one)."}
    )
    plan_user_model: str | None = field(
        default=None,
        metadata={"help": "Plan with a learned user model instead of the task's simulator: a causal LM trained on "
                  "the user's side of the dialogues (lmrl user-side DATA --out USER_DATA, then a BC recipe). "
                  "Needs plan_value_model."},
    )
    plan_value_model: str | None = field(
        default=None,
        metadata={"help": "With plan_user_model: an ILQL or MC model trained on the agent's rows whose Q at the "
                  "last agent reply scores each simulated continuation (its expected return)."},
    )
    rank_temperature: float = field(
        default=0.0, metadata={"help": "Ranking: 0 = best-scored reply, > 0 = sample softmax(score / T)."}
    )
    use_peft: bool = field(
        default=False,
        metadata={"help": "Train a LoRA adapter on the LM instead of its weights (heads stay fully trained); the "
                  "checkpoint is the adapter plus heads and names the base model."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt, e.g. [q_proj, v_proj] or [all-linear]; default: PEFT's choice "
                  "for the architecture (the attention projections)."},
    )


def get_peft_config(script: ScriptArguments):
    """The `LoraConfig` a recipe asks for (`use_peft: true`), or None."""
    if not script.use_peft:
        return None
    from peft import LoraConfig

    targets = script.lora_target_modules
    if targets == ["all-linear"]:  # PEFT takes this one as a string, not as a module name
        targets = "all-linear"
    return LoraConfig(task_type="CAUSAL_LM", r=script.lora_r, lora_alpha=script.lora_alpha,
                      lora_dropout=script.lora_dropout, target_modules=targets)


class _DuplicateKey(Exception):
    pass


class _RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (plain data only) that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        first = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in first:
                raise _DuplicateKey(f"line {key_node.start_mark.line + 1}: {key!r} is given a second time (first "
                                    f"on line {first[key]}), and YAML would keep the last silently; keep one")
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def plain_yaml(text: str, where: str):
    """Plain YAML data only: tags that would build Python objects are refused, and so is a key given
    twice in one mapping."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as err:
        raise ValueError(f"{where}: {err}.") from None
    except yaml.YAMLError as err:
        raise ValueError(
            f"{where}: not valid plain YAML ({' '.join(str(err).split())}). Recipes hold data only; "
            "tags such as !!python/object are refused and nothing in a recipe is executed."
        ) from None
