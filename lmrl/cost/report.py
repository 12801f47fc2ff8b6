"""Rows of the benchmark, the markdown table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers

MIB = 2**20


@dataclass
class Target:
    """A target on a row: `on` ("ratio", "memory_ratio", or "value", the row's own figure) must be <= `limit`
    (>= with `at_least`)."""

    on: str
    limit: float
    at_least: bool = False

    def describe(self, row: Row, judge: bool) -> str:
        name = {"ratio": "time" if row.unit == "tok/s" else "params", "memory_ratio": "memory", "value": row.unit}
        text = f"{name[self.on]} {'>=' if self.at_least else '<='} {self.limit:g}"
        value = getattr(row, self.on)
        if judge and value is not None:
            met = value >= self.limit if self.at_least else value <= self.limit
            text += " (met)" if met else " (MISSED)"
        return text


@dataclass
class Row:
    """One line of the table. `value` is tokens/s or parameters; `ratio` is time (or parameters) relative to
    the section's baseline, the median over rounds of the per-round ratio; memory in bytes."""

    shape: str
    section: str
    variant: str
    value: float
    unit: str  # "tok/s", "params", "bytes/token", "turns/s" or "tokens"
    ratio: float | None = None
    seconds: float | None = None  # median time per call
    memory: int | None = None  # peak of one training step
    memory_ratio: float | None = None
    backward_memory: int | None = None  # most held by forward + backward above the weights and optimizer state
    target: Target | None = None
    samples: list[float] | None = None  # seconds per call, one per round
    ratio_interval: tuple[float, float] | None = None  # 95% bootstrap interval of `ratio` over the rounds

    def markdown(self, judge: bool) -> str:
        if self.unit == "params":
            value = f"{int(self.value):,}"
        elif self.unit == "bytes/token":
            value = f"{self.value:,.1f} bytes/token"
        elif self.seconds is None:  # a count, e.g. tokens
            value = f"{self.value:,.0f} {self.unit}"
        else:
            value = f"{self.value:,.1f} {self.unit} ({self.seconds * 1e3:,.0f} ms)"
        cells = [
            self.shape, self.section, self.variant, value, _ratio(self.ratio, self.ratio_interval),
            _mib(self.memory), _number(self.memory_ratio), _mib(self.backward_memory),
            "" if self.target is None else self.target.describe(self, judge),
        ]
        return "| " + " | ".join(cells) + " |"


def _mib(size: int | None) -> str:
    if size is None:
        return ""
    return f"{size / MIB:,.0f} MiB" if size >= 100 * MIB else f"{size / MIB:.1f} MiB"


def _number(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _ratio(x: float | None, interval: tuple[float, float] | None) -> str:
    return _number(x) + ("" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]")


def table(rows: list[Row], judge: bool) -> str:
    lines = ["| shape | measure | variant | value | ratio [95% CI] | peak memory | memory ratio | fwd+bwd memory | target |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    return "\n".join(lines + [row.markdown(judge) for row in rows])


def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def write_json(path: Path, report: dict, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
