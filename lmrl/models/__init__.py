from .configuration import ILQLHeadsConfig
from .heads import TiedQHead, UntiedQHead, ValueHead
from .modeling_ilql import AutoModelForCausalLMWithILQLHeads, ILQLOutput

__all__ = [
    "AutoModelForCausalLMWithILQLHeads",
    "ILQLHeadsConfig",
    "ILQLOutput",
    "TiedQHead",
    "UntiedQHead",
    "ValueHead",
]
