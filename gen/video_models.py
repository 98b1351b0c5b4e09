"""Video model presets, the inputs each takes, and their token layout facts (no weights needed).

A layout is what radial attention needs: latent frames F, tokens per frame S and text
tokens, derived from the pixel frame count and size by each model's VAE and patch ratios.
Presets of diffusers folders and hub ids are derived from their config files, loaded pipelines
from their components' configs (`preset_for_pipeline`), by the same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from gen.attention.radial import VideoLayout
from gen.errors import FieldError, GenError
from gen.jsonio import loads
from gen.loading import HUB_ID, hub_offline

INPUT_MODES = ("none", "optional", "required")
DEFAULT_STRENGTH = 0.8  # video-to-video, as diffusers' WanVideoToVideoPipeline


@dataclass(frozen=True)
class VideoPreset:
    name: str
    repo_id: str | None
    flavour: str  # "wan" or "hunyuan"
    source: str  # "hub", "local" (a diffusers folder), "pipe" (a loaded pipeline), "tiny" or "arch"
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
    heads: int = 0  # attention heads of the transformer: context parallelism splits them (0: not known)
    max_positions: int | None = None  # rotary positions per axis (Wan: rope_max_seq_len); None: no limit
    description: str = ""
    pipeline: str = "WanPipeline"  # the diffusers class of its folder
    image: str = "none"  # a first-frame image: "none", "optional" or "required"
    last_image: str = "none"  # a last-frame image
    video: str = "none"  # an input video (video-to-video, with `strength`)
    bucket: int | None = None  # HunyuanVideo 1.5 I2V: the size is the model's bucket near this, for the image's aspect
    extra_frames: int = 0  # frames the pipeline generates beyond the asked ones and drops (HunyuanVideo-I2V 33ch)

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


_WAN21 = dict(flavour="wan", decay=0.2, dense_layers=1, dense_steps=12, max_positions=1024, heads=40)  # the 14Bs
_WAN22 = dict(_WAN21, decay=0.8, dense_steps=11)  # the reference's Wan2.2 settings
_HUNYUAN = dict(flavour="hunyuan", decay=0.95, dense_layers=0, dense_steps=12, heads=24)
_HUNYUAN15 = dict(_HUNYUAN, spatial_ratio=16, patch=(1, 1, 1), heads=16,
                  text_tokens=729 + 256 + 1000)  # image, ByT5, MLLM
_TINY = dict(dense_steps=1, heads=2)
_HY_I2V_TEXT = 576 // 4 + 252  # LLaVA image tokens (every 4th for token_replace) + prompt after the template crop


def _preset(name, repo_id, source, frames, width, height, steps, guidance, family, **facts) -> VideoPreset:
    return VideoPreset(name, repo_id, source=source, frames=frames, width=width, height=height, steps=steps,
                       guidance=guidance, **{**family, **facts})


VIDEO_PRESETS: dict[str, VideoPreset] = {
    p.name: p
    for p in [
        _preset("wan2.1-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "hub", 81, 832, 480, 50, 5.0, _WAN21,
                video="optional", heads=12, description="Wan2.1 text-to-video 1.3B (and video-to-video)"),
        _preset("wan2.1-14b", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "hub", 81, 1280, 720, 50, 5.0, _WAN21,
                video="optional", description="Wan2.1 text-to-video 14B (and video-to-video)"),
        _preset("wan2.2-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "hub", 81, 1280, 720, 40, 4.0, _WAN22,
                description="Wan2.2 text-to-video A14B (two transformers)"),
        _preset("wan2.1-i2v-480p", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "hub", 81, 832, 480, 50, 5.0, _WAN21,
                pipeline="WanImageToVideoPipeline", image="required", description="Wan2.1 image-to-video 14B, 480p"),
        _preset("wan2.1-i2v-720p", "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "hub", 81, 1280, 720, 50, 5.0, _WAN21,
                pipeline="WanImageToVideoPipeline", image="required", description="Wan2.1 image-to-video 14B, 720p"),
        _preset("wan2.1-flf2v-720p", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers", "hub", 81, 1280, 720, 50, 5.5, _WAN21,
                pipeline="WanImageToVideoPipeline", image="required", last_image="required",
                description="Wan2.1 first/last-frame-to-video 14B, 720p"),
        _preset("wan2.2-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", "hub", 81, 1280, 720, 40, 3.5, _WAN22,
                pipeline="WanImageToVideoPipeline", image="required", last_image="optional",
                description="Wan2.2 image-to-video A14B (two transformers)"),
        _preset("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "hub", 121, 1280, 704, 50, 5.0, _WAN22,
                spatial_ratio=16, image="optional", video="optional", heads=24,
                description="Wan2.2 text/image-to-video 5B (48-channel VAE, 16x spatial)"),
        _preset("hunyuan-video", "hunyuanvideo-community/HunyuanVideo", "hub", 129, 1280, 720, 50, 6.0, _HUNYUAN,
                pipeline="HunyuanVideoPipeline", text_tokens=256, description="HunyuanVideo"),
        _preset("hunyuan-video-i2v", "hunyuanvideo-community/HunyuanVideo-I2V", "hub", 129, 1280, 720, 50, 6.0,
                _HUNYUAN, pipeline="HunyuanVideoImageToVideoPipeline", text_tokens=_HY_I2V_TEXT, image="required",
                description="HunyuanVideo image-to-video"),
        _preset("hunyuan-video-1.5", "hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v", "hub", 121, 848, 480, 50,
                6.0, _HUNYUAN15, pipeline="HunyuanVideo15Pipeline", description="HunyuanVideo 1.5 text-to-video, 480p"),
        _preset("hunyuan-video-1.5-i2v", "hunyuanvideo-community/HunyuanVideo-1.5-480p_i2v", "hub", 121, 848, 480,
                50, 6.0, _HUNYUAN15, pipeline="HunyuanVideo15ImageToVideoPipeline", image="required", bucket=640,
                description="HunyuanVideo 1.5 image-to-video, 480p (size from the image's aspect ratio)"),
        _preset("tiny-wan", None, "tiny", 17, 64, 64, 4, 5.0, dict(_WAN21, **_TINY, max_positions=64),
                video="optional",
                description="tiny random Wan-shaped model (offline tests and demos)"),
        _preset("tiny-wan-i2v", None, "tiny", 17, 64, 64, 4, 5.0, dict(_WAN21, **_TINY, max_positions=64),
                pipeline="WanImageToVideoPipeline", image="required",
                description="tiny random Wan2.1-I2V-shaped model with a CLIP image encoder"),
        _preset("tiny-wan22-i2v", None, "tiny", 17, 64, 64, 4, 3.5, dict(_WAN22, **_TINY, max_positions=64),
                pipeline="WanImageToVideoPipeline", image="required", last_image="optional",
                description="tiny random Wan2.2-I2V-A14B-shaped model (two transformers)"),
        _preset("tiny-wan-ti2v", None, "tiny", 17, 64, 64, 4, 5.0, dict(_WAN22, **_TINY, max_positions=64),
                spatial_ratio=16,
                image="optional", video="optional", description="tiny random Wan2.2-TI2V-5B-shaped model"),
        _preset("tiny-hunyuan", None, "tiny", 17, 64, 64, 4, 6.0, dict(_HUNYUAN, **_TINY),
                pipeline="HunyuanVideoPipeline", text_tokens=256,
                description="tiny random HunyuanVideo-shaped model (offline tests and demos)"),
        _preset("tiny-hunyuan-i2v", None, "tiny", 17, 64, 64, 4, 6.0, dict(_HUNYUAN, **_TINY),
                pipeline="HunyuanVideoImageToVideoPipeline", text_tokens=_HY_I2V_TEXT, image="required",
                description="tiny random HunyuanVideo-I2V-shaped model (LLaVA text encoder)"),
        _preset("tiny-hunyuan15", None, "tiny", 17, 80, 48, 4, 6.0, dict(_HUNYUAN15, **_TINY),
                pipeline="HunyuanVideo15Pipeline", description="tiny random HunyuanVideo-1.5-shaped model"),
        _preset("tiny-hunyuan15-i2v", None, "tiny", 17, 80, 48, 4, 6.0, dict(_HUNYUAN15, **_TINY),
                pipeline="HunyuanVideo15ImageToVideoPipeline", image="required", bucket=64,
                description="tiny random HunyuanVideo-1.5-I2V-shaped model"),
        _preset("arch-wan-1.3b", None, "arch", 81, 832, 480, 50, 5.0, _WAN21, heads=12,
                description="Wan2.1-1.3B architecture, random weights (benchmarks)"),
    ]
}

# Pipelines the video path runs, and the preset whose defaults (frames, size, steps, warm-up) they take.
VIDEO_PIPELINES = {
    "WanPipeline": "wan2.1-1.3b", "WanImageToVideoPipeline": "wan2.1-i2v-480p",
    "WanVideoToVideoPipeline": "wan2.1-1.3b", "HunyuanVideoPipeline": "hunyuan-video",
    "HunyuanVideoImageToVideoPipeline": "hunyuan-video-i2v", "HunyuanVideo15Pipeline": "hunyuan-video-1.5",
    "HunyuanVideo15ImageToVideoPipeline": "hunyuan-video-1.5-i2v",
}


def video_preset(name: str) -> VideoPreset:
    """A preset by name, or one derived from a local diffusers folder or a hub id (config files only).

    Layout facts (VAE ratios, patch size, text tokens) come from the model's own configs; defaults
    come from the preset of its family.
    """
    if name in VIDEO_PRESETS:
        return VIDEO_PRESETS[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return _derived_preset(name, str(path), "local", lambda file: path / file)
    if HUB_ID.match(name) and not path.exists():
        return _derived_preset(name, name, "hub", lambda file: _hub_config(name, file))
    raise GenError(f"unknown video model {name!r}; video presets: {', '.join(VIDEO_PRESETS)}; or a local "
                   "diffusers folder or hub id of a Wan or HunyuanVideo (1.5) pipeline")


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

    index = read("model_index.json")
    class_name = index.get("_class_name", "")
    _check_supported(name, class_name)
    transformer_folder = "transformer" if _component(index.get("transformer")) else "transformer_2"
    return preset_from_configs(name, location, source, class_name, index, read("vae/config.json"),
                               read(f"{transformer_folder}/config.json"))


def _check_supported(name: str, class_name: str) -> None:
    if class_name not in VIDEO_PIPELINES:
        raise GenError(f"model {name!r} is a {class_name or 'unknown pipeline'}; video supports "
                       f"{', '.join(VIDEO_PIPELINES)}")


def _component(entry) -> bool:
    """Whether a model_index entry names a component (`[library, class]`, not `[null, null]`)."""
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1] is not None


def preset_from_configs(name: str, location: str | None, source: str, class_name: str, index: dict, vae: dict,
                        transformer: dict) -> VideoPreset:
    """A preset from a pipeline's class and its model_index, VAE and transformer configs: the family preset's
    defaults with this model's layout facts and the inputs its pipeline takes."""
    base = VIDEO_PRESETS[_family_preset(class_name, index, transformer)]
    if class_name.startswith("Wan"):
        spatial, temporal = vae.get("scale_factor_spatial", 8), vae.get("scale_factor_temporal", 4)
        patch = tuple(transformer.get("patch_size", (1, 2, 2)))
        max_positions = int(transformer.get("rope_max_seq_len", 1024))
    else:
        spatial, temporal = vae.get("spatial_compression_ratio", 8), vae.get("temporal_compression_ratio", 4)
        size = transformer.get("patch_size", 2)
        patch = (transformer.get("patch_size_t", 1), size, size)
        max_positions = None
    facts = dict(spatial_ratio=int(spatial), temporal_ratio=int(temporal), patch=tuple(int(p) for p in patch),
                 max_positions=max_positions, heads=int(transformer.get("num_attention_heads", 0) or 0))
    if class_name == "WanVideoToVideoPipeline":
        facts.update(pipeline=class_name, video="required")
    if class_name == "HunyuanVideoImageToVideoPipeline" and transformer.get("image_condition_type") == "latent_concat":
        facts.update(extra_frames=4, text_tokens=576 // 2 + 252)  # every 2nd image token; 4 frames dropped
    if base.bucket is not None:
        facts["bucket"] = int(transformer.get("target_size", base.bucket))
    return replace(base, name=name, repo_id=location, source=source, description=f"{class_name} from {location}",
                   **facts)


def _family_preset(class_name: str, index: dict, transformer: dict) -> str:
    """The preset whose defaults and inputs a pipeline of this class and config takes."""
    two_experts = _component(index.get("transformer_2")) or index.get("boundary_ratio") is not None
    if class_name == "WanPipeline":
        return "wan2.2-a14b" if two_experts else "wan2.2-ti2v-5b" if index.get("expand_timesteps") else "wan2.1-1.3b"
    if class_name == "WanImageToVideoPipeline":
        if two_experts:
            return "wan2.2-i2v-a14b"
        return "wan2.1-flf2v-720p" if transformer.get("pos_embed_seq_len") else "wan2.1-i2v-480p"
    return VIDEO_PIPELINES[class_name]


def preset_for_pipeline(pipe) -> VideoPreset:
    """The preset of a loaded diffusers pipeline, from its components' configs (what `from_pretrained` read)."""
    class_name = type(pipe).__name__
    _check_supported(class_name, class_name)
    transformer = getattr(pipe, "transformer", None) or getattr(pipe, "transformer_2", None)
    index = {key: list(value) if isinstance(value, tuple) else value for key, value in dict(pipe.config).items()}
    return preset_from_configs(getattr(pipe, "name_or_path", None) or class_name, getattr(pipe, "name_or_path", None),
                               "pipe", class_name, index, dict(pipe.vae.config), dict(transformer.config))


# ----------------------------------------------------------------------------- checks


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
        most_frames = (limit * preset.patch[0] - 1) * t + 1 - preset.extra_frames
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


MAX_CONTEXT_PARALLEL = 64


def check_context_parallel(preset: VideoPreset, degree: int, frames: int, width: int, height: int) -> None:
    """A video can be split over `degree` ranks (Ulysses): the model's heads and the video's tokens divide by it,
    and the model can run sharded. Checked before any process starts or any weight loads."""
    if degree == 1:
        return
    if not 1 <= degree <= MAX_CONTEXT_PARALLEL:
        raise FieldError("context_parallel", f"{{name}} must be between 1 and {MAX_CONTEXT_PARALLEL}, got {degree}")
    if preset.pipeline == "HunyuanVideoImageToVideoPipeline" and preset.extra_frames == 0:
        raise FieldError("context_parallel", f"{preset.name} cannot run on several GPUs ({{name}}): its first "
                         "frame's tokens are modulated apart from the others (token_replace), which a sequence "
                         "shard cannot tell; run it on one GPU")
    if preset.heads and preset.heads % degree:
        from gen.attention.ulysses import head_divisors

        valid = head_divisors(preset.heads)
        raise FieldError("context_parallel", f"{{name}} {degree} does not divide the {preset.heads} attention heads "
                         f"of {preset.name}; degrees that do: {', '.join(map(str, valid))}")
    tokens = video_token_count(preset, frames, width, height)
    if tokens % degree:
        raise FieldError("context_parallel", f"{{name}} {degree} does not divide the {tokens:,} video tokens of "
                         f"{frames} frames at {width}x{height}; change the frames or the size")


def presets_taking(kind: str) -> str:
    """Presets that take an input of this kind (image, last_image, video), for messages."""
    return ", ".join(n for n, p in VIDEO_PRESETS.items() if getattr(p, kind) != "none" and p.source != "arch")


def check_video_inputs(preset: VideoPreset, image: bool = False, last_image: bool = False, video: bool = False,
                       strength: float | None = None, steps: int | None = None, size_given: bool = False) -> None:
    """The inputs a model takes (which are allowed, which required) and video-to-video's strength. Errors name
    the input's field (`image`, `last_image`, `video`, `strength`), which each face words its own way."""
    name = preset.name
    if image and video:
        raise FieldError("video", "{name} and an input image cannot both be given")
    if last_image and not image:
        raise FieldError("last_image", "{name} needs a first image too")
    wanted = {"image": "a first-frame image", "last_image": "a last-frame image", "video": "an input video"}
    for field, given in (("image", image), ("last_image", last_image), ("video", video)):
        mode = getattr(preset, field)
        if given and mode == "none":
            raise FieldError(field, f"{name} takes no {{name}}; models that do: {presets_taking(field)}")
        if not given and mode == "required" and not (field == "image" and video):
            raise FieldError(field, f"{name} needs {wanted[field]} ({{name}})")
    if strength is not None:
        if not video:
            raise FieldError("strength", "{name} applies to video-to-video only: give an input video too")
        if not (math.isfinite(strength) and 0 < strength <= 1):
            raise FieldError("strength", f"{{name}} must be > 0 and <= 1, got {strength}")
        if steps is not None and int(steps * strength) < 1:
            raise FieldError("strength", f"{{name}} {strength} with {steps} steps runs no denoising step; "
                             "raise it or the steps")
    if size_given and preset.bucket is not None:
        raise FieldError("width", f"{name} takes its output size from the input image's aspect ratio; leave "
                         "{name} and height unset")


def pipeline_class_for(preset: VideoPreset, image: bool = False, video: bool = False) -> str:
    """The diffusers pipeline a call runs: the model's own, or the one sharing its components for an image
    (Wan2.2-TI2V-5B) or a video (Wan text-to-video models)."""
    if video and preset.pipeline == "WanPipeline":
        return "WanVideoToVideoPipeline"
    if image and preset.pipeline == "WanPipeline":
        return "WanImageToVideoPipeline"
    return preset.pipeline


def check_pipeline_dependencies(pipeline_class: str) -> None:
    """Packages a diffusers pipeline needs beyond gen's own (checked before any model loads)."""
    import importlib.util

    if pipeline_class in ("WanImageToVideoPipeline", "WanVideoToVideoPipeline") and \
            importlib.util.find_spec("ftfy") is None:
        raise GenError(f"diffusers' {pipeline_class} needs ftfy: pip install 'gen[video]' (or pip install ftfy)")


def bucket_size(preset: VideoPreset, image_width: int, image_height: int) -> tuple[int, int]:
    """(width, height) HunyuanVideo 1.5 I2V generates for an image of this aspect ratio (the model's own buckets)."""
    from diffusers.pipelines.hunyuan_video1_5.image_processor import HunyuanVideo15ImageProcessor

    processor = HunyuanVideo15ImageProcessor(vae_scale_factor=preset.spatial_ratio)
    height, width = processor.calculate_default_height_width(image_height, image_width, preset.bucket)
    return int(width), int(height)


def check_lora_file(path: str) -> None:
    """LoRA weights must be an existing safetensors file (pickled formats can run code)."""
    file = Path(path)
    if not file.is_file():
        raise GenError(f"LoRA file {path!r} does not exist")
    if file.suffix != ".safetensors":
        raise GenError(f"LoRA {file.name}: only .safetensors files are loaded (pickled weights can run code)")


def latent_frames(preset: VideoPreset, frames: int) -> int:
    """Latent frames the transformer sees for `frames` output frames."""
    return 1 + (frames + preset.extra_frames - 1) // preset.temporal_ratio


def video_token_count(preset: VideoPreset, frames: int, width: int, height: int) -> int:
    """Video tokens after the VAE and patching: latent frames / p_t × (h / p_h) × (w / p_w)."""
    return (latent_frames(preset, frames) // preset.patch[0] * (height // preset.spatial_ratio // preset.patch[1])
            * (width // preset.spatial_ratio // preset.patch[2]))


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
