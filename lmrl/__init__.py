"""lmrl: offline reinforcement learning for language models, on the Hugging Face stack."""

from .data import EpisodeCollator, encode_prompt, load_episodes, prepare_dataset
from .generation import ProposeAndRank, ValueGuidedLogitsProcessor
from .models import AutoModelForCausalLMWithILQLHeads, CHAICritic, CHAICriticConfig, ILQLHeadsConfig
from .trainers import (
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

__version__ = "0.1.0"

__all__ = [
    "AutoModelForCausalLMWithILQLHeads",
    "BCConfig",
    "BCTrainer",
    "CALMConfig",
    "CALMTrainer",
    "CHAIConfig",
    "CHAICritic",
    "CHAICriticConfig",
    "CHAITrainer",
    "EpisodeCollator",
    "ILQLConfig",
    "ILQLHeadsConfig",
    "ILQLTrainer",
    "MCConfig",
    "MCTrainer",
    "ProposeAndRank",
    "ValueGuidedLogitsProcessor",
    "encode_prompt",
    "load_episodes",
    "prepare_dataset",
]
