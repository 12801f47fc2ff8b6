from .chai import CHAICritic, CHAICriticConfig
from .configuration import ILQLHeadsConfig
from .heads import TiedQHead, UntiedQHead, ValueHead
from .modeling_ilql import AutoModelForCausalLMWithILQLHeads, ILQLOutput

__all__ = [
    "AutoModelForCausalLMWithILQLHeads",
    "CHAICritic",
    "CHAICriticConfig",
    "ILQLHeadsConfig",
    "ILQLOutput",
    "TiedQHead",
    "UntiedQHead",
    "ValueHead",
]
