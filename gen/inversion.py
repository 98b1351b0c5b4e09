"""Deterministic DDIM (η = 0) sampling and inversion, and an on-disk cache of inversions.

The math is a handful of pure functions of (latent, model output, alphas); the
model is passed in as `denoise(latents, t) -> model output`, so the same code
serves SD 1.x/2.x (ε- and v-prediction) and SDXL.

An inversion walks the generation timesteps backwards. At timestep t the UNet is
fed the latent of the previous (less noisy) level, labelled t; those inputs are
what the style-injection method needs again later, so they are what a
`Trajectory` keeps (a few MB per image, not GBs of attention features).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

Denoise = Callable[[torch.Tensor, int], torch.Tensor]


# ----------------------------------------------------------------------------- math


@dataclass(frozen=True)
class DDIMSchedule:
    """Generation timesteps (descending) and the cumulative alphas they index."""

    timesteps: tuple[int, ...]
    alphas_cumprod: tuple[float, ...]
    final_alpha: float  # the alpha of the clean end of the chain
    prediction_type: str = "epsilon"

    def alpha(self, t: int) -> float:
        return self.alphas_cumprod[t] if t >= 0 else self.final_alpha

    def previous(self, index: int) -> int:
        """The timestep after `timesteps[index]` in generation order (-1: the clean end)."""
        return self.timesteps[index + 1] if index + 1 < len(self.timesteps) else -1


def ddim_schedule(scheduler_config, steps: int) -> DDIMSchedule:
    """The DDIM schedule for a model's scheduler config (its betas, offset and spacing)."""
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(scheduler_config)
    ddim.set_timesteps(steps)
    alphas = tuple(float(a) for a in ddim.alphas_cumprod.double())
    final = 1.0 if ddim.config.set_alpha_to_one else alphas[0]
    return DDIMSchedule(tuple(int(t) for t in ddim.timesteps), alphas, final, ddim.config.prediction_type)


def predicted_noise(model_output: torch.Tensor, x: torch.Tensor, alpha: float, prediction_type: str) -> torch.Tensor:
    """ε from the model output: ε itself, or from v = √ᾱ·ε − √(1−ᾱ)·x₀."""
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        return math.sqrt(alpha) * model_output + math.sqrt(1 - alpha) * x
    raise ValueError(f"unsupported prediction type {prediction_type!r}")


def ddim_move(x: torch.Tensor, eps: torch.Tensor, alpha_from: float, alpha_to: float) -> torch.Tensor:
    """Move a latent along the deterministic DDIM path from noise level ᾱ_from to ᾱ_to."""
    x0 = (x - math.sqrt(1 - alpha_from) * eps) / math.sqrt(alpha_from)
    return math.sqrt(alpha_to) * x0 + math.sqrt(1 - alpha_to) * eps


