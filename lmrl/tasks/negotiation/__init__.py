"""Negotiation: a seller agent against a rule-based buyer simulator (after CHAI / CraigslistBargain)."""

from lmrl.envs import EVAL_SEED, TaskAnchors
from lmrl.tasks import Task

from .craigslist import iter_craigslist_bargain, load_craigslist_bargain, row_schema
from .data import STRATEGIES, SellerBehaviour, generate_negotiation_episodes, oracle_return
from .env import ITEMS, STYLES, NegotiationEnv
from .features import highest_price, negotiation_features
from .human import HumanBuyer
from .prices import NO_DEAL_REWARD, deal_reward, format_price, listing_prompt, parse_price

__all__ = ["ITEMS", "NO_DEAL_REWARD", "STRATEGIES", "STYLES", "HumanBuyer", "NegotiationEnv", "SellerBehaviour", "TaskAnchors",
           "deal_reward", "format_price", "generate_negotiation_episodes", "highest_price", "iter_craigslist_bargain",
           "listing_prompt", "load_craigslist_bargain", "negotiation_features", "oracle_return", "parse_price"]


def negotiation_anchors(dataset_return: float, episodes: int = 500, styles: list[str] | None = None) -> TaskAnchors:
    """0 = no deal (-0.5), 50 = the dataset's average return, 100 = the oracle seller's mean return
    over the first `episodes` evaluation buyers."""
    best = sum(oracle_return(EVAL_SEED + i, styles) for i in range(episodes)) / episodes
    return TaskAnchors(minimum=NO_DEAL_REWARD, dataset=dataset_return, best=best)


def _make_env(split: str = "eval", styles: list[str] | None = None) -> NegotiationEnv:
    return NegotiationEnv(styles)


def _make_data(n: int, seed: int = 0, progress: bool = True, styles: list[str] | None = None):
    return generate_negotiation_episodes(n, seed=seed, progress=progress, styles=styles)


def _anchors(dataset_return: float, styles: list[str] | None = None) -> TaskAnchors:
    return negotiation_anchors(dataset_return, styles=styles)


def _human_side(styles: list[str] | None = None) -> HumanBuyer:
    return HumanBuyer(styles)


TASK = Task("negotiation", _make_env, _make_data, _anchors, max_turns=10, max_new_tokens=16,
            critic_features=negotiation_features, rank_rule=highest_price, load_corpus=iter_craigslist_bargain, corpus_schema=row_schema,
            human_side=_human_side)
