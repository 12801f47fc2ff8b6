"""End to end on negotiation, with the shipped recipes: a critic choosing among the BC model's own
proposals sells for more than the BC model alone, against the same buyers."""

from pathlib import Path

from transformers import set_seed

from lmrl.cli import build_trainer, make_data, parse_recipe, read_recipe
from lmrl.evaluation import evaluate_checkpoint, format_score_line

ROOT = Path(__file__).resolve().parents[1]


def test_chai_sells_for_more_than_its_proposal_lm_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "negotiation.jsonl"
    make_data("negotiation", 600, str(data), seed=0, task_kwargs={"progress": False})
    reports = {}
    for algo, extra in (("bc", ["--num_train_epochs", "12"]),
                        ("chai", ["--model_name_or_path", str(tmp_path / "bc"), "--num_train_epochs", "10"])):
        overrides = ["--dataset", str(data), "--output_dir", str(tmp_path / algo), "--disable_tqdm", "true", *extra]
        script, config = parse_recipe(read_recipe(ROOT / "recipes" / "negotiation" / f"{algo}.yaml", overrides))
        set_seed(0)
        trainer = build_trainer(script, config)
        trainer.train()
        trainer.save_model()
        reports[algo] = evaluate_checkpoint(script, config, config.output_dir, episodes=150, progress=False)
        print(format_score_line(reports[algo]))  # same 150 evaluation buyers for both
    bc, chai = reports["bc"], reports["chai"]
    assert bc["success_rate"] > 0.5  # a real proposal LM: it closes deals, at poor prices
    assert chai["mean_return"] > bc["mean_return"] + 0.1
    assert chai["ci_low"] > bc["ci_high"]
