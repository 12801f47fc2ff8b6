from .guidance import guided_scores
from .logits_process import ValueGuidedLogitsProcessor

__all__ = ["ValueGuidedLogitsProcessor", "guided_scores"]
