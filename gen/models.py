"""Image model presets (SD 1.x/2.x, SDXL) and loading them.

Three kinds of preset:

* hub presets (`sd15`, `sd21`, `sd21-base`, `sdxl`): real weights, loaded with
  `from_pretrained` from the Hugging Face cache or the hub;
* tiny presets (`tiny-sd`, `tiny-sdxl`): small configs with seeded random weights and
  a locally built tokenizer, saved once with `save_pretrained` into the user cache and
  then loaded back through `from_pretrained` like any model. For tests and offline demos;
  their images are noise-like by design;
* architecture presets (`arch-sd15`, `arch-sd21`, `arch-sdxl`): the real model's
  configuration with seeded random weights, built in memory, for benchmarks (same FLOPs
  and memory as the real model).

The random-weight models are built in gen.tiny_models; device, dtype and hub rules shared
with the video models live in gen.loading.

Any other hub id (`org/name`) or local diffusers folder also works; its family comes
from the pipeline class and its training size from the UNet config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gen.errors import GenError
from gen.jsonio import loads
from gen.loading import HUB_ID, choose_device, choose_dtype, pipeline_from_pretrained
from gen.tiny_models import build_arch_pipeline, tiny_preset_path

SD_PIPELINES = ("StableDiffusionPipeline",)
SDXL_PIPELINES = ("StableDiffusionXLPipeline",)


@dataclass(frozen=True)
class ModelPreset:
    """What gen knows about a model before loading it."""

    name: str
    family: str  # "sd" (SD 1.x/2.x UNet) or "sdxl"
    source: str  # "hub", "tiny", "arch", "local", or "pipe" (a pipeline the caller loaded)
    location: str | None  # hub id or folder; None for in-memory architecture presets
    train_size: int  # pixels, square
    steps: int
    guidance: float
    prediction_type: str = "epsilon"
    description: str = ""

    @property
    def is_random(self) -> bool:
        """True for presets whose weights are random (tiny and architecture presets)."""
        return self.source in ("tiny", "arch")


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
        ModelPreset("tiny-sd", "sd", "tiny", None, 64, 4, 7.5,
                    description="tiny random SD-1.x-shaped model (offline tests and demos)"),
        ModelPreset("tiny-sdxl", "sdxl", "tiny", None, 64, 4, 5.0,
                    description="tiny random SDXL-shaped model (offline tests and demos)"),
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
    index_data = loads(index.read_bytes(), f"{path.name}/model_index.json")
    class_name = index_data.get("_class_name", "") if isinstance(index_data, dict) else ""
    return ModelPreset(str(path), _family_of(class_name, str(path)), "local", str(path), 0, 30, 7.5)


def _family_of(class_name: str, model: str) -> str:
    if class_name in SD_PIPELINES:
        return "sd"
    if class_name in SDXL_PIPELINES:
        return "sdxl"
    raise GenError(
        f"model {model!r} is a {class_name or 'unknown pipeline'}; text-to-image supports "
        "Stable Diffusion 1.x/2.x (StableDiffusionPipeline) and SDXL (StableDiffusionXLPipeline)"
    )


# ---------------------------------------------------------------- loading


def load_pipeline(
    name: str,
    device: str | None = None,
    dtype: str | None = None,
    train_size: int | None = None,
) -> LoadedModel:
    """Load a text-to-image pipeline by preset name, hub id or local folder.

    Raises `ModelNotAvailable` with one readable sentence when a hub model is not
    cached and cannot be downloaded.
    """
    preset = resolve_model(name)
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
    if train_size is not None:
        preset = replace(preset, train_size=train_size)
    pipe.set_progress_bar_config(leave=False)
    return LoadedModel(pipe, preset, dev, torch_dtype)


def wrap_pipeline(pipe, name: str | None = None) -> LoadedModel:
    """A `LoadedModel` around an SD 1.x/2.x or SDXL diffusers pipeline the caller already loaded.

    Nothing is loaded or replaced; family, training size and prediction type are read from the
    pipeline's components (so img2img and other pipelines with the same components work too).
    """
    needed = ("unet", "vae", "scheduler", "encode_prompt", "image_processor")
    unet = getattr(pipe, "unet", None)
    if any(not hasattr(pipe, part) for part in needed) or not hasattr(getattr(unet, "config", None), "sample_size"):
        raise GenError(f"a {type(pipe).__name__} cannot be wrapped: gen needs a Stable Diffusion 1.x/2.x or SDXL "
                       f"pipeline (with {', '.join(needed)})")
    family = "sdxl" if unet.config.get("addition_embed_type") == "text_time" else "sd"
    name = name or getattr(pipe, "name_or_path", None) or pipe.config.get("_name_or_path") or type(pipe).__name__
    preset = _preset_from_pipe(ModelPreset(str(name), family, "pipe", None, 0, 30, 7.5), pipe, family)
    return LoadedModel(pipe, preset, pipe.device, unet.dtype)


def _preset_from_pipe(preset: ModelPreset, pipe, family: str | None = None) -> ModelPreset:
    family = family or _family_of(type(pipe).__name__, preset.name)
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    train_size = preset.train_size or int(pipe.unet.config.sample_size) * vae_scale
    prediction = getattr(pipe.scheduler.config, "prediction_type", "epsilon")
    steps, guidance = (preset.steps, preset.guidance) if preset.name in PRESETS else (30, 5.0 if family == "sdxl" else 7.5)
    return replace(preset, family=family, train_size=train_size, prediction_type=prediction,
                   steps=steps, guidance=guidance)


def offline_presets() -> str:
    """The image presets that need no download, for messages."""
    return ", ".join(p.name for p in PRESETS.values() if p.is_random)
