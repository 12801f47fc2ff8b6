"""Chunked, fused cross-entropy over a vocabulary (lmrl.losses.vocab) against the plain computation."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from lmrl.losses import ProjectedLogits, bc_loss, cql_loss, vocab_cross_entropy

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
    """Records the largest tensor any operation returns."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
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
