from .collator import EpisodeCollator
from .loading import load_episodes, prepare_dataset
from .schema import Episode, Turn, user_side, validate_row
from .tokenization import encode_prompt, tokenize_episode

__all__ = [
    "Episode",
    "EpisodeCollator",
    "Turn",
    "encode_prompt",
    "load_episodes",
    "prepare_dataset",
    "tokenize_episode",
    "user_side",
    "validate_row",
]
