"""`lmrl bench-cost` keeps running (tiny shapes); its figures are read, not asserted. Its parts are tested here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lmrl.cost.decode import RuleOnly
from lmrl.cost.measure import LiveTensorMemory, interleaved, median_ratio, ratio_interval
from lmrl.cost.paper_layout import SeparateTrunksILQL
from lmrl.cost.run import DEFAULT_VS_UNCHUNKED, UNCHUNKED
from lmrl.cost.train import BC_DEFAULT, separate_trunks, training_batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # over 15 s: left out of CI's latest and floor jobs
def test_bench_quick_mode_prints_one_table_and_writes_every_measure_as_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "lmrl.cli", "bench-cost", "--quick", "--output", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("| shape | measure | variant |") == 1
    report = json.loads(out.read_text())
    assert report["machine"]["torch_threads"] == 1 and "TorchDispatchMode" in report["memory_method"]
    rows = report["rows"]
    sections = {row["section"].split(" ")[0] for row in rows}
    assert sections == {"params", "decode", "train", "scaling", "feature-cache", "rollout,"}
    variants = " ".join(row["variant"] for row in rows)
    for expected in ("tied", "untied", "paper layout", "fast path", "full vocabulary", "ValueGuidedLogitsProcessor",
                     "chunked", "materialized", "floor of the rule", "narrow heads"):
        assert expected in variants
    assert {row["section"] for row in rows if row["section"].startswith("decode")} == {"decode b=1", "decode b=4"}
    compared = [row for row in rows if row["variant"] == DEFAULT_VS_UNCHUNKED]  # a time ratio only, no memory
    train = [row for row in rows if row["section"].startswith(("train", "scaling")) and row not in compared]
    assert all(row["memory"] > row["backward_memory"] > 0 and row["value"] > 0 and len(row["samples"]) == 2
               for row in train)
    assert {row["target"]["limit"] for row in rows if row["target"]} == {0.06, 1.05, 1.15, 1.5, 1.3,
                                                                        1.1, 50, 64 * 4 + 8}  # + the feature cache's
    cached = [row for row in rows if row["section"].startswith("feature-cache")]  # on a tiny GPT-2 (see its own tests)
    assert {row["shape"] for row in cached} == {"gpt2-tiny-cached"} and report["notes"] == []
    played = [row for row in rows if row["section"].startswith("rollout")]  # see tests/test_turn_cache.py
    assert len(played) == 4 and "same replies: True" in played[0]["section"]
    unchunked = {row["section"] for row in rows if row["variant"] == UNCHUNKED}  # beside every unchunked ILQL row
    assert {row["section"] for row in compared} == unchunked and "train 2x16" in unchunked
    assert all(row["ratio"] > 0 for row in compared)
    lora = [row for row in rows if row["shape"] == "llama-tiny-lora"]  # a pretrained shape, as users train it
    assert {row["section"] for row in lora} == {"decode b=1", "decode b=4", "train 2x16, LoRA r=8"}
    trained = {row["variant"]: row for row in lora if row["section"].startswith("train")}
    assert set(trained) == {f"{BC_DEFAULT}, LoRA", "ILQL, tied heads (lmrl), LoRA"}
    assert trained[f"{BC_DEFAULT}, LoRA"]["ratio"] == 1.0
    assert trained["ILQL, tied heads (lmrl), LoRA"]["ratio"] > 0


def test_live_tensor_memory_counts_what_is_alive_at_the_worst_moment():
    resident = [torch.zeros(1000)]  # 4,000 bytes, already there
    with LiveTensorMemory(resident) as memory:
        a = torch.ones(2000)  # 8,000 bytes
        view = a[100:]  # no new storage
        del a
        b = torch.ones(500) * 2  # `ones` (2,000 bytes) and the product (2,000 bytes): `a` still lives in `view`
        del view, b
        c = torch.ones(100)
    assert memory.peak == 4000 + 8000 + 2000 + 2000
    assert memory.current == 4000 + 400
    del c


def test_paper_layout_trains_policy_and_value_trunks_while_the_target_trunk_only_follows():
    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    layout = SeparateTrunksILQL(base)
    before = {name: p.clone() for name, p in layout.named_parameters()}
    separate_trunks(layout, training_batch(2, 8, 50, torch.device("cpu"))).step()
    moved = {name.split(".")[0] for name, p in layout.named_parameters() if not torch.equal(p, before[name])}
    assert moved == {"policy", "value_trunk", "target_trunk", "q_heads", "target_q_heads", "v_head"}
    assert not any(p.requires_grad for p in layout.target_trunk.parameters())
    # Polyak: target <- (1 - 0.005) target + 0.005 value trunk, starting from the same weights as the value trunk
    name = "transformer.h.0.mlp.c_fc.weight"
    target, value = dict(layout.target_trunk.named_parameters())[name], dict(layout.value_trunk.named_parameters())[name]
    start = before[f"target_trunk.{name}"]
    torch.testing.assert_close(target, 0.995 * start + 0.005 * value)


def test_bench_can_measure_one_shape_and_names_the_shapes_it_knows():
    from lmrl.cost.run import only
    from lmrl.cost.shapes import FULL, SMOLLM2

    plan = only(FULL, ["smollm2-135m"])
    assert plan.shapes == () and plan.lora_shapes == (SMOLLM2,) and not plan.scaling
    assert only(FULL, ["gpt2-small", "llama-128k"]).scaling and not only(FULL, ["gpt2-small"]).scaling
    with pytest.raises(ValueError, match="--shape gpt3: no such shape in the full plan; choose from gpt2-small"):
        only(FULL, ["gpt3"])


def test_the_rule_floor_variant_runs_the_rule_and_decodes_the_plain_tokens():
    # Q = V = 0: the rule's scores are the top-k's log-probabilities, -inf elsewhere; greedy tokens are the plain ones
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=5000)).eval()
    prompt = torch.randint(0, 5000, (3, 5))
    logits = model(prompt).logits[:, -1].float()
    scores = RuleOnly(guidance_top_k=8)(prompt, logits.clone())
    top = logits.log_softmax(-1).topk(8, dim=-1)
    assert torch.allclose(scores.gather(-1, top.indices), top.values, atol=1e-5)
    assert torch.isinf(scores).sum(dim=-1).eq(5000 - 8).all()
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(model.generate(prompt, logits_processor=[RuleOnly(guidance_top_k=8)], **kwargs),
                       model.generate(prompt, **kwargs))


def test_rounds_rotate_the_order_and_the_ratio_interval_brackets_the_median():
    order = []
    times = interleaved({name: (lambda name=name: order.append(name)) for name in "abc"}, 3, torch.device("cpu"),
                        warm_up=False)
    assert order == list("abcbcacab") and all(len(t) == 3 for t in times.values())
    steady, noisy = [1.0] * 9, [1.0, 1.3, 0.8, 1.1, 0.9, 1.25, 1.0, 0.85, 1.15]
    assert ratio_interval([1.04] * 9, steady) == (pytest.approx(1.04), pytest.approx(1.04))  # no noise: no width
    low, high = ratio_interval(noisy, steady)
    assert low < median_ratio(noisy, steady) < high and high - low > 0.1
