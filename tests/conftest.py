import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import logging  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

class _DeprecationRecords(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        if "deprecat" in record.getMessage().lower():
            self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_deprecation_logged_by_transformers():
    """transformers announces renames in its log (e.g. `past_key_values` -> `cache` in 5.24), not only as
    warnings: any such message during a test is an error, so lmrl never lags behind the installed release."""
    handler = _DeprecationRecords()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    assert not handler.messages, f"transformers logged a deprecation: {handler.messages}"


DOOR_TEXTS = ["Pick a door: red door blue door green door. Which one? The red one, the blue one."] * 8


@pytest.fixture(scope="session")
def tokenizer():
    from lmrl.models.tiny import train_tokenizer

    return train_tokenizer(DOOR_TEXTS, vocab_size=300)


@pytest.fixture(scope="session")
def chat_tokenizer():
    from lmrl.models.tiny import CHAT_TEMPLATE, train_tokenizer

    return train_tokenizer(DOOR_TEXTS + ["user assistant system"], vocab_size=300, chat_template=CHAT_TEMPLATE)


def train_and_evaluate(recipe, overrides: list[str], episodes: int) -> dict:
    """Train a shipped recipe (with `--field value` overrides), save it and evaluate it online."""
    from transformers import set_seed

    from lmrl.api import build_trainer
    from lmrl.evaluation import evaluate_checkpoint, format_score_line
    from lmrl.recipes import parse_recipe, read_recipe

    script, config = parse_recipe(read_recipe(recipe, ["--disable_tqdm", "true", *overrides]))
    set_seed(0)
    trainer = build_trainer(script, config)
    trainer.train()
    trainer.save_model()
    report = evaluate_checkpoint(script, config, config.output_dir, episodes=episodes, progress=False)
    print(format_score_line(report))
    return report
