"""The package's layers point down: models, losses and data never import generation, trainers or envs
(which import them), and the leaf `lmrl.ops` imports nothing else from lmrl."""

import ast
from pathlib import Path

import pytest

LMRL = Path(__file__).resolve().parents[1] / "lmrl"
UPPER = ("generation", "trainers", "envs")


def _lmrl_imports(path: Path, source: str | None = None) -> set[str]:
    """The lmrl subpackages a module imports, at the top or inside functions."""
    package = path.relative_to(LMRL.parent).with_suffix("").parts[:-1]  # e.g. ("lmrl", "models")
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1]) + (node.module.split(".") if node.module else [])
                names = [".".join(base + [alias.name]) for alias in node.names] if not node.module else [".".join(base)]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name.split(".")[1] for name in names if name.startswith("lmrl.") and name.count(".") >= 1}
    return found


def _modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (LMRL / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("models", "losses", "data"), ids=lambda p: str(p.relative_to(LMRL)))
def test_models_losses_and_data_import_nothing_from_the_layers_above(path):
    assert not _lmrl_imports(path) & set(UPPER), f"{path.relative_to(LMRL)} imports from {_lmrl_imports(path) & set(UPPER)}"


@pytest.mark.parametrize("path", _modules("ops"), ids=lambda p: str(p.relative_to(LMRL)))
def test_ops_is_a_leaf(path):
    assert _lmrl_imports(path) <= {"ops"}


def test_the_import_check_sees_relative_absolute_and_function_level_imports():
    source = "import lmrl.envs\ndef f():\n    from ..generation.guidance import guided_scores\n    from . import heads\n"
    assert _lmrl_imports(LMRL / "models" / "any.py", source) == {"envs", "generation", "models"}


def test_the_old_import_paths_still_work():
    from lmrl.generation.guidance import guided_scores, top_k_tokens
    from lmrl.losses.vocab import ProjectedLogits, vocab_cross_entropy
    from lmrl.ops import guidance, vocab

    assert guided_scores is guidance.guided_scores and top_k_tokens is guidance.top_k_tokens
    assert ProjectedLogits is vocab.ProjectedLogits and vocab_cross_entropy is vocab.vocab_cross_entropy
