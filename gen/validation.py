"""Checks of user-supplied generation settings, shared by the jobs, the pipelines and the UI.

Each raises `FieldError` (or `GenError`) with what was wrong and what is allowed; `field` is the
setting's name in gen.jobs (each face renders it as its user knows it).
"""

from __future__ import annotations

import math

from gen.errors import FieldError

MIN_SIDE = 64
MAX_SIDE = 4096
MAX_STEPS = 500  # schedulers with steps_offset break at their full 1000 training steps
MAX_SEED = 2**32 - 1


def nearest_multiples(value: int, multiple: int) -> tuple[int, int]:
    """The multiples of `multiple` just below and just above `value`."""
    below = value // multiple * multiple
    return below, below + multiple


def check_side(field: str, value: int, multiple: int = 8, lo: int = MIN_SIDE, hi: int = MAX_SIDE) -> None:
    """One image side: within [lo, hi] and a multiple of the model's size step."""
    if value < lo or value > hi:
        raise FieldError(field, f"{{name}} {value} is out of range; allowed: {lo} to {hi} pixels")
    if value % multiple:
        below, above = nearest_multiples(value, multiple)
        options = " or ".join(str(v) for v in (below, above) if lo <= v <= hi)
        raise FieldError(field, f"{{name}} {value} is not a multiple of {multiple}; nearest valid: {options}")


def check_size(width: int, height: int, multiple: int = 8, lo: int = MIN_SIDE, hi: int = MAX_SIDE) -> None:
    check_side("width", width, multiple, lo, hi)
    check_side("height", height, multiple, lo, hi)


def check_range(field: str, value: float, lo: float, hi: float, what: str = "") -> None:
    """lo <= value <= hi, and finite (NaN and infinities are refused by name)."""
    if not (math.isfinite(value) and lo <= value <= hi):
        raise FieldError(field, f"{{name}}{what} must be between {lo:g} and {hi:g}, got {value}")


def check_finite(field: str, value: float, what: str = "") -> None:
    """NaN and infinities are refused by name (they would reach the model, or JSON, as garbage)."""
    if not math.isfinite(value):
        raise FieldError(field, f"{{name}}{what} must be a finite number, got {value}")


def check_positive(field: str, value: float) -> None:
    """value > 0 and finite."""
    check_finite(field, value)
    if not value > 0:
        raise FieldError(field, f"{{name}} must be > 0, got {value}")


def check_steps(steps: int, field: str = "steps") -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise FieldError(field, f"{{name}} must be between 1 and {MAX_STEPS}, got {steps}")


def check_guidance(guidance: float, field: str = "guidance") -> None:
    check_range(field, guidance, 0.0, 50.0)


def check_seed(seed: int, field: str = "seed") -> None:
    if not 0 <= seed <= MAX_SEED:
        raise FieldError(field, f"{{name}} must be between 0 and {MAX_SEED}, got {seed}")


def check_batch(count: int, limit: int = 1000) -> None:
    if not 1 <= count <= limit:
        raise FieldError("batch", f"{{name}} must be between 1 and {limit}, got {count}")


def check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise FieldError(field, f"{{name}} must be one of {', '.join(choices)}, got {value!r}")


def parse_weighted_path(spec: str) -> tuple[str, float]:
    """`style.png` → (style.png, 1.0); `style.png:0.3` → (style.png, 0.3). Used for styles and LoRAs."""
    path, sep, suffix = spec.rpartition(":")
    if sep:
        try:
            return path, float(suffix)
        except ValueError:
            pass
    return spec, 1.0


def check_radial_settings(dense_layers: int | None = None, dense_steps: int | None = None,
                          dense_final_steps: int | None = None, decay: float | None = None) -> None:
    """Radial attention's warm-up counts (>= 0) and decay (> 0, finite); None is left to the model's default."""
    for field, value in (("dense_layers", dense_layers), ("dense_steps", dense_steps),
                         ("dense_final_steps", dense_final_steps)):
        if value is not None and value < 0:
            raise FieldError(field, f"{{name}} must be >= 0, got {value}")
    if decay is not None:
        check_positive("decay", decay)

