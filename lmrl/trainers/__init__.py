from .base import LMRLConfig, LMRLTrainer
from .bc import BCConfig, BCTrainer, condition_on_return, conditioned_messages
from .calm import CALMConfig, CALMTrainer
from .chai import CHAIConfig, CHAITrainer
from .ilql import ILQLConfig, ILQLTrainer, TargetUpdateCallback, ValueLearningConfig
from .mc import MCConfig, MCTrainer
from .value_heads import ValueHeadsTrainer

__all__ = [
    "BCConfig",
    "BCTrainer",
    "CALMConfig",
    "CALMTrainer",
    "CHAIConfig",
    "CHAITrainer",
    "ILQLConfig",
    "ILQLTrainer",
    "LMRLConfig",
    "LMRLTrainer",
    "MCConfig",
    "MCTrainer",
    "TargetUpdateCallback",
    "ValueHeadsTrainer",
    "ValueLearningConfig",
    "condition_on_return",
    "conditioned_messages",
]
