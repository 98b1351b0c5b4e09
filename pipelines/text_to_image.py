"""Text-to-image at any size for SD 1.x/2.x and SDXL, with attention entropy scaling.

A thin composition of a stock diffusers pipeline with gen's attention processors:

    from pipelines import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained("sd15")          # or a hub id / folder / "tiny-sd"
    out = pipe("a lighthouse at dusk", width=1536, height=640, seed=7)
    out.images[0].save("lighthouse.png")

Each image comes from its own seed (`seed=[7, 8]` gives two), so any image can be
reproduced exactly from the seed recorded in its parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import gen
from gen.attention import dense_backend, entropy_scaling, entropy_scaling_active, resolve_backend
from gen.attention.entropy import ENTROPY_MODES
from gen.errors import GenError
from gen.loading import dtype_name
from gen.models import LoadedModel, load_pipeline
from gen.validation import check_guidance, check_seed, check_size, check_steps

StepCallback = Callable[[int, int], None]  # (step index, total steps)


@dataclass
class TextToImageOutput:
    images: list = field(default_factory=list)  # PIL images
    parameters: list[dict[str, Any]] = field(default_factory=list)  # one dict per image


class TextToImagePipeline:
    """Any-size text-to-image: a diffusers SD/SDXL pipeline plus entropy scaling."""

    def __init__(self, model: LoadedModel, attention_backend: str = "sdpa"):
        self.model = model
        self.attention_backend = resolve_backend(attention_backend, model.device)

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        train_size: int | None = None,
        attention_backend: str = "sdpa",
    ) -> TextToImagePipeline:
        """Load by preset name (`sd15`, `sdxl`, `tiny-sd`, …), hub id or local diffusers folder."""
        return cls(load_pipeline(model, device=device, dtype=dtype, train_size=train_size), attention_backend)

    @property
    def pipe(self):
        """The underlying diffusers pipeline."""
        return self.model.pipe

    @property
    def vae_scale_factor(self) -> int:
        return self.pipe.vae_scale_factor

    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | Sequence[int] = 0,
        entropy_scaling: str = "auto",
        on_step: StepCallback | None = None,
        progress_desc: str | None = None,
    ) -> TextToImageOutput:
        preset = self.model.preset
        width = preset.train_size if width is None else width
        height = preset.train_size if height is None else height
        steps = preset.steps if num_inference_steps is None else num_inference_steps
        guidance = preset.guidance if guidance_scale is None else guidance_scale
        seeds = [seed] if isinstance(seed, int) else list(seed)
        check_size(width, height, multiple=self.vae_scale_factor)
        check_steps(steps)
        check_guidance(guidance)
        for s in seeds:
            check_seed(s)
        if entropy_scaling not in ENTROPY_MODES:
            raise GenError(f"entropy scaling must be one of {', '.join(ENTROPY_MODES)}, got {entropy_scaling!r}")
        train = (preset.train_size, preset.train_size)
        active = entropy_scaling_active(entropy_scaling, (width, height), train)

        output = TextToImageOutput()
        for index, image_seed in enumerate(seeds):
            if progress_desc is not None or len(seeds) > 1:
                self.pipe.set_progress_bar_config(
                    desc=progress_desc or f"image {index + 1}/{len(seeds)}", leave=False
                )
            with self._attention(active, train):
                result = self.pipe(
                    prompt=prompt,
                    negative_prompt=negative_prompt or None,
                    width=width,
                    height=height,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=torch.Generator("cpu").manual_seed(image_seed),
                    callback_on_step_end=_step_end(on_step, steps) if on_step else None,
                )
            output.images.append(result.images[0])
            output.parameters.append(
                self._parameters(prompt, negative_prompt, width, height, steps, guidance, image_seed,
                                 entropy_scaling, active)
            )
        return output

    @contextlib.contextmanager
    def _attention(self, active: bool, train: tuple[int, int]):
        """The UNet's processors for one generation: chosen kernel, plus entropy scaling if active."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(dense_backend(self.pipe.unet, self.attention_backend))
            if active:
                stack.enter_context(
                    entropy_scaling(self.pipe.unet, train, self.vae_scale_factor, backend=self.attention_backend)
                )
            yield

    def _parameters(self, prompt, negative_prompt, width, height, steps, guidance, seed, mode, active):
        preset = self.model.preset
        return {
            "kind": "image",
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "width": width,
            "height": height,
            "steps": steps,
            "guidance": guidance,
            "seed": seed,
            "model": preset.name,
            "family": preset.family,
            "random_weights": preset.is_random,
            "scheduler": type(self.pipe.scheduler).__name__,
            "entropy_scaling": mode,
            "entropy_scaling_active": active,
            "train_size": preset.train_size,
            "attention_backend": self.attention_backend,
            "device": self.model.device.type,
            "dtype": dtype_name(self.model.dtype),
            "gen_version": gen.__version__,
        }


def _step_end(on_step: StepCallback, total: int):
    def callback(pipe, step, timestep, callback_kwargs):
        on_step(step + 1, total)
        return callback_kwargs

    return callback
