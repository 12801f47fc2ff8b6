"""Fixtures of the vLLM tests (`make test-vllm`, in `.venv-vllm`; see docs/vllm.md). `make test` does not
collect this folder (pyproject.toml's pytest addopts), and this run does not load tests/conftest.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in the test's process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB

ROOT = Path(__file__).resolve().parents[2]
# lmrl's own environment trains the checkpoints and decodes them with generate() (transformers 5.21+)
TRAIN_PYTHON = os.environ.get("LMRL_TRAIN_PYTHON", str(ROOT / ".venv" / "bin" / "python"))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> Path:
    """Tiny GPT-2 and Llama ILQL checkpoints trained by lmrl, with what generate() decodes from them."""
    out = tmp_path_factory.mktemp("checkpoints")
    subprocess.run([TRAIN_PYTHON, str(ROOT / "tests" / "vllm" / "make_checkpoints.py"), str(out)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=sys.stderr)
    return out


def reference(checkpoints: Path, architecture: str) -> dict:
    return json.loads((checkpoints / architecture / "reference.json").read_text())
