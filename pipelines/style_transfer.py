"""Style transfer by style injection (StyleID) for SD 1.x, SD 2.x and SDXL.

    from pipelines import StyleTransferPipeline

    pipe = StyleTransferPipeline.from_pretrained("sd15")     # or .from_pipe(an SD/SDXL pipeline you loaded)
    out = pipe(content="photo.jpg", style=[("monet.jpg", 1.0), ("hokusai.jpg", 0.3)], strength=0.5)
    out.images[0].save("stylised.png")

Reading order of `__call__`: check the settings → load and size the images → encode
to latents → invert what the cache does not have (empty prompt, no guidance, DDIM)
while recording the injected layers' features → AdaIN the content's noisy latent →
denoise with the injection processors → decode, then optional colour preservation and
mask compositing. `convention` ("gen", "original", "port"; gen.style.CONVENTIONS)
chooses whose StyleID to follow: where the inversion evaluates the UNet, whether the
first step runs, the AdaIN formula and the default layers.

Memory modes: `cache` records the injected layers' input hidden states during the
inversion pass (model dtype: fp16 on GPU) and generates with a batch of one per
content; `recompute` keeps only the latent trajectories and re-runs the content and
style rows inside the same batched UNet call at every step (memory close to a plain
generation, about 3× the generation compute); `auto` picks `cache` when the estimated
features fit in half of the free memory of the device.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from PIL import Image

import gen
from gen.attention import attention_layers, dense_backend, install_processors, is_cross_attention, resolve_backend
from gen.errors import GenError
from gen.images import composite, cover_resize, fit_size, image_digest, load_image, load_mask, preserve_color
from gen.inversion import (DDIMSchedule, InversionCache, Trajectory, ddim_invert, ddim_schedule, ddim_step,
                           default_inversion_cache, inversion_key)
from gen.loading import dtype_name
from gen.models import UNET_FAMILIES, LoadedModel, load_pipeline, wrap_pipeline
from gen.style import (DEFAULT_CONVENTION, DEFAULT_GAMMA, DEFAULT_TEMPERATURE, LAYER_SETS, Convention,
                       InjectionState, StyleInjectionProcessor, adain, blended_stats, check_injection_steps,
                       check_layer_specs, convention as resolve_convention, default_layer_set, feature_elements,
                       layer_set, normalise_weights,
                       strength_to_gamma)
from gen.validation import check_size, check_steps

MEMORY_MODES = ("auto", "cache", "recompute")
ImageInput = str | os.PathLike | Image.Image
StepCallback = Callable[[str, int, int], None]  # (phase, step, total)


@dataclass
class StyleTransferOutput:
    images: list = field(default_factory=list)  # PIL images, one per content
    parameters: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)  # UNet calls, cache hits, memory mode, feature bytes
    latents: torch.Tensor | None = None  # the final latents, before decoding


class StyleTransferPipeline:
    """Training-free style transfer on a stock SD/SDXL diffusers pipeline."""

    def __init__(self, model: LoadedModel, attention_backend: str = "sdpa",
                 cache: InversionCache | None | bool = True):
        self.model = model
        self.attention_backend = resolve_backend(attention_backend, model.device)
        self.cache = default_inversion_cache() if cache is True else (cache or None)
        self._fingerprint: str | None = None
        self.unet_calls = 0
        self.unet_rows = 0

    @classmethod
    def from_pretrained(cls, model: str, *, device: str | None = None, dtype: str | None = None,
                        attention_backend: str = "sdpa", cache: InversionCache | None | bool = True,
                        ) -> StyleTransferPipeline:
        return cls(load_pipeline(model, device=device, dtype=dtype, families=UNET_FAMILIES, task="style transfer"),
                   attention_backend, cache)

    @classmethod
    def from_pipe(cls, pipe, *, attention_backend: str = "sdpa", cache: InversionCache | None | bool = True,
                  ) -> StyleTransferPipeline:
        """Style transfer on an SD 1.x/2.x or SDXL diffusers pipeline already loaded (diffusers' `from_pipe`).

        Nothing is loaded again and nothing of `pipe` is replaced: its scheduler's config is only read
        (for the betas and timestep spacing the DDIM inversion uses). gen's own TextToImagePipeline works too.
        """
        model = pipe.model if isinstance(getattr(pipe, "model", None), LoadedModel) else wrap_pipeline(pipe)
        return cls(model, attention_backend, cache)

    @property
    def pipe(self):
        return self.model.pipe

    @property
    def unet(self):
        return self.model.pipe.unet

    # ------------------------------------------------------------------ the call

    def __call__(
        self,
        content: ImageInput | Sequence[ImageInput],
        style: ImageInput | Sequence[ImageInput | tuple[ImageInput, float]],
        *,
        gamma: float | None = None,
        strength: float | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        num_inference_steps: int = 50,
        size: int | tuple[int, int] | None = None,
        layers: str | Sequence[str] | None = None,
        convention: str = DEFAULT_CONVENTION,
        inject_from: int | None = None,
        injection: bool = True,
        adain_init: bool = True,
        preserve_colors: bool = False,
        mask: ImageInput | None = None,
        memory: str = "auto",
        use_cache: bool = True,
        on_step: StepCallback | None = None,
    ) -> StyleTransferOutput:
        gamma = self._resolve_gamma(gamma, strength)
        if not (temperature > 0 and math.isfinite(temperature)):
            raise GenError(f"temperature must be a positive number, got {temperature}")
        check_steps(num_inference_steps)
        if memory not in MEMORY_MODES:
            raise GenError(f"memory mode must be one of {', '.join(MEMORY_MODES)}, got {memory!r}")
        rules = resolve_convention(convention)
        inject_from = self._resolve_inject_from(inject_from, rules, num_inference_steps)
        layers, named_set = self._resolve_layers(layers, rules.name)

        contents = [load_image(c, "content image") for c in _as_list(content)]
        style_specs = [(s, 1.0) if not isinstance(s, tuple) else s for s in _as_list(style)]
        weights = normalise_weights([float(w) for _, w in style_specs])
        styles = [(load_image(s, "style image"), w) for (s, _), w in zip(style_specs, weights) if w > 0]
        width, height = self._output_size(contents[0], size)
        mask_image = load_mask(mask, contents[0].size) if mask is not None else None

        content_images = [cover_resize(c, width, height) for c in contents]
        style_images = [cover_resize(s, width, height) for s, _ in styles]
        mask_image = cover_resize(mask_image, width, height) if mask_image is not None else None
        schedule = self._schedule(num_inference_steps, rules)
        self.unet_calls = self.unet_rows = 0

        with torch.inference_mode():
            conditioning = self._empty_conditioning(width, height)
            content_latents = self._encode(content_images)
            style_latents = self._encode(style_images)
            roles = [f"content:{i}" for i in range(len(contents))] + [f"style:{j}" for j in range(len(styles))]
            latents = dict(zip(roles, list(content_latents) + list(style_latents)))
            keys = {role: self._cache_key(img, num_inference_steps, width, height, rules.name)
                    for role, img in zip(roles, content_images + style_images)}
            trajectories = {role: (self.cache.get(keys[role]) if self.cache and use_cache else None)
                            for role in roles}
            cache_hits = sum(t is not None for t in trajectories.values())
            mode = self._memory_mode(memory, layers, (height // 8, width // 8), len(roles),
                                     num_inference_steps - inject_from, injection)
            state = InjectionState(gamma=gamma, temperature=temperature,
                                   styles=[(f"style:{j}", w) for j, (_, w) in enumerate(styles)],
                                   first_injected_step=inject_from)

            with self._processors(layers, state):
                denoise = self._denoiser(conditioning, schedule, state)
                self._prepare(roles, latents, trajectories, keys, schedule, state, denoise,
                              capture=injection and mode == "cache", on_step=on_step, rule=rules.name)
                final = self._generate(
                    [trajectories[r] for r in roles if r.startswith("content:")],
                    [trajectories[r] for r in roles if r.startswith("style:")],
                    schedule, state, denoise, rules, injection, adain_init, mode, mask_image, on_step,
                )
            feature_bytes = state.store.nbytes
            state.store.clear()
            images = self._decode(final)

        outputs = []
        for content_image, image in zip(content_images, images):
            if preserve_colors:
                image = preserve_color(image, content_image)
            if mask_image is not None:
                image = composite(image, content_image, mask_image)
            outputs.append(image)
        stats = {"unet_calls": self.unet_calls, "unet_rows": self.unet_rows, "cache_hits": cache_hits,
                 "inversions": len(roles) - cache_hits, "memory_mode": mode, "feature_bytes": feature_bytes}
        params = self._parameters(contents, content_images, styles, gamma, strength, temperature,
                                  num_inference_steps, width, height, layers, injection, adain_init,
                                  preserve_colors, mask_image is not None, mode)
        params.update(convention=rules.name, inject_from=inject_from, layer_set=named_set)
        return StyleTransferOutput(outputs, [dict(params, content_index=i) for i in range(len(outputs))], stats,
                                   final)

    # ------------------------------------------------------------------ checks and sizes

    @staticmethod
    def _resolve_gamma(gamma: float | None, strength: float | None) -> float:
        if gamma is not None and strength is not None:
            raise GenError("give either gamma or strength, not both (strength is mapped onto gamma)")
        if strength is not None:
            return strength_to_gamma(strength)
        gamma = DEFAULT_GAMMA if gamma is None else gamma
        if not 0.0 <= gamma <= 1.0:
            raise GenError(f"gamma (query preservation) must be between 0 and 1, got {gamma}")
        return gamma

    @staticmethod
    def _resolve_inject_from(inject_from: int | None, rules: Convention, steps: int) -> int:
        """The first injected generation step: the convention's unless given; always a step that runs."""
        check_injection_steps(rules.name, steps, inject_from)
        return rules.inject_from if inject_from is None else inject_from

    def _resolve_layers(self, layers: str | Sequence[str] | None, convention: str) -> tuple[list[str], str | None]:
        """Set names (`vsp`), exact layer names or shell patterns (`up_blocks.3.*attn1`) → layer names.

        Returns the names and the set's name when exactly one named set (or the default) was used.
        """
        if layers is None:
            name = default_layer_set(self.unet, convention)
            return layer_set(self.unet, name), name
        specs = [layers] if isinstance(layers, str) else list(layers)
        check_layer_specs(specs)
        known = attention_layers(self.unet)
        example = layer_set(self.unet, "paper")[0]
        resolved: list[str] = []
        for spec in specs:
            if spec in LAYER_SETS:
                matches = layer_set(self.unet, spec)
            elif any(c in spec for c in "*?["):
                matches = [n for n in known if fnmatch.fnmatchcase(n, spec)]
            else:
                matches = [spec] if spec in known else []
            if not matches:
                raise GenError(f"unknown attention layer {spec!r}; layer names look like {example!r}, "
                               f"layer sets are {', '.join(LAYER_SETS)}")
            for name in matches:
                if is_cross_attention(name, known[name]):
                    raise GenError(f"layer {name!r} is a cross-attention layer; style injection needs self-attention")
                if name not in resolved:
                    resolved.append(name)
        return resolved, specs[0] if len(specs) == 1 and specs[0] in LAYER_SETS else None

    def _schedule(self, steps: int, rules: Convention) -> DDIMSchedule:
        """DDIM on the model's own scheduler config (read, never replaced), as the convention ends it."""
        schedule = ddim_schedule(self.pipe.scheduler.config, steps)
        if rules.final_alpha_is_first:  # LDM's DDIM: alphas_prev[0] = alphas_cumprod[0], always
            schedule = replace(schedule, final_alpha=schedule.alphas_cumprod[0])
        return schedule

    def _output_size(self, content: Image.Image, size) -> tuple[int, int]:
        factor = self.pipe.vae_scale_factor
        if size is None:
            size = self.model.preset.train_size
        if isinstance(size, int):
            check_size(size, size, multiple=factor)
            width, height = fit_size(*content.size, size, multiple=factor)
        else:
            width, height = size
        check_size(width, height, multiple=factor)
        return width, height

    def _memory_mode(self, memory, layers, latent_hw, images, injected_steps, injection) -> str:
        if memory != "auto" or not injection:
            return memory if memory != "auto" else "cache"
        element = torch.empty((), dtype=self.model.dtype).element_size()
        estimate = feature_elements(self.unet, layers, latent_hw) * injected_steps * images * element
        return "cache" if estimate <= 0.5 * _free_memory(self.model.device) else "recompute"

    # ------------------------------------------------------------------ model plumbing

    @contextlib.contextmanager
    def _processors(self, layers: list[str], state: InjectionState):
        modules = attention_layers(self.unet)
        with dense_backend(self.unet, self.attention_backend), install_processors(
            self.unet, factory=lambda name, _: StyleInjectionProcessor(name, state, self.attention_backend),
            layers={name: modules[name] for name in layers},
        ):
            yield

    def _empty_conditioning(self, width: int, height: int) -> dict[str, torch.Tensor]:
        """The empty prompt, no guidance: what the method inverts and generates with."""
        device = self.model.device
        if self.model.preset.family == "sdxl":
            embeds, _, pooled, _ = self.pipe.encode_prompt("", device=device, num_images_per_prompt=1,
                                                           do_classifier_free_guidance=False)
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=embeds.dtype, device=device)
            return {"embeds": embeds, "pooled": pooled, "time_ids": time_ids}
        embeds, _ = self.pipe.encode_prompt("", device, 1, False)
        return {"embeds": embeds}

    def _denoiser(self, conditioning, schedule, state: InjectionState):
        index_of = {t: i for i, t in enumerate(schedule.timesteps)}

        def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
            rows = x.shape[0]
            state.step = index_of[t]
            kwargs = {"encoder_hidden_states": conditioning["embeds"].expand(rows, -1, -1)}
            if "pooled" in conditioning:
                kwargs["added_cond_kwargs"] = {"text_embeds": conditioning["pooled"].expand(rows, -1),
                                               "time_ids": conditioning["time_ids"].expand(rows, -1)}
            self.unet_calls += 1
            self.unet_rows += rows
            return self.unet(x.to(self.unet.dtype), t, **kwargs).sample.to(x.dtype)

        return denoise

    def _vae_dtype(self):
        vae = self.pipe.vae
        upcast = getattr(vae.config, "force_upcast", False) and self.model.dtype == torch.float16
        return torch.float32 if upcast else self.model.dtype

    def _encode(self, images: list[Image.Image]) -> torch.Tensor:
        if not images:
            return torch.empty(0)
        vae, dtype = self.pipe.vae, self._vae_dtype()
        pixels = self.pipe.image_processor.preprocess(images).to(self.model.device, dtype)
        with _vae_in(vae, dtype):
            latents = vae.encode(pixels).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * vae.config.scaling_factor).float()

    def _decode(self, latents: torch.Tensor) -> list[Image.Image]:
        vae, dtype = self.pipe.vae, self._vae_dtype()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        with _vae_in(vae, dtype):
            pixels = vae.decode((latents / vae.config.scaling_factor + shift).to(dtype)).sample
        return self.pipe.image_processor.postprocess(pixels.float(), output_type="pil")

    def _cache_key(self, image: Image.Image, steps: int, width: int, height: int, rule: str) -> str:
        return inversion_key(image_digest(image), self._model_fingerprint(), steps, width, height,
                             dtype_name(self.model.dtype), self.model.device.type, rule)

    def _model_fingerprint(self) -> str:
        """Identifies the weights (not just the name): a fused LoRA or a different snapshot changes it."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self.model.preset.name.encode())
            for module in (self.unet, self.pipe.vae):
                params = list(module.parameters())
                for tensor in (params[0], params[len(params) // 2], params[-1]):
                    digest.update(tensor.detach().float().cpu().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    # ------------------------------------------------------------------ the two passes

    def _prepare(self, roles, latents, trajectories, keys, schedule, state, denoise, capture, on_step, rule):
        """Invert what the cache lacks; record features of every row if `capture`. One batched pass."""
        new = [r for r in roles if trajectories[r] is None]
        replayed = [r for r in roles if trajectories[r] is not None] if capture else []
        if not new and not replayed:
            return
        state.roles, state.capture = new + replayed, capture
        x = torch.stack([latents[r] for r in new]) if new else torch.empty(0, *next(iter(latents.values())).shape,
                                                                          device=self.model.device)
        replay = torch.stack([trajectories[r].inputs for r in replayed]).to(x) if replayed else None
        progress = (lambda done, total: on_step("invert", done, total)) if on_step else None
        for role, trajectory in zip(new, ddim_invert(denoise, x, schedule, replay=replay, on_step=progress,
                                                     rule=rule)):
            trajectories[role] = trajectory
            if self.cache:
                self.cache.put(keys[role], trajectory, {"model": self.model.preset.name, "role": role.split(":")[0]})
        state.roles, state.capture = None, False

    def _generate(self, contents: list[Trajectory], styles: list[Trajectory], schedule, state, denoise,
                  rules: Convention, injection, adain_init, mode, mask_image, on_step) -> torch.Tensor:
        x = torch.stack([c.final for c in contents]).to(self.model.device)
        if adain_init and styles:
            mean, std = blended_stats([s.final for s in styles], [w for _, w in state.styles], rules.adain)
            x = adain(x, mean.to(x.device), std.to(x.device), rules.adain)
        blend = self._latent_mask(mask_image, x) if mask_image is not None else None
        if blend is not None:
            x = blend * x + (1 - blend) * torch.stack([c.final for c in contents]).to(x)
        gen_roles = [f"gen:{i}" for i in range(len(contents))]
        source_roles = [f"content:{i}" for i in range(len(contents))] + [f"style:{j}" for j in range(len(styles))]
        sources = contents + styles
        first = 1 if rules.skip_first_step else 0  # the original starts at the second timestep
        total = len(schedule.timesteps) - first
        for index in range(first, len(schedule.timesteps)):
            t = schedule.timesteps[index]
            inject = injection and index >= state.first_injected_step
            if inject and mode == "recompute":
                batch = torch.cat([torch.stack([s.input_at(index) for s in sources]).to(x), x])
                state.roles = source_roles + gen_roles
            else:
                batch, state.roles = x, gen_roles
            state.inject = inject
            output = denoise(batch, t)[-x.shape[0]:]
            x = ddim_step(schedule, index, x, output)
            if blend is not None:
                x = blend * x + (1 - blend) * torch.stack([c.latent_after(index) for c in contents]).to(x)
            if on_step:
                on_step("stylise", index + 1 - first, total)
        state.roles, state.inject = None, False
        return x

    def _latent_mask(self, mask_image: Image.Image, x: torch.Tensor) -> torch.Tensor:
        import numpy as np

        mask = torch.from_numpy(np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0)
        mask = torch.nn.functional.interpolate(mask[None, None], size=x.shape[-2:], mode="area")
        return mask.to(x)

    def _parameters(self, contents, content_images, styles, gamma, strength, temperature, steps, width, height,
                    layers, injection, adain_init, preserve_colors, masked, mode) -> dict[str, Any]:
        preset = self.model.preset
        return {
            "kind": "style",
            "content_digests": [image_digest(c) for c in content_images],
            "style_digests": [image_digest(s) for s, _ in styles],
            "style_weights": [w for _, w in styles],
            "gamma": gamma,
            "strength": strength,
            "temperature": temperature,
            "steps": steps,
            "width": width,
            "height": height,
            "layers": list(layers),
            "injection": injection,
            "adain": adain_init,
            "preserve_color": preserve_colors,
            "mask": masked,
            "memory": mode,
            "model": preset.name,
            "family": preset.family,
            "random_weights": preset.is_random,
            "attention_backend": self.attention_backend,
            "device": self.model.device.type,
            "dtype": dtype_name(self.model.dtype),
            "gen_version": gen.__version__,
        }


def _as_list(value) -> list:
    if isinstance(value, (list, tuple)) and not (isinstance(value, tuple) and len(value) == 2
                                                 and isinstance(value[1], (int, float))):
        if not value:
            raise GenError("no images given")
        return list(value)
    return [value]


@contextlib.contextmanager
def _vae_in(vae, dtype):
    """Run the VAE in `dtype` (fp32 for VAEs that overflow in fp16), then put it back."""
    original = vae.dtype
    if original != dtype:
        vae.to(dtype)
    try:
        yield
    finally:
        if original != dtype:
            vae.to(original)


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30
