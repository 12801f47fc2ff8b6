"""Tensor operations the models, losses and decoding all use; imports nothing else from lmrl.

- `guidance`: the guided-decoding rule `log pi_beta + beta * clip(Q - V)` (ILQL's forward and
  `ValueGuidedLogitsProcessor`).
- `vocab`: scores over the vocabulary kept factored ([`ProjectedLogits`]) and the chunked, fused
  cross-entropy over them (the BC and CQL losses).
"""

from .guidance import guided_scores, top_k_tokens
from .vocab import ProjectedLogits, gather_logits, logit_chunks, vocab_cross_entropy

__all__ = ["ProjectedLogits", "gather_logits", "guided_scores", "logit_chunks", "top_k_tokens", "vocab_cross_entropy"]
