"""lmrl: offline reinforcement learning for language models, on the Hugging Face stack."""

from .data import EpisodeCollator, encode_prompt, load_episodes, prepare_dataset
from .generation import ValueGuidedLogitsProcessor
from .models import AutoModelForCausalLMWithILQLHeads, ILQLHeadsConfig
from .trainers import BCConfig, BCTrainer, ILQLConfig, ILQLTrainer, MCConfig, MCTrainer

__version__ = "0.1.0"

__all__ = [
    "AutoModelForCausalLMWithILQLHeads",
    "BCConfig",
    "BCTrainer",
    "EpisodeCollator",
    "ILQLConfig",
    "ILQLHeadsConfig",
    "ILQLTrainer",
    "MCConfig",
    "MCTrainer",
    "ValueGuidedLogitsProcessor",
    "encode_prompt",
    "load_episodes",
    "prepare_dataset",
]
