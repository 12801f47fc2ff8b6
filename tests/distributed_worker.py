"""A few training steps of one lmrl trainer, run alone or under `torchrun --nproc_per_node N`.

tests/test_distributed.py runs it as 1 process and as 2 processes (gloo on CPU) at the same global
batch and compares what it writes to OUT_DIR/ALGORITHM/:
    log.json                      the logged per-step losses (rank 0), the world size
    weights-rank{R}.safetensors   the trained module's weights on rank R (trunk, heads, target heads)

    python tests/distributed_worker.py ALGORITHM[,ALGORITHM...] OUT_DIR GLOBAL_BATCH STEPS

Every row has the same number of action tokens, so the mean over one rank's action tokens averaged
over ranks (what DDP's gradient all-reduce computes) equals the mean over the whole global batch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import set_seed  # noqa: E402

import lmrl  # noqa: E402
from lmrl.models.tiny import tiny_causal_lm, train_tokenizer  # noqa: E402

REPLIES = [" red", " blue", " green", " gold"]
PROMPTS = ["Pick a door:", "Pick a coat:", "Pick a car:", "Pick a cup:"]


def rows(n: int = 64) -> list[dict]:
    """Single-turn and two-turn episodes, every assistant reply one word with its own reward."""
    out = []
    for i in range(n):
        reply = REPLIES[i % len(REPLIES)]
        out.append({"messages": [
            {"role": "system", "content": "Colours only."},
            {"role": "user", "content": PROMPTS[(i // 4) % len(PROMPTS)]},
            {"role": "assistant", "content": reply, "reward": float(reply == " blue")},
            {"role": "user", "content": "And again:"},
            {"role": "assistant", "content": REPLIES[(i * 3) % len(REPLIES)], "reward": 0.5 * (i % 3 == 0)},
        ]})
    return out


def flight_rows(n: int = 16) -> list[dict]:
    from lmrl.tasks.flight_booking import generate_flight_episodes

    return [r.as_row() for r in generate_flight_episodes(n, seed=0, num_flights=2, progress=False)]


def build(algorithm: str, output_dir: str, per_device_batch: int, steps: int):
    set_seed(0)
    data = flight_rows() if algorithm == "calm" else rows()
    tokenizer = train_tokenizer([m["content"] for row in data for m in row["messages"]], vocab_size=300)
    if algorithm == "ilql":  # Llama: an output layer apart from the input embedding (untied)
        model = tiny_causal_lm(tokenizer, "llama", hidden_size=32, num_layers=2, tie_word_embeddings=False)
    else:  # no dropout: ranks draw no noise
        model = tiny_causal_lm(tokenizer, "gpt2", hidden_size=32, num_layers=2,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    common = dict(output_dir=output_dir, per_device_train_batch_size=per_device_batch, max_steps=steps,
                  learning_rate=3e-3, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                  seed=0, lr_scheduler_type="constant", use_cpu=not torch.cuda.is_available())
    if algorithm == "ilql":
        args = lmrl.ILQLConfig(**common, alpha=0.1)
        return lmrl.ILQLTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    if algorithm == "calm":
        args = lmrl.CALMConfig(**common, outcome_task="flight_booking", max_length=1024)
        from lmrl.tasks.flight_booking import outcome_label, relabel_row

        return lmrl.CALMTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                outcome_label=outcome_label, relabel=relabel_row)
    if algorithm == "chai":
        args = lmrl.CHAIConfig(**common, num_proposals=2, proposal_max_new_tokens=3)
        return lmrl.CHAITrainer(proposal_model=model, args=args, train_dataset=data, processing_class=tokenizer)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def fsdp2_ilql(out_dir: str, global_batch: int, steps: int) -> None:
    """ILQL steps on a model sharded with FSDP2 (`fully_shard`, per-parameter dim-0 shards) next to
    the same steps on an unsharded copy fed the whole global batch; both end in weights-rank{R}.

    Accelerate enables FSDP only on GPUs, so this drives FSDP2 directly: it checks the parts lmrl
    owns (the training forward, the losses, the Polyak update on the local shards)."""
    import copy

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from lmrl.data import EpisodeCollator, prepare_dataset
    from lmrl.losses import ilql_loss

    if not dist.is_initialized():  # the trainers run before may have started it
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    set_seed(0)
    data = rows()
    tokenizer = train_tokenizer([m["content"] for row in data for m in row["messages"]], vocab_size=300)
    base = tiny_causal_lm(tokenizer, "gpt2", hidden_size=32, num_layers=2,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    reference = lmrl.AutoModelForCausalLMWithILQLHeads.from_causal_lm(base)
    sharded = copy.deepcopy(reference)
    mesh = init_device_mesh("cpu", (world,))
    for block in sharded.pretrained_model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(sharded, mesh=mesh)
    episodes = prepare_dataset(data, tokenizer)
    collate = EpisodeCollator(tokenizer.pad_token_id)
    optimizers = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
                  for m in (reference, sharded)]
    losses = []
    for step in range(steps):
        batch = [episodes[i] for i in range(step * global_batch, (step + 1) * global_batch)]
        local = batch[rank * (global_batch // world):(rank + 1) * (global_batch // world)]
        step_losses = []
        for model, optimizer, rows_ in zip((reference, sharded), optimizers, (batch, local)):
            inputs = collate(rows_)
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            action_mask=inputs["action_mask"])
            loss, _ = ilql_loss(outputs, inputs["input_ids"], inputs["attention_mask"], inputs["action_mask"],
                                inputs["rewards"], inputs["dones"], bc_weight=1.0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            model.update_target_heads(0.1)
            if model is sharded:  # the global batch's loss: the mean of the processes' losses
                loss = loss.detach().clone()
                dist.all_reduce(loss)
                loss = loss / world
            step_losses.append(float(loss))
        losses.append(step_losses)
    full = {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone().contiguous()
            for name, p in sharded.state_dict().items()}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fsdp1_polyak(reference, out_dir, rank)
    save_file(full, str(Path(out_dir, f"weights-rank{rank}.safetensors")))
    save_file({n: p.detach().clone().contiguous() for n, p in reference.state_dict().items()},
              str(Path(out_dir, f"reference-rank{rank}.safetensors")))
    if rank == 0:
        Path(out_dir, "log.json").write_text(json.dumps({"world_size": world, "losses": losses}))  # [reference, sharded]


def fsdp1_polyak(model, out_dir: str, rank: int) -> None:
    """The trainers' Polyak callback on an FSDP1 model (flat parameters, whose shards of online and
    target heads need not line up): writes the gathered heads before and after one update."""
    import copy
    from types import SimpleNamespace

    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from lmrl.trainers import TargetUpdateCallback

    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.state_dict().items() if "q_heads" in n}
    wrapped = FSDP(model, device_id=torch.device("cpu"), use_orig_params=True)
    callback = TargetUpdateCallback(0.3, 1, trainer=SimpleNamespace(model_wrapped=wrapped))
    callback.on_step_end(None, SimpleNamespace(global_step=1), None, model=model)
    with FSDP.summon_full_params(wrapped):
        after = {n: p.detach().clone().contiguous() for n, p in model.state_dict().items() if "q_heads" in n}
    save_file({**{f"before.{n}": p.contiguous() for n, p in before.items()}, **{f"after.{n}": p for n, p in after.items()}},
              str(Path(out_dir, f"fsdp1-rank{rank}.safetensors")))


def trained_weights(trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {name: p.detach().clone().contiguous() for name, p in model.state_dict().items()}


def main(algorithm: str, out_dir: str, global_batch: int, steps: int) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(1)
    out_dir = str(Path(out_dir, algorithm))
    trainer = build(algorithm, str(Path(out_dir, "run")), global_batch // world, steps)
    trainer.train()
    rank = trainer.args.process_index
    save_file(trained_weights(trainer), str(Path(out_dir, f"weights-rank{rank}.safetensors")))
    if trainer.is_world_process_zero():
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        Path(out_dir, "log.json").write_text(json.dumps({"world_size": trainer.args.world_size, "logs": logs}))


if __name__ == "__main__":
    names, out, batch, n_steps = sys.argv[1:5]
    for name in names.split(","):
        if name == "fsdp2":
            fsdp2_ilql(str(Path(out, name)), int(batch), int(n_steps))
        else:
            main(name, out, int(batch), int(n_steps))
    if torch.distributed.is_initialized():  # gloo's threads end before the interpreter's teardown does
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
