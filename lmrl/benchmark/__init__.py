"""`lmrl benchmark SUITE.yaml`: task x algorithm x seed, trained and evaluated, one table per task and
one plot.

A suite file lists tasks; each names how to make its data and the recipes to run on it:

```yaml
output_dir: runs/benchmark
seeds: [0, 1, 2, 3, 4]    # each seed: its own behaviour data, initialization, data order and sampling
episodes: 100             # test episodes per run: seeds EVAL_SEED, EVAL_SEED + 1, ... for every run
tasks:
  maze_fo:
    task: lmrl_gym_maze
    episodes: 25                               # optional: this task's count (25 starts, each played once)
    data: {episodes: 1000, options: {layout: double_t_maze}}
    overrides: {num_train_epochs: 8}           # optional, for every recipe of the task
    # data may also say labeled_share: 0.1 with unlabeled: keep (the rest marked "labeled": false,
    # rewards removed; train them with the override unlabeled_reward: 0.0) or unlabeled: drop
    validation: {options: {layout: umaze}, episodes: 20}   # or {split: validation}, or {seed: 0, episodes: 50}
    choices: "beta 20 of {4, 20, 64}, best mean over seeds on validation (umaze)"   # printed under the table
    references: true                           # evaluate the task's reference policies on the same episodes
    algorithms:
      bc: recipes/maze/bc.yaml
      ilql: recipes/maze/ilql.yaml
      chai: {recipe: recipes/negotiation/chai.yaml, overrides: {model_name_or_path: "{run:bc}"}}
      calm_plan: {recipe: recipes/flight_booking/calm_plan.yaml, checkpoint: calm,   # evaluate only
                  upper_bound: true}           # plans with the true simulator: its own section
    reference:                                 # a published number, only for a task that is their game
      source: "LMRL-Gym (Abdulhai et al., 2023), Table 2, fully observed maze"
      setting: "GPT-2 small, their data"
      scores: {bc: 58.2, ilql: 99.9}
```

`{run:NAME}` in an override is that algorithm's run folder for the same seed, `{data}` the seed's
data file. A run whose `eval.json` exists is skipped, so an interrupted suite resumes where it
stopped; a run that trained but did not evaluate is only evaluated.

Seeds. Suite seed `s` gives each source of chance its own seed ([`derived_seeds`]): the behaviour data
is made with seed `s`, training takes `seed = 100_000 + s` (initialization) and `data_seed =
200_000 + s` (the order of the batches), and the evaluation seeds torch with `300_000 + s` for
policies that sample. The evaluation episodes do not depend on `s`: every run of a task plays the same
enumerated episodes (environment seeds `EVAL_SEED`, ... on the test split; the ported tasks map seed
`k` to start or answer `k % N`, so `episodes: N` plays each once).

Validation and test. `--split test` (the default) evaluates on the test episodes (environment split
"eval", the recipe's options, seeds from `EVAL_SEED`); `--split validation` on the task's
`validation:` episodes, writing to `OUTPUT_DIR/validation/` (the trained models are shared). A
validation spec must differ from the test where it can be checked: other options, another
environment split, or a seed range disjoint from the test's; a suite where they coincide is refused.
Choose settings on validation and record them in `choices:`.

Statistics, per task and row, over the n seeds (each seed's run scored on its own data's anchors,
unclipped: [`lmrl.envs.t_interval`]): the mean of the per-seed normalized scores with a Student-t 95%
interval (n - 1 degrees of freedom), and for every row the paired difference to the same seeds' BC
(`bc`) with its t-interval. Rows with fewer than 5 seeds are marked. Rows of kind "upper_bound" (an
algorithm with `upper_bound: true`, or a reference policy of that kind) and reference policies get
their own sections under the learned rows.
"""

from __future__ import annotations

import json
import time

from .report import plot, seed_scores, summarize, table
from .run import run_suite
from .suite import EpisodeSet, Suite, TaskSpec, derived_seeds, read_suite


def main(suite_path: str, output_dir: str | None = None, only: list[str] | None = None,
         seeds: list[int] | None = None, split: str = "test") -> int:
    start = time.perf_counter()
    suite = read_suite(suite_path, output_dir, split)
    if only:
        unknown = sorted(set(only) - {t.name for t in suite.tasks})
        if unknown:
            raise ValueError(f"{suite_path}: no task {', '.join(unknown)}; it has {', '.join(t.name for t in suite.tasks)}.")
        suite.tasks = [t for t in suite.tasks if t.name in only]
    if seeds:
        unknown = sorted(set(seeds) - set(suite.seeds))
        if unknown:
            raise ValueError(f"{suite_path}: no seed {', '.join(map(str, unknown))}; it has "
                             f"{', '.join(map(str, suite.seeds))}.")
        suite.seeds = [s for s in suite.seeds if s in seeds]
    if split == "validation":
        missing = [t.name for t in suite.tasks if t.validation is None]
        if missing:
            raise ValueError(f"{suite_path}: --split validation, and task(s) {', '.join(missing)} have no "
                             "'validation' episodes; add e.g. validation: {options: {layout: ...}} or "
                             "validation: {split: validation}, or leave them out with --task.")
    stem = "benchmark" if not only else "benchmark-" + "-".join(t.name for t in suite.tasks)  # a part keeps its own table
    if seeds:
        stem += "-seed" + "-".join(map(str, suite.seeds))
    rows = summarize(suite, run_suite(suite, log=lambda m: print(m, flush=True)))
    text = table(rows)
    seconds = time.perf_counter() - start
    print(text)
    print(f"{len(suite.seeds)} seed(s) on the {split} episodes; wall time {seconds:.0f} s "
          f"(runs finished before were reused). Plot: {suite.run_dir / (stem + '.png')}")
    plot(rows, suite.run_dir / f"{stem}.png")
    (suite.run_dir / f"{stem}.json").write_text(json.dumps({"suite": suite.source, "split": split, "rows": rows,
                                                           "wall_time_s": seconds}, indent=2))
    (suite.run_dir / f"{stem}.md").write_text(text)
    return 0


__all__ = ["EpisodeSet", "Suite", "TaskSpec", "derived_seeds", "main", "plot", "read_suite", "run_suite",
           "seed_scores", "summarize", "table"]
