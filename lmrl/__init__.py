"""lmrl: offline reinforcement learning for language models, on the Hugging Face stack.

`import lmrl` loads the models (which registers the ILQL-heads model with `AutoConfig` and
`AutoModelForCausalLM`); the data, decoding and trainer names below load on first use, so a serving
environment without the training dependencies (e.g. lmrl[vllm], docs/vllm.md) can import the models,
heads and the guided rule.
"""

from importlib import import_module

from .models import AutoModelForCausalLMWithILQLHeads, CHAICritic, CHAICriticConfig, ILQLHeadsConfig

__version__ = "0.1.0"

# name -> the subpackage that defines it, imported when the name is first used
_LAZY = {
    **dict.fromkeys(["EpisodeCollator", "encode_prompt", "load_episodes", "prepare_dataset"], "data"),
    **dict.fromkeys(["ProposeAndRank", "ValueGuidedLogitsProcessor"], "generation"),
    **dict.fromkeys(["BCConfig", "BCTrainer", "CALMConfig", "CALMTrainer", "CHAIConfig", "CHAITrainer",
                     "ILQLConfig", "ILQLTrainer", "MCConfig", "MCTrainer"], "trainers"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lmrl' has no attribute {name!r}")
    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["AutoModelForCausalLMWithILQLHeads", "CHAICritic", "CHAICriticConfig", "ILQLHeadsConfig", *_LAZY]
