"""A small ILQL job that tests/test_resume.py runs in its own process, so that it can be killed.

    python tests/resume_job.py OUTPUT_DIR DATASET [--resume] [--hang-while-saving STEP]

Trains the doors recipe (tiny GPT-2) for 12 optimizer steps of 8 episodes with a checkpoint every 4
steps, and appends, for each step, a digest of the batch it trained on to OUTPUT_DIR/data_order.jsonl.
`--resume` resumes from the last complete checkpoint (`resume_from_checkpoint=True`).
`--hang-while-saving STEP` stops in the middle of writing checkpoint STEP (after the weights and the
optimizer state, before the RNG and trainer states), creates OUTPUT_DIR/hanging and waits to be killed.
"""

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from lmrl.api import build_trainer
from lmrl.recipes import parse_recipe, read_recipe  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "doors_ilql.yaml"
STEPS, SAVE_STEPS, BATCH = 12, 4, 8


def build_job(out: Path, dataset: str, *overrides: str):
    """The job's trainer (recipe fields can be overridden, e.g. "--head_type", "untied")."""
    fields = ["--output_dir", str(out), "--dataset", dataset, "--max_steps", str(STEPS), "--save_strategy", "steps",
              "--save_steps", str(SAVE_STEPS), "--per_device_train_batch_size", str(BATCH), "--logging_steps", "2",
              "--disable_tqdm", "true", *overrides]
    script, config = parse_recipe(read_recipe(RECIPE, fields))
    return build_trainer(script, config)


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    out, dataset = Path(argv[0]), argv[1]
    hang_at = int(argv[argv.index("--hang-while-saving") + 1]) if "--hang-while-saving" in argv else None
    trainer = build_job(out, dataset, *(["--resume_from_checkpoint", "true"] if "--resume" in argv else []))

    out.mkdir(parents=True, exist_ok=True)
    order = (out / "data_order.jsonl").open("a")
    compute_loss = trainer.compute_loss

    def compute_loss_and_log_the_batch(model, inputs, *args, **kwargs):
        if model.training:
            digest = hashlib.sha256(inputs["input_ids"].numpy().tobytes()).hexdigest()[:16]
            order.write(json.dumps({"step": trainer.state.global_step + 1, "batch": digest}) + "\n")
            order.flush()
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = compute_loss_and_log_the_batch
    if hang_at is not None:
        save_rng_state = trainer._save_rng_state

        def hang_while_saving(output_dir):
            if trainer.state.global_step == hang_at:
                (out / "hanging").write_text(output_dir)
                print("hanging", flush=True)  # the test waits for this line
                threading.Event().wait()  # stuck mid-save until the test kills the process
            save_rng_state(output_dir)

        trainer._save_rng_state = hang_while_saving
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    trainer.save_model()


if __name__ == "__main__":
    main(sys.argv[1:])
