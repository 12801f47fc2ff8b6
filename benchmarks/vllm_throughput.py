"""Throughput of guided decoding: vLLM guided vs vLLM plain (beta = 0) vs HF `generate()` guided, on one checkpoint.

    .venv/bin/python benchmarks/vllm_throughput.py [--batch 32] [--new_tokens 64] [--hidden_size 256]

Trains a small ILQL GPT-2 with lmrl (tests/vllm/make_checkpoints.py, a few steps: only its speed matters),
then decodes the same batch of prompts greedily, every reply `new_tokens` long (EOS masked until then), with
lmrl's HF model (`generate()`, the batch left-padded, in this environment) and with vLLM's CPU build through
lmrl's plugin (in `.venv-vllm`: `make venv-vllm`), one CPU thread each. Prints one table row per path:
generated tokens per second (after one warm-up pass) and the ratio to vLLM guided.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = os.environ.get("LMRL_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python"))


def prompts(folder: Path, batch: int) -> list[list[int]]:
    reference = json.loads((folder / "reference.json").read_text())
    return [reference["prompts"][i % len(reference["prompts"])] for i in range(batch)]


def time_hf(folder: Path, batch: int, new_tokens: int) -> float:
    """Seconds of one batched guided `generate()` (after a warm-up)."""
    import torch

    from lmrl import AutoModelForCausalLMWithILQLHeads

    torch.set_num_threads(1)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(folder / "ilql").eval()
    ids = prompts(folder, batch)
    width = max(map(len, ids))
    pad = model.generation_config.pad_token_id or 0
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in ids])
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids])
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=new_tokens,
                  min_new_tokens=new_tokens, pad_token_id=pad)
    with torch.no_grad():
        model.generate(**{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})
        start = time.perf_counter()
        out = model.generate(**kwargs)
        seconds = time.perf_counter() - start
    assert out.shape[1] - width == new_tokens
    return seconds


def time_vllm(folder: Path, batch: int, new_tokens: int) -> dict[str, float]:
    """Seconds of one guided and one plain (beta = 0) vLLM batch, each after a warm-up (run in .venv-vllm)."""
    from vllm import LLM, SamplingParams
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    from vllm.inputs import TokensPrompt

    batch_prompts = [TokensPrompt(prompt_token_ids=ids) for ids in prompts(folder, batch)]
    params = SamplingParams(temperature=0, max_tokens=new_tokens, min_tokens=new_tokens)
    seconds = {}
    for name, overrides in {"vllm_guided": {}, "vllm_plain": {"beta": 0.0}}.items():
        llm = LLM(model=str(folder / "ilql"), dtype="float32", max_model_len=512, enforce_eager=True, seed=0,
                  hf_overrides=overrides)
        llm.generate(batch_prompts, SamplingParams(temperature=0, max_tokens=2), use_tqdm=False)
        start = time.perf_counter()
        outputs = llm.generate(batch_prompts, params, use_tqdm=False)
        seconds[name] = time.perf_counter() - start
        assert all(len(o.outputs[0].token_ids) == new_tokens for o in outputs)
        del llm
        cleanup_dist_env_and_memory()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--num_layers", type=int, default=4)
    parser.add_argument("--checkpoint", type=Path, help="a folder made by tests/vllm/make_checkpoints.py (ARCH/)")
    parser.add_argument("--vllm_only", action="store_true", help=argparse.SUPPRESS)  # the part run in .venv-vllm
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.vllm_only:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        print(json.dumps(time_vllm(args.checkpoint, args.batch, args.new_tokens)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.checkpoint
        if folder is None:
            subprocess.run([sys.executable, str(ROOT / "tests" / "vllm" / "make_checkpoints.py"), tmp, "--architectures",
                            "gpt2", "--steps", "10", "--hidden_size", str(args.hidden_size), "--num_layers",
                            str(args.num_layers)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            folder = Path(tmp) / "gpt2"
        seconds = {"hf_generate_guided": time_hf(folder, args.batch, args.new_tokens)}
        env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": os.environ.get(
            "VLLM_CPU_OMP_THREADS_BIND", "0"), "VLLM_CPU_KVCACHE_SPACE": "1"}
        run = subprocess.run([VLLM_PYTHON, __file__, "--vllm_only", "--checkpoint", str(folder), "--batch",
                              str(args.batch), "--new_tokens", str(args.new_tokens)],
                             env=env, check=True, capture_output=True, text=True)
        seconds |= json.loads(run.stdout.strip().splitlines()[-1])
    tokens = args.batch * args.new_tokens
    print(f"GPT-2 {args.num_layers} layers x {args.hidden_size}, batch {args.batch} x {args.new_tokens} new tokens, "
          "greedy, 1 CPU thread each")
    print("| path | seconds | tokens/s | vs vLLM guided |")
    print("|---|---|---|---|")
    for name in ("vllm_guided", "vllm_plain", "hf_generate_guided"):
        print(f"| {name} | {seconds[name]:.2f} | {tokens / seconds[name]:.0f} | "
              f"{seconds['vllm_guided'] / seconds[name]:.2f}x |")


if __name__ == "__main__":
    main()
