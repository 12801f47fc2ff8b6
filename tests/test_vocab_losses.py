"""Chunked, fused cross-entropy over a vocabulary (lmrl.losses.vocab) against the plain computation."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from lmrl.losses import ProjectedLogits, bc_loss, cql_loss, vocab_cross_entropy
from lmrl.ops.vocab import chunks_needed, materialized_bytes

N, D, V = 7, 5, 11


def factors(seed=0, bias=True):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(N, D, generator=generator, requires_grad=True)
    weight = torch.randn(V, D, generator=generator, requires_grad=True)
    b = torch.randn(V, generator=generator, requires_grad=True) if bias else None
    targets = torch.randint(0, V, (N,), generator=generator)
    return features, weight, b, targets


def grads(loss, tensors):
    return torch.autograd.grad(loss, [t for t in tensors if t is not None and t.requires_grad])


@pytest.mark.parametrize("chunk_size", [1, 3, N, 100, 0])
@pytest.mark.parametrize("bias", [True, False])
def test_chunked_cross_entropy_has_the_values_and_gradients_of_the_materialized_one(chunk_size, bias):
    features, weight, b, targets = factors(bias=bias)
    plain = F.cross_entropy(F.linear(features, weight, b), targets)
    chunked = vocab_cross_entropy(ProjectedLogits(features, weight, b), targets, chunk_size=chunk_size)
    torch.testing.assert_close(chunked, plain)
    for got, want in zip(grads(chunked, (features, weight, b)), grads(plain, (features, weight, b))):
        torch.testing.assert_close(got, want)


def test_weighted_chunked_cross_entropy_matches_and_does_not_train_the_weights():
    features, weight, b, targets = factors(seed=1)
    weights = torch.rand(N, requires_grad=True)
    plain = (weights.detach() * F.cross_entropy(F.linear(features, weight, b), targets, reduction="none")).mean()
    chunked = vocab_cross_entropy(ProjectedLogits(features, weight, b), targets, weights, chunk_size=2)
    torch.testing.assert_close(chunked, plain)
    chunked.backward()
    assert weights.grad is None
    want = grads(plain, (features, weight, b))
    torch.testing.assert_close(features.grad, want[0])
    torch.testing.assert_close(weight.grad, want[1])


def test_a_detached_projection_gets_no_gradient_but_features_and_bias_do():
    """Tied Q heads: the LM's output embedding is read, never trained, by the CQL term."""
    features, weight, b, targets = factors(seed=2)
    loss = vocab_cross_entropy(ProjectedLogits(features, weight.detach(), b), targets, chunk_size=3)
    (loss * 2.0).backward()  # the incoming gradient scales the chunk gradients taken in the forward
    assert weight.grad is None
    plain = 2.0 * F.cross_entropy(F.linear(features, weight.detach(), b), targets)
    want = grads(plain, (features, b))
    torch.testing.assert_close(features.grad, want[0])
    torch.testing.assert_close(b.grad, want[1])


def test_without_gradients_the_chunked_value_is_the_same():
    features, weight, b, targets = factors(seed=3)
    with torch.no_grad():
        value = vocab_cross_entropy(ProjectedLogits(features, weight, b), targets, chunk_size=2)
        assert value == pytest.approx(F.cross_entropy(F.linear(features, weight, b), targets).item(), rel=1e-6)


def test_cql_and_bc_losses_accept_factored_logits():
    features, weight, b, targets = factors(seed=4)
    heads = [ProjectedLogits(features, weight.detach(), b), ProjectedLogits(features * 2, weight.detach(), b)]
    materialized = torch.stack([h.materialize() for h in heads])
    torch.testing.assert_close(cql_loss(heads, targets, chunk_size=2), cql_loss(materialized, targets))
    torch.testing.assert_close(bc_loss(heads[0], targets, chunk_size=2), bc_loss(heads[0].materialize(), targets))


