"""Image model presets (SD 1.x/2.x, SDXL, FLUX.1, SD3/3.5, Qwen-Image), their families, and loading them.

Three kinds of preset:

* hub presets (`sd15`, `sd21`, `sd21-base`, `sdxl`, `flux-dev`, `flux-schnell`, `sd35-medium`,
  `sd35-large`, `qwen-image`): real weights, loaded with `from_pretrained` from the Hugging Face
  cache or the hub;
* tiny presets (`tiny-sd`, `tiny-sdxl`, `tiny-flux`, `tiny-sd3`, `tiny-qwen-image`): small configs
  with seeded random weights and locally built tokenizers, saved once with `save_pretrained` into
  the user cache and then loaded back through `from_pretrained` like any model. For tests and
  offline demos; their images are noise-like by design;
* architecture presets (`arch-sd15`, `arch-sd21`, `arch-sdxl`): the real model's configuration
  with seeded random weights, built in memory, for benchmarks (same FLOPs and memory as the real
  model). The DiT models' real transformer configurations are in gen.tiny_models
  (`build_arch_transformer`), transformer only: their text encoders alone would not fit a CPU machine.

`IMAGE_FAMILIES` says what differs between families (denoiser, size grid, guidance semantics,
defaults); `check_image_settings` applies those rules before anything is loaded. The random-weight
models are built in gen.tiny_models; device, dtype and hub rules shared with the video models live
in gen.loading.

Any other hub id (`org/name`) or local diffusers folder also works; its family comes from the
pipeline class and its training size from the denoiser's config (or the family's native size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gen.errors import FieldError, GenError
from gen.jsonio import loads
from gen.loading import HUB_ID, choose_device, choose_dtype, pipeline_from_pretrained
from gen.tiny_models import build_arch_pipeline, tiny_preset_folder, tiny_preset_path
from gen.validation import MAX_SIDE, check_guidance, check_range, check_side, check_steps

# How a family's `guidance` setting acts.
GUIDANCE_KINDS = {
    "cfg": "classifier-free guidance; the negative prompt is the unconditional branch",
    "distilled": "distilled guidance, an input of the model: one pass, no negative prompt",
    "none": "no guidance (timestep-distilled)",
    "true-cfg": "true classifier-free guidance: two passes per step, with the negative prompt",
}


@dataclass(frozen=True)
class ImageFamily:
    """What differs between text-to-image model families: read by the checks, loading and the pipeline."""

    name: str
    label: str
    pipelines: tuple[str, ...]  # diffusers pipeline classes of the family
    denoiser: str  # the pipeline's attribute: "unet" or "transformer"
    size_multiple: int  # 8: a UNet on an 8× VAE; 16: 2×2 patches of an 8× VAE latent
    guidance: str  # a GUIDANCE_KINDS key
    steps: int  # defaults for models of the family that are not presets
    guidance_scale: float
    native_size: int | None = None  # training size when the config does not give one (sample_size)
    min_steps: int = 1  # Qwen-Image's scheduler (terminal shift) divides by zero at 1 step: NaN images
    dispatcher: bool = False  # its processors call diffusers' dispatcher (any dispatcher backend works)

    @property
    def is_transformer(self) -> bool:
        return self.denoiser == "transformer"


IMAGE_FAMILIES: dict[str, ImageFamily] = {
    f.name: f
    for f in [
        ImageFamily("sd", "Stable Diffusion 1.x/2.x", ("StableDiffusionPipeline",), "unet", 8, "cfg", 30, 7.5),
        ImageFamily("sdxl", "SDXL", ("StableDiffusionXLPipeline",), "unet", 8, "cfg", 30, 5.0),
        ImageFamily("flux", "FLUX.1", ("FluxPipeline",), "transformer", 16, "distilled", 28, 3.5, native_size=1024,
                    dispatcher=True),
        ImageFamily("sd3", "Stable Diffusion 3/3.5", ("StableDiffusion3Pipeline",), "transformer", 16, "cfg", 28, 7.0),
        ImageFamily("qwen-image", "Qwen-Image", ("QwenImagePipeline",), "transformer", 16, "true-cfg", 50, 4.0,
                    native_size=1328, min_steps=2, dispatcher=True),
    ]
}
IMAGE_PIPELINES = {cls: f.name for f in IMAGE_FAMILIES.values() for cls in f.pipelines}
SD_PIPELINES = IMAGE_FAMILIES["sd"].pipelines
SDXL_PIPELINES = IMAGE_FAMILIES["sdxl"].pipelines
UNET_FAMILIES = tuple(name for name, f in IMAGE_FAMILIES.items() if not f.is_transformer)


@dataclass(frozen=True)
class ModelPreset:
    """What gen knows about a model before loading it."""

    name: str
    family: str  # an IMAGE_FAMILIES key, or "unknown" for a hub id not loaded yet
    source: str  # "hub", "tiny", "arch" or "local"
    location: str | None  # hub id or folder; None for in-memory architecture presets
    train_size: int  # pixels, square
    steps: int
    guidance: float
    prediction_type: str = "epsilon"
    description: str = ""
    no_guidance: bool = False  # FLUX.1-schnell-like: the transformer has no guidance input
    max_side: int = MAX_SIDE  # the largest side its position embedding covers (SD3: pos_embed_max_size)
    text_tokens: int | None = None  # the T5 prompt length it expects, when not the pipeline's default

    @property
    def is_random(self) -> bool:
        """True for presets whose weights are random (tiny and architecture presets)."""
        return self.source in ("tiny", "arch")

    @property
    def family_spec(self) -> ImageFamily | None:
        """The family's facts; None for a hub id whose family is known only once it is loaded."""
        return IMAGE_FAMILIES.get(self.family)

    @property
    def guidance_kind(self) -> str | None:
        spec = self.family_spec
        return None if spec is None else "none" if self.no_guidance else spec.guidance


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset("sd15", "sd", "hub", "stable-diffusion-v1-5/stable-diffusion-v1-5", 512, 30, 7.5,
                    description="Stable Diffusion 1.5"),
        ModelPreset("sd21", "sd", "hub", "stabilityai/stable-diffusion-2-1", 768, 30, 7.5, "v_prediction",
                    description="Stable Diffusion 2.1 (768, v-prediction)"),
        ModelPreset("sd21-base", "sd", "hub", "stabilityai/stable-diffusion-2-1-base", 512, 30, 7.5,
                    description="Stable Diffusion 2.1 base (512)"),
        ModelPreset("sdxl", "sdxl", "hub", "stabilityai/stable-diffusion-xl-base-1.0", 1024, 30, 5.0,
                    description="Stable Diffusion XL base 1.0"),
        # Steps and guidance: the values of each model card's example.
        ModelPreset("flux-dev", "flux", "hub", "black-forest-labs/FLUX.1-dev", 1024, 50, 3.5,
                    description="FLUX.1 [dev] (distilled guidance)"),
        ModelPreset("flux-schnell", "flux", "hub", "black-forest-labs/FLUX.1-schnell", 1024, 4, 0.0,
                    description="FLUX.1 [schnell] (4 steps, no guidance)", no_guidance=True, text_tokens=256),
        ModelPreset("sd35-medium", "sd3", "hub", "stabilityai/stable-diffusion-3.5-medium", 1024, 40, 4.5,
                    description="Stable Diffusion 3.5 Medium"),
        ModelPreset("sd35-large", "sd3", "hub", "stabilityai/stable-diffusion-3.5-large", 1024, 28, 3.5,
                    description="Stable Diffusion 3.5 Large", max_side=3072),
        ModelPreset("qwen-image", "qwen-image", "hub", "Qwen/Qwen-Image", 1328, 50, 4.0,
                    description="Qwen-Image (true CFG; native 1328x1328)"),
        ModelPreset("tiny-sd", "sd", "tiny", None, 64, 4, 7.5,
                    description="tiny random SD-1.x-shaped model (offline tests and demos)"),
        ModelPreset("tiny-sdxl", "sdxl", "tiny", None, 64, 4, 5.0,
                    description="tiny random SDXL-shaped model (offline tests and demos)"),
        ModelPreset("tiny-flux", "flux", "tiny", None, 128, 4, 3.5,
                    description="tiny random FLUX.1-dev-shaped model (offline tests and demos)"),
        ModelPreset("tiny-sd3", "sd3", "tiny", None, 128, 4, 5.0, max_side=512,
                    description="tiny random SD3.5-shaped model (offline tests and demos)"),
        ModelPreset("tiny-qwen-image", "qwen-image", "tiny", None, 128, 4, 4.0,
                    description="tiny random Qwen-Image-shaped model (offline tests and demos)"),
        ModelPreset("arch-sd15", "sd", "arch", None, 512, 30, 7.5,
                    description="SD 1.5 architecture, random weights (benchmarks)"),
        ModelPreset("arch-sd21", "sd", "arch", None, 768, 30, 7.5, "v_prediction",
                    description="SD 2.1 architecture, random weights (benchmarks)"),
        ModelPreset("arch-sdxl", "sdxl", "arch", None, 1024, 30, 5.0,
                    description="SDXL base architecture, random weights (benchmarks)"),
    ]
}


