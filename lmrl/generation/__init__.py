from ..ops.guidance import guided_scores
from .logits_process import ValueGuidedLogitsProcessor
from .planning import LearnedUser, PlanningPolicy, SimulatedUser
from .propose import CriticScorer, ILQLScorer, ProposeAndRank, embed_token_lists, sample_replies
from .replies import generate_replies

__all__ = ["CriticScorer", "ILQLScorer", "LearnedUser", "PlanningPolicy", "ProposeAndRank", "SimulatedUser",
           "ValueGuidedLogitsProcessor", "embed_token_lists", "generate_replies", "guided_scores", "sample_replies"]