def test_no_tokens_gives_zero_not_nan():
    empty = ProjectedLogits(torch.zeros(0, D, requires_grad=True), torch.randn(V, D))
    assert vocab_cross_entropy(empty, torch.zeros(0, dtype=torch.long)).item() == 0.0
    assert vocab_cross_entropy(torch.zeros(0, V), torch.zeros(0, dtype=torch.long)).item() == 0.0


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation returns, and the sizes of those that new tensors hold."""

    def __init__(self):
        super().__init__()
        self.numel = 0
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
                if not func.__name__.split(".")[0].endswith("_"):  # in-place operations return their input
                    self.sizes.append(t.numel())
        return out


def test_forward_and_backward_never_hold_more_than_one_chunk_of_logits():
    rows, vocab, chunk = 64, 1000, 8
    features = torch.randn(rows, 16, requires_grad=True)
    weight = torch.randn(vocab, 16, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    with LargestTensor() as plain:
        F.cross_entropy(F.linear(features, weight), targets).backward()
    with LargestTensor() as chunked:
        vocab_cross_entropy(ProjectedLogits(features, weight), targets, chunk_size=chunk).backward()
    assert plain.numel >= rows * vocab
    assert chunked.numel == max(chunk * vocab, weight.numel())  # one chunk of logits, or the weight's gradient


def test_a_second_backward_through_the_fused_loss_is_refused_in_words():
    features, weight, b, targets = factors(seed=5)
    loss = vocab_cross_entropy(ProjectedLogits(features, weight, b), targets, chunk_size=2)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="chunk_size=0"):
        loss.backward()


@pytest.mark.parametrize("bias", [True, False])
def test_the_budget_path_and_the_chunked_path_give_the_same_loss_and_gradients(bias):
    """By default a cross-entropy that fits the memory budget is materialized; one that does not is chunked."""
    features, weight, b, targets = factors(seed=3, bias=bias)
    weights = torch.rand(N, generator=torch.Generator().manual_seed(4))
    logits = ProjectedLogits(features, weight, b)
    fits = vocab_cross_entropy(logits, targets, weights)  # the default budget: 7 x 11 logits fit
    chunked = vocab_cross_entropy(logits, targets, weights, memory_budget=0)  # nothing fits
    torch.testing.assert_close(fits, chunked)
    for got, want in zip(grads(fits, (features, weight, b)), grads(chunked, (features, weight, b))):
        torch.testing.assert_close(got, want)


def test_logits_are_materialized_when_they_fit_the_budget_and_chunked_when_not():
    rows, vocab = 64, 1000
    features = torch.randn(rows, 16, requires_grad=True)
    weight = torch.randn(vocab, 16, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    logits = ProjectedLogits(features, weight)
    plain_peak = materialized_bytes(rows, vocab)  # 768,000 bytes
    assert plain_peak == 3 * 4 * rows * vocab
    for budget, chunk_size, whole in [(plain_peak, None, True), (plain_peak - 1, None, False),
                                      (10**9, 64, False), (0, 0, True)]:
        assert chunks_needed(logits, chunk_size, budget) is not whole
        with LargestTensor() as seen:
            vocab_cross_entropy(logits, targets, chunk_size=chunk_size, memory_budget=budget).backward()
        logit_sized = sum(size == rows * vocab for size in seen.sizes)  # the chunked path: one, used in place
        assert (logit_sized >= 3) is whole, (budget, chunk_size, logit_sized)
    assert not chunks_needed(logits.materialize(), None, 0)  # logits given whole stay whole


def test_the_memory_budget_is_a_validated_config_field(tmp_path):
    from lmrl.trainers.base import LMRLConfig

    assert LMRLConfig(output_dir=str(tmp_path), loss_memory_budget_mb=1).loss_memory_budget == 2**20
    assert LMRLConfig(output_dir=str(tmp_path)).loss_memory_budget_mb == 256
    with pytest.raises(ValueError, match="loss_memory_budget_mb must be >= 0"):
        LMRLConfig(output_dir=str(tmp_path), loss_memory_budget_mb=-1)
