"""Checks of user-supplied generation settings, shared by the CLI, the pipelines and the UI.

Each raises `GenError` with what was wrong and what is allowed.
"""

from __future__ import annotations

from gen.errors import GenError

MIN_SIDE = 64
MAX_SIDE = 4096
MAX_STEPS = 500  # schedulers with steps_offset break at their full 1000 training steps
MAX_SEED = 2**32 - 1


def nearest_multiples(value: int, multiple: int) -> tuple[int, int]:
    """The multiples of `multiple` just below and just above `value`."""
    below = value // multiple * multiple
    return below, below + multiple


def check_side(label: str, value: int, multiple: int = 8, lo: int = MIN_SIDE, hi: int = MAX_SIDE) -> None:
    """One image side: within [lo, hi] and a multiple of the model's size step."""
    if value < lo or value > hi:
        raise GenError(f"{label} {value} is out of range; allowed: {lo} to {hi} pixels")
    if value % multiple:
        below, above = nearest_multiples(value, multiple)
        options = " or ".join(str(v) for v in (below, above) if lo <= v <= hi)
        raise GenError(f"{label} {value} is not a multiple of {multiple}; nearest valid: {options}")


def check_size(width: int, height: int, multiple: int = 8, lo: int = MIN_SIDE, hi: int = MAX_SIDE) -> None:
    check_side("width", width, multiple, lo, hi)
    check_side("height", height, multiple, lo, hi)


def check_steps(steps: int) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise GenError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")


def check_guidance(guidance: float) -> None:
    if not 0.0 <= guidance <= 50.0 or guidance != guidance:
        raise GenError(f"guidance must be between 0 and 50, got {guidance}")


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise GenError(f"seed must be between 0 and {MAX_SEED}, got {seed}")


def check_batch(count: int, limit: int = 1000) -> None:
    if not 1 <= count <= limit:
        raise GenError(f"batch must be between 1 and {limit}, got {count}")


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
                          dense_final_steps: int | None = None, decay: float | None = None,
                          flags: bool = False) -> None:
    """Radial attention's warm-up counts (>= 0) and decay (> 0); None is left to the model's default.

    `flags` names them as the command line does (`--decay`), else as the Python API does (`decay`).
    """
    name = (lambda words: "--" + words.replace(" ", "-")) if flags else (lambda words: words)
    for words, value in (("dense layers", dense_layers), ("dense steps", dense_steps),
                         ("dense final steps", dense_final_steps)):
        if value is not None and value < 0:
            raise GenError(f"{name(words)} must be >= 0, got {value}")
    if decay is not None and not decay > 0:
        raise GenError(f"{name('decay')} must be > 0, got {decay}")
