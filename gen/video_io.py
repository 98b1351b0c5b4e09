"""Videos in and out: reading an input video's frames, writing H.264 MP4 that browsers play (via imageio-ffmpeg),
PNG frames and the JSON sidecar, and the content hashes of inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gen.errors import GenError
from gen.jsonio import dumps, loads
from gen.outputs import atomic_write

MAX_INPUT_SIDE = 8192  # input video frames larger than this are refused rather than decoded


def to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) floats in [0, 1] (diffusers' "np" output) → uint8."""
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 16, overwrite: bool = False,
              metadata: dict[str, Any] | None = None) -> Path:
    """H.264, yuv420p (what browsers play), written atomically; `metadata` (gen's parameters) goes into the
    file's `comment` tag as JSON, as a PNG carries its parameters."""
    imageio_ffmpeg = _ffmpeg()
    frames = to_uint8_frames(frames)
    _, height, width, _ = frames.shape
    tags = ["-metadata", f"comment={dumps(metadata, sort_keys=True)}"] if metadata is not None else []

    def write(tmp: Path) -> None:
        writer = imageio_ffmpeg.write_frames(str(tmp), (width, height), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", quality=8, macro_block_size=8,
                                             ffmpeg_log_level="error", output_params=tags)
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()

    return atomic_write(path, write, overwrite=overwrite)


def read_mp4_info(path: str | Path) -> dict[str, Any]:
    """Frame count, size and fps of a video file (decodes it: exact, for checks)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    count = sum(1 for _ in reader)
    return {"frames": count, "width": meta["size"][0], "height": meta["size"][1], "fps": meta["fps"],
            "codec": meta.get("codec")}


def read_mp4_metadata(path: str | Path) -> dict[str, Any] | None:
    """The parameters `write_mp4` put into a video's `comment` tag; None when it has none that are gen's."""
    import re
    import subprocess

    imageio_ffmpeg = _ffmpeg()
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                            capture_output=True, timeout=60)
    if result.returncode != 0:
        raise GenError(f"{Path(path).name} cannot be read as a video")
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("comment="):
            text = re.sub(r"\\(.)", r"\1", line[len("comment="):])  # ffmetadata escapes = ; # \ and newlines
            try:
                params = loads(text, f"{Path(path).name} comment")
            except GenError:
                return None
            return params if isinstance(params, dict) and params.get("kind") == "video" else None
    return None


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise GenError("reading and writing MP4 needs the video extra: pip install 'gen[video]'") from None
    return imageio_ffmpeg


def video_frame_count(path: str | Path, label: str = "input video") -> int:
    """The number of frames of a video file (ffmpeg counts them: exact, without keeping any); a one-line
    error when the file is missing or not a video ffmpeg can read."""
    path = Path(path)
    if not path.is_file():
        raise GenError(f"{label} {str(path)!r} does not exist or is not a file")
    try:
        frames, _ = _ffmpeg().count_frames_and_secs(str(path))
    except (RuntimeError, OSError, ValueError, StopIteration):
        raise GenError(f"{label} {path.name} cannot be read as a video (corrupt, or not a video file?)") from None
    if frames < 1:
        raise GenError(f"{label} {path.name} has no frames")
    return int(frames)


def read_video(path: str | Path, frames: int, label: str = "input video") -> list[np.ndarray]:
    """The first `frames` frames of a video file as (H, W, 3) uint8 arrays; refused in one line when the file
    cannot be read, has fewer frames, or frames larger than MAX_INPUT_SIDE pixels."""
    path = Path(path)
    if not path.is_file():
        raise GenError(f"{label} {str(path)!r} does not exist or is not a file")
    try:
        reader = _ffmpeg().read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        if max(width, height) > MAX_INPUT_SIDE:
            reader.close()
            raise GenError(f"{label} {path.name} is {width}x{height}; frames up to {MAX_INPUT_SIDE} pixels a side "
                           "are read, downscale it first")
        out = []
        for raw in reader:
            out.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
            if len(out) == frames:
                break
        reader.close()
    except (RuntimeError, OSError, ValueError, StopIteration):
        raise GenError(f"{label} {path.name} cannot be read as a video (corrupt, or not a video file?)") from None
    if len(out) < frames:
        raise GenError(f"{label} {path.name} has {len(out)} frames; {frames} are needed (give fewer frames or a "
                       "longer video)")
    return out


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (what `sha256sum` prints), recorded so a run can be reproduced."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(video: str | Path) -> Path:
    return Path(video).with_suffix(".json")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """A video's parameters: from its sidecar (OUT.json beside OUT.mp4), given either file."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise GenError(f"{Path(path).name} has no parameter sidecar ({sidecar.name} not found)")
    params = loads(sidecar.read_bytes(), sidecar.name)
    if not isinstance(params, dict) or params.get("kind") != "video":
        raise GenError(f"{sidecar.name} is not a gen video sidecar (no \"kind\": \"video\")")
    return params


def write_sidecar(video: str | Path, params: dict[str, Any], overwrite: bool = False) -> Path:
    text = dumps(params, indent=2, sort_keys=True)
    return atomic_write(sidecar_path(video), lambda tmp: tmp.write_text(text), overwrite=overwrite)


def frame_file(folder: str | Path, index: int) -> Path:
    """Where frame `index` (from 0) of a video's PNG frames goes: frame_0001.png, …"""
    return Path(folder) / f"frame_{index + 1:04d}.png"


def write_png_frames(folder: str | Path, frames: np.ndarray, overwrite: bool = False,
                     keep_existing: bool = False) -> list[Path]:
    """frame_0001.png, …; `keep_existing` leaves frames an interrupted run already wrote."""
    from PIL import Image

    frames = to_uint8_frames(frames)
    paths = []
    for index, frame in enumerate(frames):
        path = frame_file(folder, index)
        if not (keep_existing and path.exists()):
            image = Image.fromarray(frame)
            atomic_write(path, lambda tmp, image=image: image.save(tmp, format="PNG"), overwrite=overwrite)
        paths.append(path)
    return paths
