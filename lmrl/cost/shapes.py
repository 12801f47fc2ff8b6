"""The models and workloads `lmrl bench-cost` measures: full (GPT-2 small; a Llama with a 128k vocabulary) and quick."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import GPT2Config, LlamaConfig, PreTrainedConfig

from ..models.configuration import ILQLHeadsConfig


@dataclass(frozen=True)
class ModelShape:
    """One architecture's size, plus the smaller value model that steers it through the logits processor."""

    name: str
    architecture: str  # "gpt2" or "llama"
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    value_hidden_size: int
    value_num_layers: int
    num_kv_heads: int | None = None
    intermediate_size: int | None = None
    fetched: str | None = None  # `lmrl fetch-model` name whose real weights have this shape

    def config(self, vocab_size: int | None = None, value_model: bool = False) -> PreTrainedConfig:
        vocab = vocab_size or self.vocab_size
        hidden = self.value_hidden_size if value_model else self.hidden_size
        layers = self.value_num_layers if value_model else self.num_layers
        heads = max(1, self.num_heads * hidden // self.hidden_size)
        eos = vocab - 1
        if self.architecture == "gpt2":
            return GPT2Config(n_layer=layers, n_embd=hidden, n_head=heads, vocab_size=vocab, bos_token_id=eos,
                              eos_token_id=eos)
        kv_heads = max(1, (self.num_kv_heads or self.num_heads) * hidden // self.hidden_size)
        return LlamaConfig(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
            intermediate_size=(self.intermediate_size or 4 * self.hidden_size) * hidden // self.hidden_size,
            vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=eos,
            eos_token_id=eos,
        )

    def describe(self) -> str:
        kind = "GPT-2" if self.architecture == "gpt2" else "Llama"
        return (f"{self.name}: {kind} {self.num_layers} layers, hidden {self.hidden_size}, vocab {self.vocab_size:,}; "
                f"value model {self.value_num_layers} layers, hidden {self.value_hidden_size}")


@dataclass(frozen=True)
class Workload:
    """What is run on every shape, and how often."""

    prompt_len: int
    new_tokens: int
    decode_runs: tuple[tuple[int, int], ...]  # (batch size, rounds)
    train_batch: int
    train_len: int
    train_repeats: int
    scaling_vocabs: tuple[int, ...]  # at the first scaling length, on the large-vocabulary shape, batch 1
    scaling_lengths: tuple[int, ...]  # at that shape's own vocabulary, batch 1
    scaling_repeats: int
    guidance_top_k: int = ILQLHeadsConfig.guidance_top_k  # the decoding settings users get by default
    beta: float = ILQLHeadsConfig.beta


@dataclass(frozen=True)
class FeatureCacheBench:
    """The feature cache's rows (lmrl/cost/feature_cache.py), selected with `--shape feature-cache`:
    `model` is an `lmrl fetch-model` name (fetched when missing) or "tiny" (a tiny GPT-2 built on the chats);
    `shape` names it in the table."""

    model: str
    shape: str
    rows: int  # negotiation-like chats built in code
    batch_size: int  # per_device_train_batch_size of the epochs
    build_repeats: int  # rounds of build vs plain inference
    train_repeats: int  # rounds of one training step of each variant
    decode_runs: tuple[tuple[int, int], ...]  # (batch size, rounds)
    max_length: int = 256
    name: str = "feature-cache"

    def describe(self) -> str:
        model = "a tiny GPT-2 built on the chats" if self.model == "tiny" else f"`lmrl fetch-model {self.model}`"
        return (f"{self.name}: {self.shape} ({model}) on {self.rows} chats, batch {self.batch_size}; build rounds "
                f"{self.build_repeats}, train rounds {self.train_repeats}, decode (batch, rounds) {self.decode_runs}")


@dataclass(frozen=True)
class RolloutBench:
    """The rollout rows (lmrl/cost/rollout.py), selected with `--shape rollout`: `model` is an `lmrl
    fetch-model` name or "tiny" (a tiny GPT-2 built on maze episodes); `shape` names it in the table."""

    model: str
    shape: str
    episodes: int  # maze episodes played at once (one per start)
    turns: int  # agent turns each plays, at most
    repeats: int  # rounds of plain vs reused
    name: str = "rollout"

    def describe(self) -> str:
        model = "a tiny GPT-2 built on maze episodes" if self.model == "tiny" else f"`lmrl fetch-model {self.model}`"
        return (f"{self.name}: {self.shape} ({model}), {self.episodes} FO maze episodes x {self.turns} turns, "
                f"greedy, {self.repeats} rounds")


@dataclass(frozen=True)
class Plan:
    mode: str
    shapes: tuple[ModelShape, ...]
    workload: Workload
    targets_judged: bool = True
    # pretrained shapes measured with real weights when `lmrl fetch-model` has them (same shape otherwise):
    # decode plain / guided, and training steps with a LoRA adapter (BC vs ILQL), as users train them
    lora_shapes: tuple[ModelShape, ...] = ()
    scaling: bool = True  # the vocabulary / length scaling rows, on the last of `shapes`
    feature_cache: FeatureCacheBench | None = None  # the feature cache's rows
    rollout: RolloutBench | None = None  # a rollout with and without the KV cache kept across turns

    @property
    def scaling_shape(self) -> ModelShape:
        return self.shapes[-1]


GPT2_SMALL = ModelShape("gpt2-small", "gpt2", 768, 12, 12, 50257, value_hidden_size=768, value_num_layers=6)
# Llama 3's 128,256-token vocabulary and tied embeddings (as Llama 3.2 1B) on a narrow, shallow trunk: the
# untied-head and separate-trunk variants must fit in the memory of a small machine beside the others.
LLAMA_128K = ModelShape("llama-128k", "llama", 512, 2, 8, 128256, value_hidden_size=256, value_num_layers=1,
                        num_kv_heads=2, intermediate_size=1536)

# SmolLM2-135M-Instruct (`lmrl fetch-model smollm2`): Llama, 30 layers, GQA 9/3 heads, tied 49,152-token vocabulary
SMOLLM2 = ModelShape("smollm2-135m", "llama", 576, 30, 9, 49152, value_hidden_size=64, value_num_layers=2,
                     num_kv_heads=3, intermediate_size=1536, fetched="smollm2")

FULL = Plan(
    "full",
    (GPT2_SMALL, LLAMA_128K),
    Workload(prompt_len=8, new_tokens=16, decode_runs=((1, 15), (32, 7)), train_batch=1, train_len=128,
             train_repeats=5, scaling_vocabs=(8192, 32768, 128256), scaling_lengths=(128, 1024), scaling_repeats=3),
    lora_shapes=(SMOLLM2,),
    # SmolLM2 on a 2-core CPU: about 100 tokens a chat; a pass over the 16 chats takes 10-20 s
    feature_cache=FeatureCacheBench("smollm2", SMOLLM2.name, rows=16, batch_size=4, build_repeats=3, train_repeats=3,
                                    decode_runs=((1, 9), (32, 5))),
    rollout=RolloutBench("smollm2", SMOLLM2.name, episodes=8, turns=12, repeats=3),
)
QUICK = Plan(
    "quick",
    (ModelShape("gpt2-tiny", "gpt2", 64, 2, 2, 512, value_hidden_size=32, value_num_layers=1),
     ModelShape("llama-tiny", "llama", 64, 2, 2, 2048, value_hidden_size=32, value_num_layers=1, num_kv_heads=1,
                intermediate_size=128)),
    Workload(prompt_len=8, new_tokens=4, decode_runs=((1, 2), (4, 2)), train_batch=2, train_len=16,
             train_repeats=2, scaling_vocabs=(512, 2048), scaling_lengths=(16, 32), scaling_repeats=2, guidance_top_k=8),
    targets_judged=False,
    lora_shapes=(ModelShape("llama-tiny-lora", "llama", 64, 2, 2, 2048, value_hidden_size=32, value_num_layers=1,
                            num_kv_heads=1, intermediate_size=128),),
    feature_cache=FeatureCacheBench("tiny", "gpt2-tiny-cached", rows=24, batch_size=4, build_repeats=2,
                                    train_repeats=2, decode_runs=((1, 2), (4, 2))),
    rollout=RolloutBench("tiny", "gpt2-tiny", episodes=4, turns=6, repeats=2),
)
