"""Deterministic DDIM (η = 0) sampling and inversion, and an on-disk cache of inversions.

The math is a handful of pure functions of (latent, model output, alphas); the
model is passed in as `denoise(latents, t) -> model output`, so the same code
serves SD 1.x/2.x (ε- and v-prediction) and SDXL.

An inversion walks the generation timesteps backwards. Where the UNet is evaluated
is a convention (`INVERSION_RULES`, the style-injection conventions' names):

* `gen` (and diffusers' `DDIMInverseScheduler`): at timestep t the UNet is fed the
  latent of the previous (less noisy) level, labelled t, and the step moves that
  latent up to level t; a v-prediction becomes ε with the model's own level ᾱ_t.
* `port` (StyleID's diffusers port, `invert_process`): the same evaluation point;
  the step starts from ᾱ at max(0, t − train_timesteps // steps) and a v-prediction
  becomes ε with that less noisy level, as the port and `DDIMInverseScheduler` do.
* `original` (StyleID's LDM script, `DDIMSampler.encode_ddim`/`reverse_ddim`): the
  UNet is fed (x_t, t) on the grid itself — the clean latent counts as level t_min —
  and the last step goes one level further, to the last training timestep (999).

The UNet inputs are what the style-injection method needs again later, so they are
what a `Trajectory` keeps (a few MB per image, not GBs of attention features).
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
    train_timesteps: int = 1000  # the scheduler's num_train_timesteps

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
    return DDIMSchedule(tuple(int(t) for t in ddim.timesteps), alphas, final, ddim.config.prediction_type,
                        int(ddim.config.num_train_timesteps))


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


INVERSION_RULES = ("gen", "original", "port")


@dataclass(frozen=True)
class InversionStep:
    """One inversion step: evaluate the UNet at timesteps[index], move from ᾱ_from up to ᾱ_to."""

    index: int  # into DDIMSchedule.timesteps
    alpha_from: float
    alpha_to: float
    alpha_v: float  # the level a v-prediction is turned into ε with


def inversion_steps(schedule: DDIMSchedule, rule: str = "gen") -> list[InversionStep]:
    """The inversion's steps in the order they run (ascending noise), under one of `INVERSION_RULES`."""
    if rule not in INVERSION_RULES:
        raise ValueError(f"unknown inversion rule {rule!r}; choose one of {', '.join(INVERSION_RULES)}")
    timesteps, alphas = schedule.timesteps, schedule.alphas_cumprod
    stride = schedule.train_timesteps // len(timesteps)
    steps = []
    for index in range(len(timesteps) - 1, -1, -1):
        t = timesteps[index]
        if rule == "original":
            up = timesteps[index - 1] if index > 0 else schedule.train_timesteps - 1
            steps.append(InversionStep(index, alphas[t], alphas[up], alphas[t]))
        elif rule == "port":
            below = alphas[max(0, t - stride)]
            steps.append(InversionStep(index, below, alphas[t], below))
        else:
            steps.append(InversionStep(index, schedule.alpha(schedule.previous(index)), alphas[t], alphas[t]))
    return steps


# ----------------------------------------------------------------------------- trajectories


@dataclass
class Trajectory:
    """What an inversion leaves: the UNet input at every timestep, and the final noisy latent."""

    timesteps: tuple[int, ...]  # generation order (descending)
    inputs: torch.Tensor  # (steps, C, h, w): inputs[i] was fed to the UNet at timesteps[i]
    final: torch.Tensor  # (C, h, w): the latent at the noisiest level, where generation starts
    rule: str = "gen"  # the inversion rule that made it (one of INVERSION_RULES)

    def input_at(self, index: int) -> torch.Tensor:
        return self.inputs[index]

    def latent_after(self, index: int) -> torch.Tensor:
        """The latent at the level that generation step `index` moves to (used for masked blending)."""
        if self.rule == "original":  # inputs[i] is the latent of level timesteps[i] itself
            return self.inputs[min(index + 1, len(self.inputs) - 1)]
        return self.inputs[index]  # inputs[i] is the latent of level previous(i)

    @property
    def nbytes(self) -> int:
        return self.inputs.numel() * self.inputs.element_size() + self.final.numel() * self.final.element_size()


def ddim_invert(
    denoise: Denoise,
    latents: torch.Tensor,
    schedule: DDIMSchedule,
    replay: torch.Tensor | None = None,
    on_step: Callable[[int, int], None] | None = None,
    rule: str = "gen",
) -> list[Trajectory]:
    """Invert a batch of clean latents under one of `INVERSION_RULES`; one `Trajectory` per batch row.

    `replay` (rows, steps, C, h, w), if given, holds the recorded UNet inputs of
    earlier inversions: those rows ride along in the same batched UNet calls (so
    their features can be recorded again) without being inverted anew.
    """
    x = latents
    inputs: list[torch.Tensor] = [None] * len(schedule.timesteps)  # type: ignore[list-item]
    for done, step in enumerate(inversion_steps(schedule, rule)):
        inputs[step.index] = x
        batch = x if replay is None else torch.cat([x, replay[:, step.index].to(x)])
        output = denoise(batch, schedule.timesteps[step.index])[: x.shape[0]]
        eps = predicted_noise(output, x, step.alpha_v, schedule.prediction_type)
        x = ddim_move(x, eps, step.alpha_from, step.alpha_to)
        if on_step:
            on_step(done + 1, len(schedule.timesteps))
    stacked = torch.stack(inputs, dim=1)  # (batch, steps, C, h, w)
    return [Trajectory(schedule.timesteps, stacked[b], x[b], rule) for b in range(x.shape[0])]


# ----------------------------------------------------------------------------- cache


def inversion_key(image_digest: str, model_fingerprint: str, steps: int, width: int, height: int,
                  dtype: str, device_type: str, rule: str = "gen") -> str:
    """A cache key: anything that changes the inversion changes the key (gen's keys predate rules)."""
    fields = [image_digest, model_fingerprint, steps, width, height, dtype, device_type]
    fields = json.dumps(fields if rule == "gen" else fields + [rule])
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
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        path = self._path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            with safe_open(str(path), "pt") as handle:
                rule = (handle.metadata() or {}).get("rule", "gen")
            if rule not in INVERSION_RULES:
                raise KeyError(rule)
            trajectory = Trajectory(tuple(int(t) for t in tensors["timesteps"].tolist()), tensors["inputs"],
                                    tensors["final"], rule)
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
        metadata = {"description": json.dumps(description or {}), "rule": trajectory.rule}
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
