from .collator import EpisodeCollator
from .loading import load_episodes, prepare_dataset
from .schema import Episode, Turn, is_unlabeled, unlabel, user_side, validate_row
from .tokenization import encode_prompt, tokenize_episode

__all__ = [
    "Episode",
    "EpisodeCollator",
    "Turn",
    "encode_prompt",
    "is_unlabeled",
    "load_episodes",
    "prepare_dataset",
    "tokenize_episode",
    "unlabel",
    "user_side",
    "validate_row",
]
