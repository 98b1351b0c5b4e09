"""Model presets, device/dtype choice and pipeline loading.

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

Any other hub id (`org/name`) or local diffusers folder also works; its family comes
from the pipeline class and its training size from the UNet config.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gen.errors import GenError, ModelNotAvailable
from gen.paths import user_cache_dir

SD_PIPELINES = ("StableDiffusionPipeline",)
SDXL_PIPELINES = ("StableDiffusionXLPipeline",)
DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ModelPreset:
    """What gen knows about a model before loading it."""

    name: str
    family: str  # "sd" (SD 1.x/2.x UNet) or "sdxl"
    source: str  # "hub", "tiny", "arch" or "local"
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

# Bump when a tiny config changes, so cached copies built from the old config are not reused.
TINY_VERSION = 2
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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
    class_name = json.loads(index.read_text()).get("_class_name", "")
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


# ---------------------------------------------------------------- device and dtype


def choose_device(device: str | None = None):
    """The requested device, else CUDA, else Apple MPS, else CPU."""
    import torch

    if device:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise GenError(f"invalid device {device!r}: {exc}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise GenError(f"device {device!r} requested, but CUDA is not available here; use --device cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise GenError(f"device {device!r} requested, but MPS is not available here; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_dtype(device, dtype: str | None = None):
    """fp16 on accelerators, fp32 on CPU, unless asked otherwise."""
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype:
        if dtype not in table:
            raise GenError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        return table[dtype]
    return torch.float32 if torch.device(device).type == "cpu" else torch.float16


def dtype_name(dtype) -> str:
    import torch

    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


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
        pipe = pipeline_from_pretrained(location, preset.name, torch_dtype)
        pipe.to(dev)
        if preset.source in ("hub", "local"):  # family and training size come from the files
            preset = _preset_from_pipe(preset, pipe)
    if train_size is not None:
        preset = replace(preset, train_size=train_size)
    pipe.set_progress_bar_config(leave=False)
    return LoadedModel(pipe, preset, dev, torch_dtype)


def _preset_from_pipe(preset: ModelPreset, pipe) -> ModelPreset:
    family = _family_of(type(pipe).__name__, preset.name)
    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    train_size = preset.train_size or int(pipe.unet.config.sample_size) * vae_scale
    prediction = getattr(pipe.scheduler.config, "prediction_type", "epsilon")
    steps, guidance = (preset.steps, preset.guidance) if preset.name in PRESETS else (30, 5.0 if family == "sdxl" else 7.5)
    return replace(preset, family=family, train_size=train_size, prediction_type=prediction,
                   steps=steps, guidance=guidance)


def pipeline_from_pretrained(location: str, name: str, torch_dtype):
    """`DiffusionPipeline.from_pretrained`, cache first, with one-line errors when a model is unavailable."""
    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    is_local = Path(location).exists()
    try:
        # Cache first: never touches the network for a model that is already here.
        return DiffusionPipeline.from_pretrained(location, dtype=torch_dtype, local_files_only=True)
    except (OSError, ValueError) as cached_error:
        if is_local:
            raise ModelNotAvailable(f"cannot load model folder {location!r}: {_first_line(cached_error)}") from None
    if hub_offline():
        raise ModelNotAvailable(_not_cached_message(name, location, "HF_HUB_OFFLINE is set")) from None
    try:
        return DiffusionPipeline.from_pretrained(location, dtype=torch_dtype)
    except GatedRepoError:
        raise ModelNotAvailable(
            f"model {location!r} is gated on the Hugging Face hub: accept its licence on the model page and "
            "log in with `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotAvailable(f"model {location!r} does not exist on the Hugging Face hub") from None
    except OSError:
        raise ModelNotAvailable(_not_cached_message(name, location, "the hub could not be reached")) from None


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE forbids the hub: then nothing is downloaded."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _not_cached_message(name: str, repo_id: str, reason: str) -> str:
    offline = ", ".join(p.name for p in PRESETS.values() if p.is_random)
    return (
        f"model {name!r} ({repo_id}) is not in the Hugging Face cache ({_hub_cache_dir()}) and cannot be "
        f"downloaded ({reason}). Download it where the hub is reachable (`hf download {repo_id}`) and copy the "
        f"cache, pass a local diffusers folder with --model PATH, or use an offline preset: {offline}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------- tiny presets


def tiny_preset_path(name: str) -> Path:
    """The saved folder of a tiny preset; built (atomically) on first use."""
    from gen.video_models import TINY_VIDEO_BUILDERS

    builders = {"tiny-sd": build_tiny_sd, "tiny-sdxl": build_tiny_sdxl, **TINY_VIDEO_BUILDERS}
    if name not in builders:
        raise GenError(f"{name!r} is not a tiny preset; tiny presets: {', '.join(builders)}")
    root = user_cache_dir() / "models"
    final = root / f"{name}-v{TINY_VERSION}"
    if (final / "model_index.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        builders[name]().save_pretrained(staging, safe_serialization=True)
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / "model_index.json").is_file():  # not a concurrent builder: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def build_tokenizer(model_max_length: int = 77):
    """A byte-level CLIP tokenizer with no merges: every byte is a token. Built offline."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    alphabet = sorted(ByteLevel.alphabet())
    tokens = specials + alphabet + [c + "</w>" for c in alphabet]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def _clip_text_config(vocab_size: int, hidden: int, layers: int, heads: int, intermediate: int,
                      act: str = "quick_gelu", projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
        hidden_act=act, projection_dim=projection or hidden,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    # scaling_factor 3.0 gives this random encoder's latents about unit variance, as SD's 0.18215 does for SD's.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64, scaling_factor=3.0,
    )


