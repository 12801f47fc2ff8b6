"""`lmrl benchmark`: a suite of task x algorithm x seed runs, resumed when interrupted, evaluated on test
or validation episodes, summarized with intervals over seeds (the quick suite, in seconds)."""

import json
from pathlib import Path

import pytest

from lmrl.benchmark import derived_seeds, read_suite
from lmrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "benchmarks" / "suites" / "quick.yaml"


def test_the_quick_suite_runs_resumes_and_prints_one_table_per_split(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "bench"
    assert main(["benchmark", str(QUICK), "--output_dir", str(out)]) == 0
    first = capsys.readouterr().out
    assert first.count("### maze_fo") == 1 and "| bc | GPT-2 2x64" in first and "| ilql | GPT-2 2x64" in first
    assert "(n=2, below the 5 the protocol asks)" in first and "(baseline)" in first
    assert "published" not in first  # a diagnostic task: no published number beside it
    assert "Choices: none: the recipes' settings as shipped" in first
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("eval.json"))
    assert runs == ["maze_fo/bc/seed0", "maze_fo/bc/seed1", "maze_fo/ilql/seed0", "maze_fo/ilql/seed1"]
    data = [json.loads(line) for line in (out / "maze_fo" / "data" / "seed1.jsonl").read_text().splitlines()]
    other = [json.loads(line) for line in (out / "maze_fo" / "data" / "seed0.jsonl").read_text().splitlines()]
    assert len(data) == 40 and data != other  # each seed its own behaviour data
    recipe = (out / "maze_fo" / "ilql" / "seed1" / "recipe.yaml").read_text()
    assert f"seed: {derived_seeds(1)['seed']}" in recipe and f"data_seed: {derived_seeds(1)['data_seed']}" in recipe
    summary = json.loads((out / "benchmark.json").read_text())
    assert [r["seeds"] for r in summary["rows"]] == [[0, 1], [0, 1]]
    ilql = summary["rows"][1]
    assert ilql["difference"]["n"] == 2 and ilql["model"].startswith("GPT-2 2x64")
    test_seeds = json.loads((out / "maze_fo" / "bc" / "seed0" / "eval.json").read_text())["seeds"]
    assert test_seeds == list(range(10_000, 10_006))  # the same test episodes for every run
    assert (out / "benchmark.png").stat().st_size > 1000

    # an interrupted suite: one run lost its evaluation; the rest is reused
    (out / "maze_fo" / "ilql" / "seed1" / "eval.json").unlink()
    bc_eval = out / "maze_fo" / "bc" / "seed0" / "eval.json"
    stamp = bc_eval.stat().st_mtime_ns
    assert main(["benchmark", str(QUICK), "--output_dir", str(out)]) == 0
    second = capsys.readouterr().out
    assert second.count("evaluated before, skipped") == 3 and ": training" not in second
    assert "maze_fo/ilql seed 1: evaluating" in second and bc_eval.stat().st_mtime_ns == stamp
    assert json.loads((out / "benchmark.json").read_text())["rows"] == summary["rows"]  # same runs, same table

    # the validation episodes: the same trained models, evaluated apart, into their own folder
    assert main(["benchmark", str(QUICK), "--output_dir", str(out), "--split", "validation"]) == 0
    third = capsys.readouterr().out
    assert ": training" not in third and "4 validation episodes" in third
    validation = sorted(p.parent.relative_to(out).as_posix() for p in (out / "validation").rglob("eval.json"))
    assert validation == ["validation/maze_fo/bc/seed0", "validation/maze_fo/bc/seed1",
                          "validation/maze_fo/ilql/seed0", "validation/maze_fo/ilql/seed1"]
    report = json.loads((out / "validation" / "maze_fo" / "bc" / "seed0" / "eval.json").read_text())
    assert report["split"] == "train" and report["episodes"] == 4
    assert (out / "validation" / "benchmark.md").is_file()
    assert json.loads((out / "benchmark.json").read_text())["rows"] == summary["rows"]  # the test table untouched


