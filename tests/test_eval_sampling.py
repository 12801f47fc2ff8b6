"""`do_sample: true` evaluates with sampled replies (LMRL-Gym's evaluations sample), seeded, so that the
same command gives the same episodes; decoders that sample candidates already refuse it."""

from pathlib import Path

import pytest

from lmrl.api import evaluate, make_data, train
from lmrl.recipes import parse_recipe, read_recipe

ROOT = Path(__file__).resolve().parents[1]
BC = ROOT / "recipes" / "lmrl_gym" / "wordle" / "bc.yaml"


def test_sampled_evaluation_is_seeded_and_differs_from_greedy(tmp_path):
    data = tmp_path / "wordle.jsonl"
    make_data("lmrl_gym_wordle", episodes=200, out=str(data), seed=0)
    model = tmp_path / "bc"
    train(BC, ["--dataset", str(data), "--output_dir", str(model), "--max_steps", "3", "--disable_tqdm", "true",
               "--tiny_model", "{architecture: gpt2, hidden_size: 32, num_layers: 1, vocab_size: 1000, "
               "merge_across_spaces: true}"])
    common = ["--dataset", str(data), "--output_dir", str(model)]
    greedy = evaluate(BC, episodes=8, overrides=[*common, "--do_sample", "false"], out_dir=str(tmp_path / "greedy"))
    sampled = [evaluate(BC, episodes=8, overrides=[*common, "--do_sample", "true"], out_dir=str(tmp_path / name))
               for name in ("a", "b")]
    assert sampled[0]["examples"] == sampled[1]["examples"] and sampled[0]["returns"] == sampled[1]["returns"]
    guesses = lambda report: [m["content"] for e in report["examples"] for m in e if m["role"] == "assistant"]  # noqa: E731
    assert len(set(guesses(greedy))) < len(set(guesses(sampled[0])))  # greedy repeats its first choice


@pytest.mark.parametrize("recipe, overrides", [(ROOT / "recipes" / "negotiation" / "chai.yaml", []),
                                                (BC, ["--plan_candidates", "4"])])
def test_decoders_that_sample_candidates_refuse_do_sample(recipe, overrides):
    with pytest.raises(ValueError, match="do_sample.*propose-and-rank or planning"):
        parse_recipe(read_recipe(recipe, ["--do_sample", "true", *overrides]), "recipe.yaml")