@dataclass
class LoadedModel:
    """A loaded diffusers pipeline plus what gen knows about it."""

    pipe: Any
    preset: ModelPreset
    device: Any  # torch.device
    dtype: Any  # torch.dtype

    @property
    def train_size(self) -> int:
        return self.preset.train_size

    @property
    def family(self) -> ImageFamily:
        return IMAGE_FAMILIES[self.preset.family]

    @property
    def denoiser(self):
        """The UNet or the transformer."""
        return getattr(self.pipe, self.family.denoiser)


# ---------------------------------------------------------------- checking settings


def check_image_settings(preset: ModelPreset, width: int | None = None, height: int | None = None,
                         guidance: float | None = None, negative_prompt: str = "", true_cfg: float | None = None,
                         steps: int | None = None, attention_backend: str = "sdpa") -> None:
    """The size grid, steps, guidance and kernel rules of a model, before it is loaded (None = the model's
    default). Errors are FieldErrors named by gen.jobs.ImageJob's fields.

    A hub id not loaded yet has no family: only what holds for every family is checked, the rest
    when it is loaded.
    """
    family, name = preset.family_spec, preset.name
    multiple = family.size_multiple if family else 8
    for field, value in (("width", width), ("height", height)):
        if value is not None:
            check_side(field, value, multiple, hi=min(MAX_SIDE, preset.max_side))
    if steps is not None:
        check_steps(steps)
        if family is not None and steps < family.min_steps:
            raise FieldError("steps", f"{{name}} must be at least {family.min_steps} for {name} (its scheduler "
                                      f"divides by zero at {steps} step), got {steps}")
    if guidance is not None:
        check_guidance(guidance)
    if true_cfg is not None:
        check_range("true_cfg", true_cfg, 0.0, 50.0)
    if family is None:
        return
    kind = preset.guidance_kind
    if true_cfg is not None and family.name != "flux":
        raise FieldError("true_cfg", f"{{name}} is an option of FLUX.1 models; {name}'s guidance is already "
                                     f"{GUIDANCE_KINDS[kind].split(';')[0]}: set guidance instead")
    if kind == "none" and guidance not in (None, 0.0):
        raise FieldError("guidance", f"{name} takes no {{name}} ({GUIDANCE_KINDS['none']}); leave it unset, got {guidance}")
    if negative_prompt and kind in ("distilled", "none") and not (true_cfg is not None and true_cfg > 1):
        raise FieldError("true_cfg", f"a negative prompt on {name} needs {{name}} > 1 (its own guidance is "
                                     f"{GUIDANCE_KINDS[kind].split(':')[0]}): real classifier-free guidance, "
                                     "two passes per step")
    if negative_prompt and kind in ("cfg", "true-cfg") and guidance is not None and guidance <= 1:
        raise FieldError("guidance", f"a negative prompt on {name} needs {{name}} > 1 (at {guidance} the negative "
                                     "branch is not run)")
    if attention_backend != "sdpa" and family.is_transformer and not family.dispatcher:
        raise FieldError("attention_backend", f"{{name}} {attention_backend} is not available for {name}: "
                                              f"{family.label}'s processors call torch's SDPA directly, not "
                                              "diffusers' dispatcher; use sdpa")


