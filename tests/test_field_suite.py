"""The field suites (LMRL-Gym's maze and Wordle, ported): every file loads, and the GPU tier runs end to end
on a CPU with a tiny model in place of GPT-2 small (a dry run: two optimizer steps, two episodes)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from lmrl.benchmark import read_suite, run_suite
from lmrl.recipes import parse_recipe, read_recipe

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "benchmarks" / "suites"
PUBLISHED = {"maze_fo": {"bc": 58.2, "pbc": 68.9, "mc": 75.0, "ilql": 99.9},
             "maze_po": {"bc": 53.1, "pbc": 50.1, "mc": 52.4, "ilql": 76.3},
             "wordle": {"bc": 79.9, "pbc": 79.1, "mc": 94.9, "ilql": 97.7}}
TINY_CPU = {"model_name_or_path": None, "bf16": False, "use_cpu": True, "max_steps": 2, "max_length": 128,
            "per_device_train_batch_size": 2, "save_strategy": "no", "logging_steps": 1,
            "tiny_model": {"architecture": "gpt2", "hidden_size": 32, "num_layers": 1, "vocab_size": 300}}


@pytest.mark.parametrize("tier", ["cpu", "gpu"])
def test_field_suite_is_their_game_their_numbers_and_enumerated_episodes(tier):
    suite = read_suite(SUITES / f"lmrl_gym_{tier}.yaml")
    assert len(suite.seeds) >= 5
    tasks = {t.name: t for t in suite.tasks}
    assert set(tasks) == set(PUBLISHED)
    for name, task in tasks.items():
        assert task.task == ("lmrl_gym_wordle" if name == "wordle" else "lmrl_gym_maze")
        assert task.test.episodes % (431 if name == "wordle" else 25) == 0  # every answer / start, as often
        assert task.reference["scores"] == PUBLISHED[name] and "GPT-2 small" in task.reference["setting"]
        assert task.references and task.validation is not None and task.choices
        assert [a.name for a in task.algorithms] == ["bc", "pbc", "mc", "ilql"]
        for algo in task.algorithms:
            recipe = read_recipe(algo.recipe, task.overrides)
            assert recipe["task"] == task.task
            if tier == "gpu" or name == "wordle":  # their evaluations sample (the CPU maze rows were greedy)
                assert recipe["do_sample"] is True
            if algo.name in ("mc", "ilql"):  # LMRL-Gym's arrangement: BC is pi_beta
                assert algo.overrides == {"model_name_or_path": "{run:bc}", "steer_model": "{run:bc}"}
                assert recipe["bc_weight"] == 0.0
            if tier == "gpu":  # GPT-2 small in bf16 (parsed with the CPU swap in the dry run below)
                assert recipe["model_name_or_path"] == "gpt2" and recipe["bf16"] is True
            elif algo.name in ("bc", "pbc"):
                assert parse_recipe(recipe, algo.recipe)[0].tiny_model is not None
    assert tasks["maze_po"].overrides["task_kwargs"]["observation"] == "partial"


FROM_BC = {k: v for k, v in TINY_CPU.items() if k not in ("model_name_or_path", "tiny_model")}


def cpu_swap(algo) -> dict:
    """A tiny GPT-2 on the CPU for BC and %BC; MC and ILQL start from the seed's BC run (the suite's override)."""
    return FROM_BC if algo.name in ("mc", "ilql") else TINY_CPU


def test_every_gpu_recipe_accepts_the_cpu_swap():
    suite = read_suite(SUITES / "lmrl_gym_gpu.yaml")
    for task in suite.tasks:
        for algo in task.algorithms:
            parse_recipe(read_recipe(algo.recipe, {**task.overrides, **cpu_swap(algo)}), algo.recipe)


@pytest.mark.parametrize("name", ["maze_fo", "wordle"])
def test_gpu_tier_dry_run_on_cpu_ilql_starts_from_the_seeds_bc_model_and_steers_it(tmp_path, name):
    """LMRL-Gym's arrangement: ILQL loads this seed's BC run and decodes with it as pi_beta (steer_model)."""
    suite = read_suite(SUITES / "lmrl_gym_gpu.yaml", output_dir=str(tmp_path))
    task = next(t for t in suite.tasks if t.name == name)
    algorithms = [replace(a, overrides={**a.overrides, **cpu_swap(a)}) for a in task.algorithms
                  if a.name in ("bc", "ilql")]
    task = replace(task, data={**task.data, "episodes": 4}, references=False, algorithms=algorithms,
                   test=replace(task.test, episodes=2))
    run_suite(replace(suite, seeds=[0], tasks=[task]), log=lambda message: None)
    ilql = tmp_path / name / "ilql" / "seed0"
    recipe = (ilql / "recipe.yaml").read_text()
    assert f"model_name_or_path: {tmp_path / name / 'bc' / 'seed0'}" in recipe
    assert f"steer_model: {tmp_path / name / 'bc' / 'seed0'}" in recipe
    assert len(json.loads((ilql / "eval.json").read_text())["returns"]) == 2
