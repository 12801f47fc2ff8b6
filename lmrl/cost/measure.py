"""Timing (interleaved rounds, medians) and peak memory of one step, on CPU or GPU."""

from __future__ import annotations

import random
import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

MEMORY_METHOD = {
    "cpu": "peak bytes of live tensor storages during one step (the variant's parameters and optimizer state, "
           "plus every tensor an operation creates: gradients, activations, temporaries), tracked with a "
           "TorchDispatchMode; the CPU counterpart of the CUDA allocator's peak. Not RSS, which also holds the "
           "interpreter, the libraries and the other variants' models",
    "cuda": "torch.cuda.max_memory_allocated during one step, minus what was allocated before it, plus the "
            "variant's own parameters and optimizer state",
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                warm_up: bool = True) -> dict[str, list[float]]:
    """Seconds per call of each variant: a warm-up call each (unless `warm_up=False`), then `repeats`
    rounds that run every variant once, back to back, so a slow-down of a shared machine hits all alike.
    Each round starts one variant further along (round r runs variants r, r+1, ...), so no variant is
    always the one that runs first, after another variant has filled the caches, or last."""
    if warm_up:
        for fn in variants.values():
            fn()
    names = list(variants)
    times = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            variants[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(samples: list[float], baseline: list[float]) -> float:
    """Median over rounds of sample / baseline measured in the same round."""
    return statistics.median(s / b for s, b in zip(samples, baseline))


def ratio_interval(samples: list[float], baseline: list[float], level: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """A `level` bootstrap interval of `median_ratio`: the rounds resampled with replacement. It says how far
    the ratio moves with the machine's noise (a 5% target needs an interval narrower than 5%)."""
    ratios = [s / b for s, b in zip(samples, baseline)]
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    tail = (1 - level) / 2
    return medians[int(tail * (resamples - 1))], medians[int(round((1 - tail) * (resamples - 1)))]


def resident_tensors(modules: list[nn.Module], optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The variant's parameters, buffers and optimizer state."""
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return [*(p for m in modules for p in m.parameters()), *(b for m in modules for b in m.buffers()), *state]


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors`."""
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def peak_step_memory(backward: Callable[[], None], update: Callable[[], None], resident: list[torch.Tensor],
                     device: torch.device) -> tuple[int, int]:
    """Peak bytes of one training step (see MEMORY_METHOD), and the most its forward + backward held above
    the `resident` tensors (weights, optimizer state): activations, logits, gradients so far. Run it after a
    warm-up step: on a first step the optimizer state does not exist yet during the backward."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        backward()
        synchronize(device)
        above = torch.cuda.max_memory_allocated(device) - before
        update()
        synchronize(device)
        return tensor_bytes(resident) + torch.cuda.max_memory_allocated(device) - before, above
    with LiveTensorMemory(resident) as tracker:
        start = tracker.current
        backward()
        above = tracker.peak - start
        update()
    return tracker.peak, above


class LiveTensorMemory(TorchDispatchMode):
    """Bytes of the live tensor storages: the `resident` tensors' and those that operations run inside
    it create; `peak` is the most at any moment."""

    def __init__(self, resident: list[torch.Tensor] = ()):
        super().__init__()
        self.live: dict[int, int] = {}  # storage address -> bytes
        self.current = self.peak = 0
        for t in resident:
            self._track(t.untyped_storage())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._track(t.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        address, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or address in self.live:
            return  # empty, or a view of a tensor already counted
        self.live[address] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, address)

    def _free(self, address: int) -> None:
        self.current -= self.live.pop(address, 0)
