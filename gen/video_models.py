"""Video model presets and their token layout facts (no weights needed).

A layout is what radial attention needs: latent frames F, tokens per frame S and text
tokens, derived from the pixel frame count and size by each model's VAE and patch ratios.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from gen.attention.radial import VideoLayout
from gen.errors import FieldError, GenError
from gen.jsonio import loads
from gen.loading import HUB_ID, hub_offline


@dataclass(frozen=True)
class VideoPreset:
    name: str
    repo_id: str | None
    flavour: str  # "wan" or "hunyuan"
    source: str  # "hub", "local" (a diffusers folder), "tiny" or "arch"
    frames: int  # default pixel frames
    width: int
    height: int
    steps: int
    guidance: float
    decay: float
    dense_layers: int
    dense_steps: int
    spatial_ratio: int = 8  # VAE
    temporal_ratio: int = 4  # VAE: F = 1 + (frames − 1) / 4
    patch: tuple[int, int, int] = (1, 2, 2)  # (frames, height, width)
    text_tokens: int = 0  # appended to the video tokens inside attention (HunyuanVideo)
    max_positions: int | None = None  # rotary positions per axis (Wan: rope_max_seq_len); None: no limit
    description: str = ""

    @property
    def is_random(self) -> bool:
        """Random weights (tiny and architecture presets): pictures are noise by design."""
        return self.source in ("tiny", "arch")

    @property
    def size_multiple(self) -> int:
        return self.spatial_ratio * self.patch[1]

    def shape(self, frames: int | None, width: int | None, height: int | None) -> tuple[int, int, int]:
        """(frames, width, height) with the model's defaults where not given."""
        return (self.frames if frames is None else frames, self.width if width is None else width,
                self.height if height is None else height)


VIDEO_PRESETS: dict[str, VideoPreset] = {
    p.name: p
    for p in [
        VideoPreset("wan2.1-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan", "hub", 81, 832, 480, 50, 5.0,
                    0.2, 1, 12, max_positions=1024, description="Wan2.1 text-to-video 1.3B"),
        VideoPreset("wan2.1-14b", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "wan", "hub", 81, 1280, 720, 50, 5.0,
                    0.2, 1, 12, max_positions=1024, description="Wan2.1 text-to-video 14B"),
        VideoPreset("wan2.2-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "wan", "hub", 81, 1280, 720, 40, 4.0,
                    0.2, 1, 12, max_positions=1024, description="Wan2.2 text-to-video A14B (two transformers)"),
        VideoPreset("hunyuan-video", "hunyuanvideo-community/HunyuanVideo", "hunyuan", "hub", 129, 1280, 720, 50,
                    6.0, 0.95, 0, 12, text_tokens=256, description="HunyuanVideo"),
        VideoPreset("tiny-wan", None, "wan", "tiny", 17, 64, 64, 4, 5.0, 0.2, 1, 1, max_positions=64,
                    description="tiny random Wan-shaped model (offline tests and demos)"),
        VideoPreset("tiny-hunyuan", None, "hunyuan", "tiny", 17, 64, 64, 4, 6.0, 0.95, 0, 1, text_tokens=16,
                    description="tiny random HunyuanVideo-shaped model (offline tests and demos)"),
        VideoPreset("arch-wan-1.3b", None, "wan", "arch", 81, 832, 480, 50, 5.0, 0.2, 1, 12, max_positions=1024,
                    description="Wan2.1-1.3B architecture, random weights (benchmarks)"),
    ]
}


# Pipelines the video path runs, and the preset whose defaults (frames, size, steps, warm-up) they take.
VIDEO_PIPELINES = {"WanPipeline": "wan2.1-1.3b", "HunyuanVideoPipeline": "hunyuan-video"}