def check_family(preset: ModelPreset, families: tuple[str, ...], task: str) -> None:
    """Refuse a model whose family `task` does not support (unknown families pass until loaded)."""
    if preset.family in families or preset.family_spec is None:
        return
    allowed = ", ".join(IMAGE_FAMILIES[f].label for f in families)
    raise FieldError("model", f"{task} supports {allowed} models; {{name}} {preset.name} is a "
                              f"{preset.family_spec.label} model")


# ---------------------------------------------------------------- resolving names


def resolve_model(name: str) -> ModelPreset:
    """Map a preset name, local folder or hub id to a preset, without loading weights."""
    if name in PRESETS:
        return PRESETS[name]
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or os.sep in name and not HUB_ID.match(name):
        return _local_preset(path)
    if HUB_ID.match(name):
        # Family and training size are read from the files once they are loaded.
        return ModelPreset(name, "unknown", "hub", name, 0, 30, 7.5)
    raise GenError(
        f"unknown model {name!r}: not a preset, a local diffusers folder or a hub id (org/name); "
        f"presets: {', '.join(PRESETS)}"
    )


def _local_preset(path: Path) -> ModelPreset:
    if not path.exists():
        raise GenError(f"model folder {str(path)!r} does not exist")
    if path.is_file():
        if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
            raise GenError(
                f"{path.name}: pickled checkpoints are not loaded (they can run arbitrary code); "
                "use a diffusers folder or safetensors weights"
            )
        raise GenError(
            f"{path.name}: single-file checkpoints are not supported yet; pass a diffusers folder "
            "(one with model_index.json), e.g. converted with diffusers' from_single_file + save_pretrained"
        )
    index = path / "model_index.json"
    if not index.is_file():
        raise GenError(f"{str(path)!r} is not a diffusers pipeline folder (no model_index.json)")
    family = IMAGE_FAMILIES[_family_of(_read_json(index).get("_class_name", ""), str(path))]
    config = _read_json(path / family.denoiser / "config.json")  # read before loading, for the checks
    return replace(ModelPreset(str(path), family.name, "local", str(path), 0, family.steps, family.guidance_scale),
                   **_denoiser_facts(family, config))


