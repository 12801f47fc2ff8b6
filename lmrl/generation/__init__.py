from ..ops.guidance import guided_scores
from .logits_process import ValueGuidedLogitsProcessor
from .planning import LearnedUser, PlanningPolicy, SimulatedUser
from .policy import GeneratePolicy
from .propose import CriticScorer, ILQLScorer, ProposeAndRank, RuleScorer, embed_token_lists, sample_replies
from .replies import generate_replies
from .turn_cache import ConversationCache

__all__ = ["ConversationCache", "CriticScorer", "GeneratePolicy", "ILQLScorer", "LearnedUser", "PlanningPolicy", "ProposeAndRank",
           "RuleScorer", "SimulatedUser", "ValueGuidedLogitsProcessor", "embed_token_lists", "generate_replies", "guided_scores", "sample_replies"]
