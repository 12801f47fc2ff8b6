"""Propose-and-rank by a task's hand-written rule (negotiation: the highest price), the baseline a learned
reranker such as CHAI is measured against."""

from pathlib import Path

import pytest
import torch

from lmrl.api import evaluate, make_data, train
from lmrl.evaluation import build_policy
from lmrl.generation import ProposeAndRank, RuleScorer
from lmrl.recipes import parse_recipe, read_recipe
from lmrl.tasks import get_task
from lmrl.tasks.negotiation import highest_price, negotiation_features

ROOT = Path(__file__).resolve().parents[1]
RULE = ROOT / "recipes" / "negotiation" / "price_rule.yaml"
CONVERSATION = [{"role": "system", "content": "You are selling a bike. Listed at $200."},
                {"role": "user", "content": "Would you take $120?"},
                {"role": "assistant", "content": "I can do $180."},
                {"role": "user", "content": "How about $150?"}]


def test_the_negotiation_rule_is_the_price_feature_and_ranking_keeps_its_best():
    replies = ["Deal.", "I can do $170.", "The price is firm.", "$260, final."]
    assert [highest_price(CONVERSATION, r) for r in replies] == pytest.approx([0.75, 0.85, 0.9, 1.3])
    assert [highest_price(CONVERSATION, r) for r in replies] == [negotiation_features(CONVERSATION, r)[0]
                                                                  for r in replies]
    assert get_task("negotiation").rank_rule is highest_price
    scores = RuleScorer(highest_price)([CONVERSATION], [replies])
    assert scores.shape == (1, 4) and int(scores.argmax()) == 3
    with pytest.raises(ValueError, match="rule must be a function"):
        RuleScorer("highest")


def test_rank_rule_needs_a_task_and_a_proposal_model_and_is_not_chai():
    with pytest.raises(ValueError, match="'rank_rule' ranks proposal_model's replies"):
        parse_recipe(read_recipe(RULE, {"proposal_model": None}), "price_rule.yaml")
    chai = ROOT / "recipes" / "negotiation" / "chai.yaml"
    with pytest.raises(ValueError, match="'rank_rule' ranks proposal_model's replies"):
        parse_recipe(read_recipe(chai, {"rank_rule": True, "proposal_model": "runs/negotiation/bc"}), "chai.yaml")
    with pytest.raises(ValueError, match="do_sample"):
        parse_recipe(read_recipe(RULE, {"do_sample": True}), "price_rule.yaml")
    with pytest.raises(ValueError, match="nothing to train"):
        train(RULE)


def test_lmrl_eval_ranks_a_trained_bc_models_proposals_by_the_rule(tmp_path):
    data = tmp_path / "negotiation.jsonl"
    make_data("negotiation", episodes=40, out=str(data), seed=0)
    bc = tmp_path / "bc"
    train(ROOT / "recipes" / "negotiation" / "bc.yaml",
          ["--dataset", str(data), "--output_dir", str(bc), "--max_steps", "3", "--disable_tqdm", "true"])
    overrides = {"dataset": str(data), "model_name_or_path": str(bc), "proposal_model": str(bc),
                 "output_dir": str(bc), "rank_proposals": 3}
    script, config = parse_recipe(read_recipe(RULE, overrides), "price_rule.yaml")
    policy = build_policy(script, config, bc, get_task("negotiation"))
    assert isinstance(policy, ProposeAndRank) and isinstance(policy.scorer, RuleScorer) and policy.k == 3
    proposed = []
    propose = policy.propose
    policy.propose = lambda conversations: proposed.append(propose(conversations)) or proposed[-1]
    reply, = policy([CONVERSATION])
    prices = torch.tensor([highest_price(CONVERSATION, r) for r in proposed[0][0]])
    assert reply == proposed[0][0][int(prices.argmax())]
    report = evaluate(RULE, checkpoint=str(bc), episodes=2, overrides=overrides, out_dir=str(tmp_path / "rule"))
    assert len(report["returns"]) == 2 and (tmp_path / "rule" / "eval.json").is_file()
