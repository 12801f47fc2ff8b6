"""The statistics and protocol of `lmrl benchmark`: Student-t intervals over seeds that do not clip,
paired differences to BC, validation episodes kept apart from the test, and reference and upper-bound
rows in their own sections."""

import json
import math
import random
from pathlib import Path

import pytest

import lmrl.tasks
from lmrl.benchmark import EpisodeSet, Suite, TaskSpec, read_suite, seed_scores, summarize, table
from lmrl.benchmark.run import _evaluate_references
from lmrl.envs import (
    EpisodeResult,
    TaskAnchors,
    paired_difference,
    rollout,
    score_episodes,
    t_interval,
    t_quantile,
)
from lmrl.envs.reference import ReferencePolicy
from lmrl.evaluation import format_score_line
from lmrl.tasks import Task, register_task

ROOT = Path(__file__).resolve().parents[1]

# Student's t, two-sided 95% (the 0.975 quantile), df 1..30: the standard printed table
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def test_t_quantiles_match_the_printed_table_and_tend_to_the_normal():
    for df, value in enumerate(T975, start=1):
        assert t_quantile(0.975, df) == pytest.approx(value, abs=6e-4), df
    assert t_quantile(0.995, 5) == pytest.approx(4.032, abs=1e-3) and t_quantile(0.95, 10) == pytest.approx(1.812, abs=1e-3)
    assert t_quantile(0.975, 60) == pytest.approx(2.000, abs=1e-3) and t_quantile(0.975, 120) == pytest.approx(1.980, abs=1e-3)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.95996, abs=1e-4)
    assert t_quantile(0.025, 4) == pytest.approx(-2.776, abs=1e-3)
    assert t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-9)


def test_the_interval_over_seeds_is_the_t_interval_with_n_minus_1_degrees_of_freedom():
    # seeds 30, 40, 50: mean 40, s = 10, half width 4.303 * 10 / sqrt(3) = 24.84
    mean, low, high = t_interval([30.0, 40.0, 50.0])
    assert mean == 40.0 and low == pytest.approx(15.16, abs=0.01) and high == pytest.approx(64.84, abs=0.01)
    # five seeds 1..5: mean 3, s = sqrt(2.5), half width 2.776 * 1.5811 / sqrt(5) = 1.963
    mean, low, high = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (low, high) == (pytest.approx(1.037, abs=1e-3), pytest.approx(4.963, abs=1e-3))
    mean, low, high = t_interval([7.0])
    assert mean == 7.0 and math.isnan(low) and math.isnan(high)  # one seed: no interval


def _report(seed, returns, algorithm="bc", kind="learned", task="t", best=-4.0):
    return {"suite_task": task, "suite_algorithm": algorithm, "suite_kind": kind, "suite_seed": seed,
            "returns": returns, "anchors": {"minimum": -20.0, "dataset": -10.0, "best": best},
            "episodes": len(returns), "success_rate": 0.5}


def _suite(*tasks):
    return Suite(Path("unused"), [0, 1, 2], 4, list(tasks))


def _spec(name="t", reference=None, choices=None):
    return TaskSpec(name, "maze", {}, [], reference=reference, choices=choices)


def test_a_run_above_the_best_anchor_stays_above_100_and_widens_nothing_by_clipping():
    # a sample heavy in easy starts beats the average optimum (-4): its score passes 100, and stays there
    lucky = [_report(0, [-3.0, -3.0, -5.0]), _report(1, [-3.0, -3.0, -3.0]), _report(2, [-4.0, -4.0, -4.0])]
    assert seed_scores(lucky) == {0: pytest.approx(100 + 50 / 6 / 3), 1: pytest.approx(100 + 50 / 6), 2: 100.0}
    row = summarize(_suite(_spec()), lucky)[0]
    assert row["normalized"] > 100 and row["high"] > row["normalized"] > row["low"]
    assert row["per_seed"] == pytest.approx([102.778, 108.333, 100.0], abs=1e-3)


