"""Timing helpers shared by the benchmark scripts: alternated runs, medians, machine facts."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(variants: dict[str, Callable[[], object]], repeats: int, device: torch.device,
              warmup: int = 1, contexts: dict[str, Callable[[], AbstractContextManager]] | None = None,
              ) -> dict[str, list[float]]:
    """Run the variants round-robin `repeats` times (after `warmup` rounds); seconds per run.

    Alternating inside one run exposes every variant to the same machine noise, so
    their ratio is meaningful even on a shared, noisy machine. `contexts[name]()`, if
    given, is entered around the variant's run but outside the timed region (e.g.
    installing processors once per generation, not once per step).
    """
    contexts = contexts or {}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(warmup + repeats):
        for name, fn in variants.items():
            with contexts.get(name, nullcontext)():
                synchronize(device)
                start = time.perf_counter()
                fn()
                synchronize(device)
                elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios (each round ran both back to back)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