def test_a_suite_with_errors_names_the_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0]\ntasks:\n  t:\n    task: maze\n    data: {episodes: 5}\n    algorithms:\n"
                   "      bc: recipes/maze/nope.yaml\n")
    with pytest.raises(ValueError, match=r"tasks.t.algorithms.bc: no such recipe file recipes/maze/nope.yaml"):
        read_suite(bad)
    bad.write_text("seeds: [0]\ntasks:\n  t:\n    task: maze\n    data: {episodes: 5}\n    algorithms:\n"
                   f"      plan: {{recipe: {QUICK}, checkpoint: calm}}\n")
    with pytest.raises(ValueError, match="checkpoint 'calm' must name an algorithm listed before it"):
        read_suite(bad)


@pytest.mark.slow  # two training runs (about 13 s): the locked suite runs it
def test_a_suite_task_can_train_on_a_labelled_share_with_the_rest_unlabeled(tmp_path, monkeypatch, capsys):
    """UDS in a suite: the same seed's episodes, a labelled share kept, the rest stripped of rewards
    and marked (kept, trained at unlabeled_reward) or dropped; both anchor on the labelled episodes."""
    monkeypatch.chdir(ROOT)
    suite = tmp_path / "uds.yaml"
    suite.write_text(
        f"output_dir: {tmp_path / 'out'}\nseeds: [0]\nepisodes: 4\ntasks:\n"
        "  keep:\n    task: maze\n    data: {episodes: 20, labeled_share: 0.25, unlabeled: keep}\n"
        "    overrides: {max_steps: 2, unlabeled_reward: 0.0}\n    algorithms: {ilql: recipes/maze/ilql.yaml}\n"
        "  drop:\n    task: maze\n    data: {episodes: 20, labeled_share: 0.25, unlabeled: drop}\n"
        "    overrides: {max_steps: 2}\n    algorithms: {ilql: recipes/maze/ilql.yaml}\n")
    assert main(["benchmark", str(suite), "--task", "keep"]) == 0  # one task of the suite: its own table
    assert (tmp_path / "out" / "benchmark-keep.md").is_file() and not (tmp_path / "out" / "drop").exists()
    assert main(["benchmark", str(suite)]) == 0
    assert main(["benchmark", str(suite), "--task", "nope"]) == 2
    assert "no task nope; it has keep, drop" in capsys.readouterr().err
    assert main(["benchmark", str(suite), "--seed", "7"]) == 2
    assert "no seed 7; it has 0" in capsys.readouterr().err
    rows = {name: [json.loads(line) for line in (tmp_path / "out" / name / "data" / "seed0.jsonl").read_text().splitlines()]
            for name in ("keep", "drop")}
    assert len(rows["keep"]) == 20 and len(rows["drop"]) == 5
    assert [r for r in rows["keep"] if r.get("labeled") is not False] == rows["drop"]
    reports = [json.loads((tmp_path / "out" / name / "ilql" / "seed0" / "eval.json").read_text()) for name in ("keep", "drop")]
    assert reports[0]["anchors"] == reports[1]["anchors"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0]\ntasks:\n  t:\n    task: maze\n    data: {episodes: 5, unlabeled: keep}\n"
                   "    algorithms: {bc: recipes/maze/bc.yaml}\n")
    with pytest.raises(ValueError, match="tasks.t.data: 'unlabeled' needs 'labeled_share'"):
        read_suite(bad)


def test_the_default_suite_names_known_tasks_and_shipped_recipes():
    from lmrl.tasks import get_task

    suite = read_suite(ROOT / "benchmarks" / "suites" / "default.yaml")
    assert suite.seeds == [0, 1, 2]
    assert {t.name for t in suite.tasks} == {"maze_fo", "maze_po", "maze_uds_labeled_only", "maze_uds", "wordle",
                                          "negotiation", "flight_booking"}
    for task in suite.tasks:
        get_task(task.task)