def test_each_row_is_paired_with_bc_on_the_same_seeds():
    reports = [_report(s, [r]) for s, r in enumerate([-10.0, -7.0, -15.0])]  # BC: 50, 75, 25
    reports += [_report(s, [r], "ilql") for s, r in enumerate([-7.0, -4.0, -10.0])]  # 75, 100, 50: +25 each seed
    reports += [_report(s, [r], "mc") for s, r in enumerate([-7.0, -10.0])]  # seeds 0 and 1 only: +25, -25
    rows = {r["algorithm"]: r for r in summarize(_suite(_spec()), reports)}
    assert rows["bc"]["difference"] is None
    ilql = rows["ilql"]["difference"]
    assert ilql["mean"] == pytest.approx(25.0) and ilql["low"] == pytest.approx(25.0) and ilql["n"] == 3
    # the seeds' own spread (25 points) would give a wide interval; paired, the difference is exact
    assert rows["ilql"]["high"] - rows["ilql"]["low"] > 100
    assert rows["mc"]["difference"]["mean"] == pytest.approx(0.0) and rows["mc"]["difference"]["n"] == 2
    assert paired_difference({0: 1.0}, {1: 2.0}) is None
    mean, low, high, n = paired_difference({0: 3.0, 1: 5.0, 2: 10.0}, {0: 1.0, 1: 2.0, 2: 4.0})  # 2, 3, 6
    assert (mean, n) == (pytest.approx(11 / 3), 3)
    assert high - mean == pytest.approx(4.303 * math.sqrt(((2 - 11 / 3) ** 2 + (3 - 11 / 3) ** 2 + (6 - 11 / 3) ** 2) / 2)
                                        / math.sqrt(3), abs=1e-2)
    text = table(summarize(_suite(_spec()), reports))
    assert "| ilql |" in text and "+25.0 [+25.0, +25.0] (n=3)" in text and "(n=3, below the 5 the protocol asks)" in text


def _suite_file(tmp_path, validation: str, options="{layout: ring}") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(f"seeds: [0]\nepisodes: 10\ntasks:\n  t:\n    task: maze\n    data: {{episodes: 5}}\n"
                    f"    overrides: {{task_kwargs: {options}}}\n    validation: {validation}\n"
                    f"    algorithms: {{bc: {ROOT / 'recipes/maze/bc.yaml'}}}\n")
    return path


def test_validation_episodes_that_are_test_episodes_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"tasks.t.validation: the validation episodes are test episodes .*seeds "
                                         r"10005..10009 in both"):
        read_suite(_suite_file(tmp_path, "{seed: 10005, episodes: 20}"))
    with pytest.raises(ValueError, match="the validation episodes are test episodes"):  # the recipe's own layout
        read_suite(_suite_file(tmp_path, "{options: {layout: ring}}"))
    assert read_suite(_suite_file(tmp_path, "{seed: 0, episodes: 20}")).tasks[0].validation.seeds == list(range(20))
    assert read_suite(_suite_file(tmp_path, "{options: {layout: rooms}}")).tasks[0].validation.options == {
        "layout": "rooms"}
    assert read_suite(_suite_file(tmp_path, "{split: train}")).tasks[0].validation.split == "train"


