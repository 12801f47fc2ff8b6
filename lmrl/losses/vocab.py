"""The factored vocabulary scores and the chunked cross-entropy now live in [`lmrl.ops.vocab`] (a leaf
module the models import too); this path keeps working."""

from ..ops.vocab import (
    CHUNK_VALUES,
    Logits,
    ProjectedLogits,
    default_chunk_size,
    gather_logits,
    logit_chunks,
    vocab_cross_entropy,
)

__all__ = ["CHUNK_VALUES", "Logits", "ProjectedLogits", "default_chunk_size", "gather_logits", "logit_chunks",
           "vocab_cross_entropy"]