def _read_json(path: Path) -> dict:
    """A config file of a model folder as a dict ({} if absent); one line if it is not usable."""
    try:
        data = loads(path.read_bytes(), f"{path.parent.name}/{path.name}")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise GenError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return data if isinstance(data, dict) else {}


def _family_of(class_name: str, model: str) -> str:
    if class_name in IMAGE_PIPELINES:
        return IMAGE_PIPELINES[class_name]
    supported = "; ".join(f"{f.label} ({', '.join(f.pipelines)})" for f in IMAGE_FAMILIES.values())
    raise GenError(f"model {model!r} is a {class_name or 'unknown pipeline'}; text-to-image supports {supported}")


def _denoiser_facts(family: ImageFamily, config: dict, vae_scale: int = 8) -> dict:
    """What a denoiser's config tells about its limits: no guidance input (FLUX.1-schnell-like), the
    largest side its position embedding covers (SD3)."""
    facts: dict = {}
    if family.name == "flux" and not config.get("guidance_embeds", True):
        facts.update(no_guidance=True, steps=4, guidance=0.0, text_tokens=256)  # FLUX.1-schnell's defaults
    if family.name == "sd3" and config.get("pos_embed_max_size"):
        facts["max_side"] = int(config["pos_embed_max_size"]) * int(config.get("patch_size", 2)) * vae_scale
    return facts


# ---------------------------------------------------------------- loading