def test_a_published_number_names_its_setting(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(f"seeds: [0]\ntasks:\n  t:\n    task: maze\n    data: {{episodes: 5}}\n"
                    f"    algorithms: {{bc: {ROOT / 'recipes/maze/bc.yaml'}}}\n"
                    "    reference: {source: LMRL-Gym, scores: {bc: 50.0}}\n")
    with pytest.raises(ValueError, match="tasks.t.reference: missing field 'setting'"):
        read_suite(path)


class GuessEnv:
    """One turn: say the number the seed picks (0..3); right pays 1."""

    def reset(self, seed=None):
        self.answer = (seed or 0) % 4
        return "Guess 0, 1, 2 or 3."

    def step(self, text):
        right = text.strip() == str(self.answer)
        return "", float(right), True, {"success": right}


def _guess_data(n: int, seed: int = 0, progress: bool = True):
    rng = random.Random(seed)
    return rollout(GuessEnv, lambda conversations: [str(rng.randrange(4)) for _ in conversations], range(n), 1,
                   progress=False)


class Oracle:
    """Reads the true answer off the environment: a learner is shown no such thing."""

    needs_envs = True

    def __call__(self, conversations, envs):
        return [str(env.answer) for env in envs]


def _references(rows, seed=0):
    return [ReferencePolicy("always_zero", lambda conversations: ["0"] * len(conversations), "reference",
                            "always guesses 0"),
            ReferencePolicy("oracle", Oracle(), "upper_bound", "reads the answer from the environment")]


GUESS = Task("guess", make_env=lambda split="eval": GuessEnv(), make_data=_guess_data,
             anchors=lambda dataset_return: TaskAnchors(0.0, dataset_return, 1.0), max_turns=1,
             reference_policies=_references)


def test_reference_and_upper_bound_rows_are_evaluated_on_the_test_episodes_and_printed_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(lmrl.tasks, "_REGISTERED", {})
    register_task(GUESS)
    from lmrl.api import make_data

    spec = TaskSpec("guess", "guess", {}, [], references=True, test=EpisodeSet(seed=0, episodes=8),
                    choices="nothing to choose (a test of the machinery)")
    suite = Suite(tmp_path, [0, 1], 8, [spec])
    reports = []
    for seed in (0, 1):
        data = tmp_path / f"seed{seed}.jsonl"
        make_data("guess", 40, data, seed)
        reports += _evaluate_references(suite, spec, seed, data, spec.test, {}, log=lambda message: None)
        # a learned BC row and an upper-bound algorithm row, as run_suite would report them
        reports.append({**_report(seed, [0.0, 1.0], "bc", task="guess"), "anchors": reports[-1]["anchors"]})
        reports.append({**_report(seed, [1.0, 1.0], "planner", "upper_bound", task="guess"),
                        "anchors": reports[-1]["anchors"]})
    oracle = json.loads((tmp_path / "guess" / "references" / "oracle" / "seed1" / "eval.json").read_text())
    assert oracle["seeds"] == list(range(8)) and oracle["mean_return"] == 1.0
    zero = json.loads((tmp_path / "guess" / "references" / "always_zero" / "seed0" / "eval.json").read_text())
    assert zero["mean_return"] == 0.25  # seeds 0..7 enumerate the four answers twice
    rows = summarize(suite, reports)
    assert {r["algorithm"]: r["kind"] for r in rows} == {"always_zero": "reference", "oracle": "upper_bound",
                                                         "bc": "learned", "planner": "upper_bound"}
    text = table(rows)
    learned, rest = text.split("*Upper bounds")
    upper, references = rest.split("*References")
    assert "| bc |" in learned and "oracle" not in learned and "planner" not in learned
    assert "| planner |" in upper and "| oracle |" in upper and "- oracle: reads the answer" in upper
    assert "| always_zero |" in references and "- always_zero: always guesses 0" in references
    assert "published" not in text and text.rstrip().endswith("Choices: nothing to choose (a test of the machinery)")


def test_a_single_runs_normalized_interval_is_shown_only_inside_the_anchors():
    anchors = TaskAnchors(-20, -10, -4)
    spread = [EpisodeResult(seed=i, total_reward=r) for i, r in enumerate([-3.0, -5.0] * 10)]  # starts of two kinds
    score = score_episodes(spread, anchors).as_dict()
    assert score["normalized"] == 100.0 and score["normalized_note"].startswith("no interval")
    assert score["ci_high"] > -4.0  # the return interval is kept
    line = format_score_line({"run": "r", **score})
    assert "return -4.00 [" in line and "normalized 100.0 (no interval: the return interval passes the best return" in line
    inside = score_episodes([EpisodeResult(seed=i, total_reward=r) for i, r in enumerate([-10.0, -4.0] * 10)], anchors)
    assert inside.normalized_note is None
    assert "normalized 75.0 [" in format_score_line({"run": "r", **inside.as_dict()})
