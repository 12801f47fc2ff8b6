"""Quickstart: BC imitates the logged replies, ILQL learns the rewarded ones. CPU, under a minute.

    python examples/ilql_quickstart.py [--out runs/quickstart]

Builds a tiny GPT-2 from a config with a tokenizer trained on the data (swap in
`model = "gpt2"` and its tokenizer for a real run), trains BC and ILQL on the toy "doors" data,
decodes greedily, prints a table and writes a bar chart.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

from lmrl import BCConfig, BCTrainer, ILQLConfig, ILQLTrainer, encode_prompt  # noqa: E402
from lmrl.models.tiny import build_tiny  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from make_doors_data import CHOICES, doors_rows  # noqa: E402


def greedy_reply(model, tokenizer, prompt: str) -> str:
    ids = torch.tensor([encode_prompt(tokenizer, prompt)])
    out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/quickstart")
    parser.add_argument("--epochs", type=int, default=12)
    out = Path(parser.parse_args().out)
    epochs = parser.parse_args().epochs
    rows = doors_rows()
    common = dict(per_device_train_batch_size=16, learning_rate=1e-3, num_train_epochs=epochs, save_strategy="no",
                  report_to="none", logging_steps=50, seed=0, overwrite_output_dir=True)  # a rerun replaces its runs
    runs = {
        "BC": (BCTrainer, BCConfig(output_dir=str(out / "bc"), **common)),
        # guidance reweights the base policy's 90% nucleus: Q of tokens the data never shows in a state
        # (e.g. ending the reply before it starts) is an extrapolation, and CQL only partly reins it in
        "ILQL": (ILQLTrainer, ILQLConfig(output_dir=str(out / "ilql"), alpha=0.5, beta=8.0, guidance_top_p=0.9,
                                         **common)),
    }
    results = {}
    for name, (trainer_class, args) in runs.items():
        set_seed(0)
        model, tokenizer = build_tiny(rows, vocab_size=300)
        trainer = trainer_class(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
        trainer.train()
        trainer.save_model()
        model = trainer.model.eval()
        replies = {prompt: greedy_reply(model, tokenizer, prompt) for prompt in CHOICES}
        reward = sum(replies[p] == CHOICES[p][1] for p in CHOICES) / len(CHOICES)
        results[name] = (reward, replies)

    data_reward = sum(r["messages"][-1]["reward"] for r in rows) / len(rows)
    print(f"\nMean reward of the logged replies: {data_reward:.2f}\n")
    print("| algorithm | reward of greedy replies | " + " | ".join(CHOICES) + " |")
    print("|---|---|" + "---|" * len(CHOICES))
    for name, (reward, replies) in results.items():
        print(f"| {name} | {reward:.2f} | " + " | ".join(replies[p].strip() for p in CHOICES) + " |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    names = ["data", *results]
    ax.bar(names, [data_reward] + [results[n][0] for n in results], color=["grey", "tab:blue", "tab:orange"])
    ax.set_ylabel("mean reward")
    ax.set_ylim(0, 1.05)
    ax.set_title("Toy doors: imitation vs ILQL")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "quickstart.png", dpi=120)
    print(f"\nplot: {out / 'quickstart.png'}")


if __name__ == "__main__":
    main()