def video_preset(name: str) -> VideoPreset:
    """A preset by name, or one derived from a local diffusers folder or a hub id (config files only).

    Layout facts (VAE ratios, patch size) come from the model's own configs; defaults come from
    the preset of its family (Wan2.1-1.3B or HunyuanVideo).
    """
    if name in VIDEO_PRESETS:
        return VIDEO_PRESETS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return _derived_preset(name, str(path), "local", lambda file: path / file)
    if HUB_ID.match(name) and not path.exists():
        return _derived_preset(name, name, "hub", lambda file: _hub_config(name, file))
    raise GenError(f"unknown video model {name!r}; video presets: {', '.join(VIDEO_PRESETS)}; or a local "
                   "diffusers folder or hub id of a WanPipeline or HunyuanVideoPipeline")


def offline_video_presets() -> str:
    """The video presets that need no download, for messages."""
    return ", ".join(n for n, p in VIDEO_PRESETS.items() if p.source == "tiny")


def _hub_config(repo_id: str, file: str):
    """A config file of a hub model: from the cache first; downloaded only if that is allowed."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, file, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: try the hub below, unless offline
        if hub_offline():
            reason = "HF_HUB_OFFLINE is set"
        else:
            try:
                return hf_hub_download(repo_id, file)
            except Exception as exc:  # noqa: BLE001 - unreachable, unknown repo, gated: one line
                reason = type(exc).__name__
    raise GenError(f"video model {repo_id!r}: {file} is not in the Hugging Face cache and cannot be downloaded "
                   f"({reason}); download the model where the hub is reachable (`hf download {repo_id}`), "
                   f"pass a local folder, or use an offline preset: {offline_video_presets()}")


def _derived_preset(name: str, location: str, source: str, config_file) -> VideoPreset:
    def read(file: str) -> dict:
        try:
            data = Path(config_file(file)).read_bytes()
        except OSError:
            raise GenError(f"video model {name!r} has no {file}; is it a diffusers pipeline folder?") from None
        config = loads(data, f"video model {name!r}: {file}")
        if not isinstance(config, dict):
            raise GenError(f"video model {name!r}: {file} is not a JSON object")
        return config

    class_name = read("model_index.json").get("_class_name", "")
    if class_name not in VIDEO_PIPELINES:
        raise GenError(f"model {name!r} is a {class_name or 'unknown pipeline'}; video supports "
                       f"{' and '.join(VIDEO_PIPELINES)}")
    vae, transformer = read("vae/config.json"), read("transformer/config.json")
    max_positions = None
    if class_name == "WanPipeline":
        spatial, temporal = vae.get("scale_factor_spatial", 8), vae.get("scale_factor_temporal", 4)
        patch = transformer.get("patch_size", (1, 2, 2))
        max_positions = int(transformer.get("rope_max_seq_len", 1024))
    else:
        spatial, temporal = vae.get("spatial_compression_ratio", 8), vae.get("temporal_compression_ratio", 4)
        size = transformer.get("patch_size", 2)
        patch = (transformer.get("patch_size_t", 1), size, size)
    return replace(VIDEO_PRESETS[VIDEO_PIPELINES[class_name]], name=name, repo_id=location, source=source,
                   spatial_ratio=int(spatial), temporal_ratio=int(temporal), patch=tuple(int(p) for p in patch),
                   max_positions=max_positions, description=f"{class_name} from {location}")


MAX_VIDEO_TOKENS = 2**20  # attention tokens of one video (~1M): its masks and buffers are then a few hundred MB


def check_video_shape(preset: VideoPreset, frames: int, width: int, height: int) -> None:
    """Frame counts the VAE can take (temporal ratio·k + 1), sizes on the patch grid, and nothing larger
    than the model's rotary positions reach or than gen can hold (checked before anything is allocated)."""
    t = preset.temporal_ratio
    if frames < 1 or (frames - 1) % t:
        below = max(1, (frames - 1) // t * t + 1)
        raise FieldError("frames", f"{preset.name} takes {t}k+1 frames; {frames} is not one: "
                         f"nearest valid {below} or {below + t}")
    m = preset.size_multiple
    for label, value in (("width", width), ("height", height)):
        if value < m or value > 4096:
            raise FieldError(label, f"{{name}} {value} is out of range; allowed: {m} to 4096 pixels")
        if value % m:
            below = value // m * m
            options = " or ".join(str(v) for v in (below, below + m) if v >= m)
            raise FieldError(label, f"{{name}} {value} is not a multiple of {m}; nearest valid: {options}")
    limit = preset.max_positions
    if limit is not None:
        most_frames = (limit * preset.patch[0] - 1) * t + 1
        if latent_frames(preset, frames) // preset.patch[0] > limit:
            raise FieldError("frames", f"{{name}} {frames} is more than {preset.name} takes: at most {most_frames} "
                             f"frames (its rotary positions reach {limit} latent frames)")
        for label, value in (("width", width), ("height", height)):
            if value // m > limit:
                raise FieldError(label, f"{{name}} {value} is more than {preset.name} takes: at most {limit * m} pixels")
    tokens = video_token_count(preset, frames, width, height) + preset.text_tokens
    if tokens > MAX_VIDEO_TOKENS:
        raise FieldError("frames", f"{frames} frames at {width}x{height} are {tokens:,} attention tokens, more than "
                         f"gen handles ({MAX_VIDEO_TOKENS:,}); ask for fewer frames or a smaller size")


def latent_frames(preset: VideoPreset, frames: int) -> int:
    return 1 + (frames - 1) // preset.temporal_ratio


def video_token_count(preset: VideoPreset, frames: int, width: int, height: int) -> int:
    """Video tokens after the VAE and patching: latent frames / p_t × (h / p_h) × (w / p_w)."""
    return (latent_frames(preset, frames) // preset.patch[0] * (height // preset.spatial_ratio // preset.patch[1])
            * (width // preset.spatial_ratio // preset.patch[2]))


def check_lora_file(path: str) -> None:
    """LoRA weights must be an existing safetensors file (pickled formats can run code)."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise GenError(f"LoRA file {path!r} does not exist")
    if file.suffix != ".safetensors":
        raise GenError(f"LoRA {file.name}: only .safetensors files are loaded (pickled weights can run code)")


def video_layout(preset: VideoPreset, frames: int, width: int, height: int, decay: float | None = None,
                 text_tokens: int | None = None) -> VideoLayout:
    """The attention token layout of a video of `frames` pixel frames at width×height."""
    check_video_shape(preset, frames, width, height)
    f = latent_frames(preset, frames) // preset.patch[0]
    h = height // preset.spatial_ratio // preset.patch[1]
    w = width // preset.spatial_ratio // preset.patch[2]
    return VideoLayout(
        frames=f, tokens_per_frame=h * w,
        text_tokens=preset.text_tokens if text_tokens is None else text_tokens,
        flavour=preset.flavour, decay=preset.decay if decay is None else decay,
    )


# ----------------------------------------------------------------------------- building and loading


def load_video_pipeline(name: str, device: str | None = None, dtype: str | None = None):
    """(diffusers pipeline, preset, device, dtype) for a video preset; bf16 on GPU by default."""
    from gen.loading import choose_device, choose_dtype, pipeline_from_pretrained
    from gen.tiny_models import tiny_preset_path

    preset = video_preset(name)
    if preset.source == "arch":
        raise GenError(f"{name} is an architecture preset for benchmarks (transformer only); "
                       "use benchmarks/radial_attention.py or a real or tiny model")
    dev = choose_device(device)
    torch_dtype = choose_dtype(dev, dtype or (None if dev.type == "cpu" else "bf16"))
    location = str(tiny_preset_path(name)) if preset.source == "tiny" else preset.repo_id
    pipe = pipeline_from_pretrained(location, name, torch_dtype, offline_video_presets()).to(dev)
    pipe.set_progress_bar_config(leave=False)
    return pipe, preset, dev, torch_dtype