def load_pipeline(
    name: str,
    device: str | None = None,
    dtype: str | None = None,
    train_size: int | None = None,
    families: tuple[str, ...] | None = None,
    task: str = "text-to-image",
) -> LoadedModel:
    """Load a text-to-image pipeline by preset name, hub id or local folder.

    `families` limits the model families accepted (style transfer: the UNet ones), checked before
    loading where the family is known and again once loaded. Raises `ModelNotAvailable` with one
    readable sentence when a hub model is not cached and cannot be downloaded.
    """
    preset = resolve_model(name)
    if families is not None:
        check_family(preset, families, task)
    dev = choose_device(device)
    torch_dtype = choose_dtype(dev, dtype)
    if preset.source == "arch":
        pipe = build_arch_pipeline(preset.name, dev, torch_dtype)
    else:
        location = str(tiny_preset_path(preset.name)) if preset.source == "tiny" else preset.location
        pipe = pipeline_from_pretrained(location, preset.name, torch_dtype, offline_presets())
        pipe.to(dev)
        if preset.source in ("hub", "local"):  # family and training size come from the files
            preset = _preset_from_pipe(preset, pipe)
            if families is not None:
                check_family(preset, families, task)
    if train_size is not None:
        preset = replace(preset, train_size=train_size)
    pipe.set_progress_bar_config(leave=False)
    return LoadedModel(pipe, preset, dev, torch_dtype)


def loaded_from_pipe(pipe, train_size: int | None = None, family: str | None = None) -> LoadedModel:
    """A diffusers pipeline the caller already loaded, with what gen knows about it (nothing is copied).

    A pipeline loaded from a preset's hub id gets that preset's defaults. `family` is for pipelines
    whose class is not a family's own (an img2img pipeline with the same components).
    """
    location = str(getattr(pipe, "name_or_path", None) or type(pipe).__name__)
    known = next((p for p in PRESETS.values()
                  if location in (p.location, str(tiny_preset_folder(p.name)) if p.source == "tiny" else None)), None)
    source = "hub" if HUB_ID.match(location) and not Path(location).exists() else "local"
    preset = _preset_from_pipe(known or ModelPreset(location, "unknown", source, location, 0, 30, 7.5), pipe, family)
    if train_size is not None:
        preset = replace(preset, train_size=train_size)
    denoiser = getattr(pipe, IMAGE_FAMILIES[preset.family].denoiser)
    return LoadedModel(pipe, preset, denoiser.device, denoiser.dtype)


def wrap_pipeline(pipe) -> LoadedModel:
    """A `LoadedModel` around an SD 1.x/2.x or SDXL pipeline the caller loaded, for style transfer.

    The family is read from the UNet (so img2img and other pipelines with the same components work too);
    nothing is loaded or replaced.
    """
    needed = ("unet", "vae", "scheduler", "encode_prompt", "image_processor")
    unet = getattr(pipe, "unet", None)
    if any(not hasattr(pipe, part) for part in needed) or not hasattr(getattr(unet, "config", None), "sample_size"):
        raise GenError(f"a {type(pipe).__name__} cannot be wrapped: gen needs a Stable Diffusion 1.x/2.x or SDXL "
                       f"pipeline (with {', '.join(needed)})")
    return loaded_from_pipe(pipe, family="sdxl" if unet.config.get("addition_embed_type") == "text_time" else "sd")


def _preset_from_pipe(preset: ModelPreset, pipe, family_name: str | None = None) -> ModelPreset:
    family = IMAGE_FAMILIES[family_name or _family_of(type(pipe).__name__, preset.name)]
    vae_scale = int(getattr(pipe, "vae_scale_factor", 8))
    config = dict(getattr(pipe, family.denoiser).config)
    native = family.native_size or int(config["sample_size"]) * vae_scale
    prediction = getattr(pipe.scheduler.config, "prediction_type", "epsilon") or "epsilon"
    if preset.name in PRESETS:
        return replace(preset, prediction_type=prediction)
    preset = replace(preset, family=family.name, train_size=preset.train_size or native, prediction_type=prediction,
                     steps=family.steps, guidance=family.guidance_scale)
    return replace(preset, **_denoiser_facts(family, config, vae_scale))


def offline_presets() -> str:
    """The image presets that need no download, for messages."""
    return ", ".join(p.name for p in PRESETS.values() if p.is_random)
