"""Serving lmrl checkpoints with other engines: `vllm_plugin` (vLLM, docs/vllm.md)."""