def _calm_output(unet):
    """Scale the random UNet's last conv by 0.1: it then predicts small noise that varies smoothly with
    its input, as a trained model's does, which keeps DDIM inversion well-conditioned (about 3 % error
    at 50 steps instead of diverging)."""
    import torch

    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    return unet


def build_tiny_sd():
    """SD-1.x-shaped: 3 UNet levels (cross-attention on the two finest, like SD's layout)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=16,
    )
    _calm_output(unet)
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer), 32, 2, 4, 64))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(
        vae=_tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_tiny_sdxl():
    """SDXL-shaped: no attention at the finest level, two text encoders, micro-conditioning."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=16,
    )
    _calm_output(unet)
    text_encoder = CLIPTextModel(_clip_text_config(len(tokenizer), 32, 2, 4, 64, act="gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(len(tokenizer), 32, 2, 4, 64, act="gelu"))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=build_tokenizer(), unet=unet, scheduler=scheduler,
    )


# ---------------------------------------------------------------- architecture presets

_ARCH_UNETS: dict[str, dict] = {
    "arch-sd15": dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
    "arch-sd21": dict(sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                      use_linear_projection=True, upcast_attention=True),
    "arch-sdxl": dict(
        sample_size=128, block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    ),
}


def build_arch_unet(name: str, device="cpu", dtype=None):
    """The real UNet configuration of an architecture preset with seeded random weights."""
    import torch
    from diffusers import UNet2DConditionModel

    if name not in _ARCH_UNETS:
        raise GenError(f"{name!r} is not an architecture preset; choose one of: {', '.join(_ARCH_UNETS)}")
    torch.manual_seed(0)
    with torch.device(device), _default_dtype(dtype):
        return UNet2DConditionModel(**_ARCH_UNETS[name])


@contextlib.contextmanager
def _default_dtype(dtype):
    """Create parameters directly in `dtype` (no fp32 copy first: halves peak memory for fp16)."""
    import torch

    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_arch_pipeline(name: str, device="cpu", dtype=None):
    """A whole pipeline of an architecture preset (UNet, VAE, text encoders), random weights."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = build_arch_unet(name, device, dtype)
    tokenizer = build_tokenizer()
    with torch.device(device), _default_dtype(dtype):
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
            sample_size=PRESETS[name].train_size,
            scaling_factor=0.13025 if name == "arch-sdxl" else 0.18215,
        )
        clip_l = _clip_text_config(49408, 768, 12, 12, 3072)
        if name == "arch-sdxl":
            text_encoder = CLIPTextModel(clip_l)
            text_encoder_2 = CLIPTextModelWithProjection(
                _clip_text_config(49408, 1280, 32, 20, 5120, act="gelu", projection=1280))
        elif name == "arch-sd21":
            text_encoder = CLIPTextModel(_clip_text_config(49408, 1024, 23, 16, 4096, act="gelu", projection=512))
        else:
            text_encoder = CLIPTextModel(clip_l)
    if name == "arch-sdxl":
        scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           timestep_spacing="leading", steps_offset=1)
        return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=build_tokenizer(), unet=unet,
                                         scheduler=scheduler)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=PRESETS[name].prediction_type)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


# ---------------------------------------------------------------- what is cached


def cached_pipelines() -> dict[str, str]:
    """Hub models in the local Hugging Face cache that have a pipeline: repo id → pipeline class.

    Read from the cache folder itself (models--ORG--NAME/snapshots/*/model_index.json), so it
    works offline and never downloads.
    """
    found: dict[str, str] = {}
    root = Path(_hub_cache_dir())
    if not root.is_dir():
        return found
    for repo in sorted(root.glob("models--*")):
        repo_id = repo.name[len("models--"):].replace("--", "/", 1)
        for index in sorted(repo.glob("snapshots/*/model_index.json")):
            try:
                found[repo_id] = json.loads(index.read_text()).get("_class_name", "")
                break
            except (OSError, json.JSONDecodeError):
                continue
    return found
