"""Text-to-image at any size with attention entropy scaling: SD 1.x/2.x, SDXL, FLUX.1, SD3/3.5, Qwen-Image.

A thin composition of a stock diffusers pipeline with gen's attention processors:

    from pipelines import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained("flux-dev")      # or sd15, sd35-large, qwen-image, tiny-flux, …
    out = pipe("a lighthouse at dusk", width=1536, height=640, seed=7)
    out.images[0].save("lighthouse.png")

    pipe = TextToImagePipeline.from_pipe(flux_pipeline)          # a diffusers pipeline you loaded; reused as is

Each image comes from its own seed (`seed=[7, 8]` gives two), so any image can be
reproduced exactly from the seed recorded in its parameters.

What differs between model families (denoiser, size grid, guidance semantics, defaults) is in
gen.models.IMAGE_FAMILIES and the presets; `_guidance_arguments` turns gen's one `guidance`
setting into each family's diffusers arguments.
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
from gen.attention.processors import check_dispatcher_backend, dispatcher_backend
from gen.errors import GenError
from gen.loading import dtype_name
from gen.models import LoadedModel, check_image_settings, load_pipeline, loaded_from_pipe
from gen.validation import check_seed

StepCallback = Callable[[int, int], None]  # (step index, total steps)


@dataclass
class TextToImageOutput:
    images: list = field(default_factory=list)  # PIL images
    parameters: list[dict[str, Any]] = field(default_factory=list)  # one dict per image


def _guidance_arguments(kind: str, guidance: float, negative_prompt: str, true_cfg: float | None) -> dict:
    """The diffusers call's guidance arguments for each kind of guidance (gen.models.GUIDANCE_KINDS)."""
    if kind == "cfg":  # SD, SDXL, SD3: real CFG, the negative prompt as the unconditional branch
        return {"guidance_scale": guidance, "negative_prompt": negative_prompt or None}
    if kind == "true-cfg":  # Qwen-Image: `guidance` is the true-CFG scale; its model card's " " for no negative
        return {"true_cfg_scale": guidance, "negative_prompt": (negative_prompt or " ") if guidance > 1 else None}
    # FLUX.1: distilled guidance (dev) or none (schnell); true CFG with the negative prompt on request
    arguments = {"guidance_scale": guidance}
    if true_cfg is not None and true_cfg > 1:
        arguments.update(true_cfg_scale=true_cfg, negative_prompt=negative_prompt)
    return arguments


class TextToImagePipeline:
    """Any-size text-to-image: a diffusers text-to-image pipeline plus entropy scaling."""

    def __init__(self, model: LoadedModel, attention_backend: str = "sdpa"):
        self.model = model
        self.attention_backend = resolve_backend(attention_backend, model.device)
        if model.family.is_transformer:
            check_dispatcher_backend(model.denoiser, self.attention_backend)

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
        """Load by preset name (`sd15`, `flux-dev`, `tiny-sd`, …), hub id or local diffusers folder."""
        return cls(load_pipeline(model, device=device, dtype=dtype, train_size=train_size), attention_backend)

    @classmethod
    def from_pipe(cls, pipe, *, train_size: int | None = None, attention_backend: str = "sdpa") -> TextToImagePipeline:
        """Wrap a diffusers pipeline already loaded (`FluxPipeline`, `StableDiffusion3Pipeline`,
        `QwenImagePipeline`, SD/SDXL): its components are used as they are, nothing is copied."""
        return cls(loaded_from_pipe(pipe, train_size), attention_backend)

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
        true_cfg: float | None = None,
        on_step: StepCallback | None = None,
        progress_desc: str | None = None,
    ) -> TextToImageOutput:
        """`guidance_scale` is the model's own guidance (CFG; FLUX.1-dev: distilled guidance; Qwen-Image:
        true CFG); `true_cfg` > 1 adds real CFG with the negative prompt on FLUX.1 (two passes per step)."""
        preset = self.model.preset
        # 1. Fill the model's defaults; check inputs (the family's size grid and guidance rules).
        width = preset.train_size if width is None else width
        height = preset.train_size if height is None else height
        steps = preset.steps if num_inference_steps is None else num_inference_steps
        guidance = preset.guidance if guidance_scale is None else guidance_scale
        seeds = [seed] if isinstance(seed, int) else list(seed)
        check_image_settings(preset, width, height, guidance, negative_prompt, true_cfg, steps)
        for s in seeds:
            check_seed(s)
        if entropy_scaling not in ENTROPY_MODES:
            raise GenError(f"entropy scaling must be one of {', '.join(ENTROPY_MODES)}, got {entropy_scaling!r}")
        train = (preset.train_size, preset.train_size)
        active = entropy_scaling_active(entropy_scaling, (width, height), train)
        arguments = _guidance_arguments(preset.guidance_kind, guidance, negative_prompt, true_cfg)
        if preset.text_tokens is not None:
            arguments["max_sequence_length"] = preset.text_tokens

        # 2. One generation per seed, with the attention processors of this request.
        output = TextToImageOutput()
        for index, image_seed in enumerate(seeds):
            if progress_desc is not None or len(seeds) > 1:
                self.pipe.set_progress_bar_config(
                    desc=progress_desc or f"image {index + 1}/{len(seeds)}", leave=False
                )
            with self._attention(active, train):
                result = self.pipe(
                    prompt=prompt,
                    width=width,
                    height=height,
                    num_inference_steps=steps,
                    generator=torch.Generator("cpu").manual_seed(image_seed),
                    callback_on_step_end=_step_end(on_step, steps) if on_step else None,
                    **arguments,
                )
            output.images.append(result.images[0])
            output.parameters.append(
                self._parameters(prompt, negative_prompt, width, height, steps, guidance, true_cfg, image_seed,
                                 entropy_scaling, active)
            )
        return output

    @contextlib.contextmanager
    def _attention(self, active: bool, train: tuple[int, int]):
        """The denoiser's processors for one generation: chosen kernel, plus entropy scaling if active."""
        denoiser, transformer = self.model.denoiser, self.model.family.is_transformer
        with contextlib.ExitStack() as stack:
            if transformer:  # the dispatcher's backend; entropy scaling reaches whichever kernel it calls
                stack.enter_context(dispatcher_backend(denoiser, self.attention_backend))
            else:
                stack.enter_context(dense_backend(denoiser, self.attention_backend))
            if active:
                stack.enter_context(entropy_scaling(denoiser, train, self.vae_scale_factor,
                                                    backend="sdpa" if transformer else self.attention_backend))
            yield

    def _parameters(self, prompt, negative_prompt, width, height, steps, guidance, true_cfg, seed, mode, active):
        preset = self.model.preset
        return {
            "kind": "image",
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "width": width,
            "height": height,
            "steps": steps,
            "guidance": guidance,
            "guidance_kind": preset.guidance_kind,
            "true_cfg": true_cfg,
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
