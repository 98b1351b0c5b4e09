"""Video model presets and their token layout facts (no weights needed).

A layout is what radial attention needs: latent frames F, tokens per frame S and text
tokens, derived from the pixel frame count and size by each model's VAE and patch ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen.attention.radial import VideoLayout
from gen.errors import GenError


@dataclass(frozen=True)
class VideoPreset:
    name: str
    repo_id: str | None
    flavour: str  # "wan" or "hunyuan"
    source: str  # "hub", "tiny" or "arch"
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
    description: str = ""

    @property
    def size_multiple(self) -> int:
        return self.spatial_ratio * self.patch[1]


VIDEO_PRESETS: dict[str, VideoPreset] = {
    p.name: p
    for p in [
        VideoPreset("wan2.1-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan", "hub", 81, 832, 480, 50, 5.0,
                    0.2, 1, 12, description="Wan2.1 text-to-video 1.3B"),
        VideoPreset("wan2.1-14b", "Wan-AI/Wan2.1-T2V-14B-Diffusers", "wan", "hub", 81, 1280, 720, 50, 5.0,
                    0.2, 1, 12, description="Wan2.1 text-to-video 14B"),
        VideoPreset("wan2.2-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "wan", "hub", 81, 1280, 720, 40, 4.0,
                    0.2, 1, 12, description="Wan2.2 text-to-video A14B (two transformers)"),
        VideoPreset("hunyuan-video", "hunyuanvideo-community/HunyuanVideo", "hunyuan", "hub", 129, 1280, 720, 50,
                    6.0, 0.95, 0, 12, text_tokens=256, description="HunyuanVideo"),
        VideoPreset("tiny-wan", None, "wan", "tiny", 17, 64, 64, 4, 5.0, 0.2, 1, 1,
                    description="tiny random Wan-shaped model (offline tests and demos)"),
        VideoPreset("tiny-hunyuan", None, "hunyuan", "tiny", 17, 64, 64, 4, 6.0, 0.95, 0, 1, text_tokens=16,
                    description="tiny random HunyuanVideo-shaped model (offline tests and demos)"),
        VideoPreset("arch-wan-1.3b", None, "wan", "arch", 81, 832, 480, 50, 5.0, 0.2, 1, 12,
                    description="Wan2.1-1.3B architecture, random weights (benchmarks)"),
    ]
}


def video_preset(name: str) -> VideoPreset:
    if name not in VIDEO_PRESETS:
        raise GenError(f"unknown video model {name!r}; video presets: {', '.join(VIDEO_PRESETS)}")
    return VIDEO_PRESETS[name]


def check_video_shape(preset: VideoPreset, frames: int, width: int, height: int) -> None:
    """Frame counts the VAE can take (temporal ratio·k + 1) and sizes on the patch grid."""
    t = preset.temporal_ratio
    if frames < 1 or (frames - 1) % t:
        below = max(1, (frames - 1) // t * t + 1)
        raise GenError(f"{preset.name} takes {t}k+1 frames; {frames} is not one: nearest valid {below} or {below + t}")
    m = preset.size_multiple
    for label, value in (("width", width), ("height", height)):
        if value < m or value > 4096:
            raise GenError(f"{label} {value} is out of range; allowed: {m} to 4096 pixels")
        if value % m:
            below = value // m * m
            options = " or ".join(str(v) for v in (below, below + m) if v >= m)
            raise GenError(f"{label} {value} is not a multiple of {m}; nearest valid: {options}")


def video_layout(preset: VideoPreset, frames: int, width: int, height: int, decay: float | None = None,
                 text_tokens: int | None = None) -> VideoLayout:
    """The attention token layout of a video of `frames` pixel frames at width×height."""
    check_video_shape(preset, frames, width, height)
    latent_frames = 1 + (frames - 1) // preset.temporal_ratio
    f = latent_frames // preset.patch[0]
    h = height // preset.spatial_ratio // preset.patch[1]
    w = width // preset.spatial_ratio // preset.patch[2]
    return VideoLayout(
        frames=f, tokens_per_frame=h * w,
        text_tokens=preset.text_tokens if text_tokens is None else text_tokens,
        flavour=preset.flavour, decay=preset.decay if decay is None else decay,
    )