def ddim_step(schedule: DDIMSchedule, index: int, x: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
    """One generation step: from timesteps[index] to the next, less noisy, level."""
    t = schedule.timesteps[index]
    eps = predicted_noise(model_output, x, schedule.alpha(t), schedule.prediction_type)
    return ddim_move(x, eps, schedule.alpha(t), schedule.alpha(schedule.previous(index)))


def ddim_inverse_step(schedule: DDIMSchedule, index: int, x: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
    """One inversion step, the mirror of `ddim_step`: from the level after timesteps[index] up to it."""
    t = schedule.timesteps[index]
    eps = predicted_noise(model_output, x, schedule.alpha(t), schedule.prediction_type)
    return ddim_move(x, eps, schedule.alpha(schedule.previous(index)), schedule.alpha(t))


# ----------------------------------------------------------------------------- trajectories


@dataclass
class Trajectory:
    """What an inversion leaves: the UNet input at every timestep, and the final noisy latent."""

    timesteps: tuple[int, ...]  # generation order (descending)
    inputs: torch.Tensor  # (steps, C, h, w): inputs[i] was fed to the UNet at timesteps[i]
    final: torch.Tensor  # (C, h, w): the latent at the noisiest level, where generation starts

    def input_at(self, index: int) -> torch.Tensor:
        return self.inputs[index]

    def latent_after(self, index: int) -> torch.Tensor:
        """The latent at the level that generation step `index` moves to (used for masked blending)."""
        # The inversion fed the latent of level previous(index) to the UNet at timesteps[index].
        return self.inputs[index]

    @property
    def nbytes(self) -> int:
        return self.inputs.numel() * self.inputs.element_size() + self.final.numel() * self.final.element_size()


def ddim_invert(
    denoise: Denoise,
    latents: torch.Tensor,
    schedule: DDIMSchedule,
    replay: torch.Tensor | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[Trajectory]:
    """Invert a batch of clean latents; one `Trajectory` per batch row.

    `replay` (rows, steps, C, h, w), if given, holds the recorded UNet inputs of
    earlier inversions: those rows ride along in the same batched UNet calls (so
    their features can be recorded again) without being inverted anew.
    """
    x = latents
    inputs: list[torch.Tensor] = [None] * len(schedule.timesteps)  # type: ignore[list-item]
    ascending = range(len(schedule.timesteps) - 1, -1, -1)
    for done, index in enumerate(ascending):
        inputs[index] = x
        batch = x if replay is None else torch.cat([x, replay[:, index].to(x)])
        output = denoise(batch, schedule.timesteps[index])[: x.shape[0]]
        x = ddim_inverse_step(schedule, index, x, output)
        if on_step:
            on_step(done + 1, len(schedule.timesteps))
    stacked = torch.stack(inputs, dim=1)  # (batch, steps, C, h, w)
    return [Trajectory(schedule.timesteps, stacked[b], x[b]) for b in range(x.shape[0])]


# ----------------------------------------------------------------------------- cache


def inversion_key(image_digest: str, model_fingerprint: str, steps: int, width: int, height: int,
                  dtype: str, device_type: str) -> str:
    """A cache key: anything that changes the inversion changes the key."""
    fields = json.dumps([image_digest, model_fingerprint, steps, width, height, dtype, device_type])
    return hashlib.sha256(fields.encode()).hexdigest()[:32]


class InversionCache:
    """Inversions on disk as safetensors, least recently used evicted past a size cap."""

    def __init__(self, root: str | Path, max_bytes: int = 2 * 2**30):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"invalid cache key {key!r}")
        return self.root / f"{key}.safetensors"

    def get(self, key: str) -> Trajectory | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            trajectory = Trajectory(tuple(int(t) for t in tensors["timesteps"].tolist()), tensors["inputs"],
                                    tensors["final"])
        except (SafetensorError, KeyError, OSError, RuntimeError):
            path.unlink(missing_ok=True)  # a damaged entry is only a cache miss
            return None
        os.utime(path)  # recently used
        return trajectory

    def put(self, key: str, trajectory: Trajectory, description: dict | None = None) -> None:
        from safetensors.torch import save_file

        from gen.outputs import atomic_write

        self.root.mkdir(parents=True, exist_ok=True)
        tensors = {
            "timesteps": torch.tensor(trajectory.timesteps, dtype=torch.int64),
            "inputs": trajectory.inputs.detach().cpu().contiguous(),
            "final": trajectory.final.detach().cpu().contiguous(),
        }
        metadata = {"description": json.dumps(description or {})}
        atomic_write(self._path(key), lambda tmp: save_file(tensors, str(tmp), metadata=metadata), overwrite=True)
        self.evict()

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*.safetensors"), key=lambda p: p.stat().st_mtime) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def evict(self) -> list[Path]:
        """Remove least recently used entries until the cache fits its cap."""
        removed = []
        entries = self.entries()
        total = sum(p.stat().st_size for p in entries)
        while entries and total > self.max_bytes:
            oldest = entries.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
            removed.append(oldest)
        return removed

    def clear(self) -> int:
        entries = self.entries()
        for path in entries:
            path.unlink(missing_ok=True)
        return len(entries)


def default_inversion_cache() -> InversionCache:
    """The user's inversion cache: GEN_CACHE_DIR/inversions, capped by GEN_INVERSION_CACHE_MB (2048)."""
    from gen.errors import GenError
    from gen.paths import user_cache_dir

    raw = os.environ.get("GEN_INVERSION_CACHE_MB", "2048")
    try:
        megabytes = float(raw)
    except ValueError:
        raise GenError(f"GEN_INVERSION_CACHE_MB must be a number of megabytes, got {raw!r}") from None
    return InversionCache(user_cache_dir() / "inversions", int(megabytes * 2**20))
