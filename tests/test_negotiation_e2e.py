"""End to end on negotiation, with the shipped recipes: a critic choosing among the BC model's own
proposals sells for more than the BC model alone, against the same buyers."""

from pathlib import Path

import pytest
from conftest import train_and_evaluate

from lmrl.api import make_data

pytestmark = pytest.mark.slow  # left out of CI's latest and floor jobs (make test-latest / test-floor)

ROOT = Path(__file__).resolve().parents[1]


def test_chai_sells_for_more_than_its_proposal_lm_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "negotiation.jsonl"
    make_data("negotiation", 600, str(data), seed=0, task_kwargs={"progress": False})
    recipes = ROOT / "recipes" / "negotiation"
    common = ["--dataset", str(data)]
    # the same 150 evaluation buyers for both
    bc = train_and_evaluate(recipes / "bc.yaml", [*common, "--output_dir", str(tmp_path / "bc"),
                                                  "--num_train_epochs", "12"], episodes=150)
    chai = train_and_evaluate(recipes / "chai.yaml", [*common, "--output_dir", str(tmp_path / "chai"),
                                                      "--model_name_or_path", str(tmp_path / "bc"),
                                                      "--num_train_epochs", "10"], episodes=150)
    assert bc["success_rate"] > 0.5  # a real proposal LM: it closes deals, at poor prices
    assert chai["mean_return"] > bc["mean_return"] + 0.1
    assert chai["ci_low"] > bc["ci_high"]
