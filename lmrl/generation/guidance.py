"""The guided-decoding rule now lives in [`lmrl.ops.guidance`] (a leaf module the models import too);
this path keeps working."""

from ..ops.guidance import QFunction, guided_scores, top_k_tokens

__all__ = ["QFunction", "guided_scores", "top_k_tokens"]
