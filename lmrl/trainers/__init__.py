from .base import LMRLConfig, LMRLTrainer
from .bc import BCConfig, BCTrainer, condition_on_return, conditioned_messages
from .callbacks import TargetUpdateCallback
from .calm import CALMConfig, CALMTrainer
from .chai import CHAIConfig, CHAITrainer
from .ilql import ILQLConfig, ILQLTrainer
from .mc import MCConfig, MCTrainer
from .value_heads import ValueHeadsTrainer, ValueLearningConfig

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
