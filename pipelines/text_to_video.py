"""Video from text, a first (and last) frame or an input video, with radial sparse attention and dense warm-up.

    from pipelines import TextToVideoPipeline

    pipe = TextToVideoPipeline.from_pretrained("wan2.1-1.3b")
    out = pipe("a red fox running through snow", frames=81, width=832, height=480, seed=1)
    write_mp4("fox.mp4", out.frames)

    pipe = TextToVideoPipeline.from_pretrained("wan2.1-i2v-480p")
    out = pipe("the fox turns its head", image="fox.png", seed=1)

One video on several GPUs (context parallelism), in a script started by `torchrun --nproc-per-node 4`:

    from gen.distributed import init_ranks

    init_ranks()                                      # torch.distributed, each rank on its GPU
    pipe = TextToVideoPipeline.from_pretrained("wan2.1-14b", context_parallel=4)
    out = pipe("a red fox running through snow", seed=1)
    if pipe.is_main_process:                          # rank 0 has the frames
        write_mp4("fox.mp4", out.frames)

A stock diffusers Wan or HunyuanVideo (1.5) pipeline runs unchanged: the model decides which inputs
it takes (`gen.video_models.check_video_inputs`); text-to-video models that also take an image or a
video get the matching diffusers pipeline through its `from_pipe` (same components, no second load).
Radial processors sit on the self-attention layers of its transformer(s) for the duration of the call
(`gen.attention.video.radial_attention`).

Under context parallelism (diffusers' Ulysses, `gen.attention.video.enable_context_parallel`) every rank
runs the same call on its shard of the sequence and gets the whole denoised latents; only rank 0
decodes them into frames.

Input images are read as `gen style` reads them (any mode; unreadable files refused) and fitted to
the output size by scaling to cover it and cropping the centre; HunyuanVideo 1.5 I2V picks its
output size from the image's aspect ratio (the model's own buckets) and is fitted the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

import gen
from gen.attention.radial import GRANULARITIES
from gen.attention.video import (RadialConfig, RadialStats, enable_context_parallel, install_radial, pipeline_clock,
                                 pipeline_transformers)
from gen.errors import GenError
from gen.images import cover_resize, load_image
from gen.loading import dtype_name
from gen.validation import check_guidance, check_radial_settings, check_seed, check_steps
from gen.video_models import (DEFAULT_STRENGTH, VideoPreset, bucket_size, check_context_parallel,
                              check_pipeline_dependencies, check_video_inputs, check_video_shape, load_video_pipeline,
                              pipeline_class_for, preset_for_pipeline, video_layout)

if TYPE_CHECKING:
    from diffusers import ContextParallelConfig

ATTENTION_MODES = ("radial", "dense")
StepCallback = Callable[[int, int], None]
ImageInput = str | Path | Image.Image
VideoInput = str | Path | Sequence[Image.Image | np.ndarray]


OUTPUT_TYPES = ("np", "latent")


@dataclass
class TextToVideoOutput:
    frames: np.ndarray | None  # (F, H, W, 3) float in [0, 1]; None for output_type "latent" and on ranks but 0
    parameters: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    latents: np.ndarray | None = None  # (channels, latent frames, h, w) float32: output_type "latent", ranks but 0


@dataclass
class VideoInputs:
    """The conditioning inputs of one call, fitted to the output size, with the names and hashes recorded."""

    image: Image.Image | None = None
    last_image: Image.Image | None = None
    video: list[Image.Image] | None = None
    names: dict[str, str | None] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        if self.video is not None:
            return "video-to-video"
        if self.last_image is not None:
            return "first-last-frame-to-video"
        return "image-to-video" if self.image is not None else "text-to-video"


class TextToVideoPipeline:
    def __init__(self, pipe, preset: VideoPreset, device, dtype):
        self.pipe, self.preset, self.device, self.dtype = pipe, preset, device, dtype
        self.loras: list[tuple[str, float]] = []
        self.context_parallel = 1  # ranks one video is split over (enable_context_parallel)
        self._variants = {type(pipe).__name__: pipe}

    @classmethod
    def from_pretrained(cls, model: str, *, device: str | None = None, dtype: str | None = None,
                        context_parallel: int | ContextParallelConfig | None = None) -> TextToVideoPipeline:
        """`context_parallel`: split each video over this many ranks (or a diffusers ContextParallelConfig with a
        Ulysses degree); needs torch.distributed initialised, one process per rank. Each rank then loads onto its
        own GPU (`cuda:LOCAL_RANK`) unless `device` says otherwise."""
        if context_parallel is not None:
            from gen.distributed import rank_device

            _check_context_parallel_setup(context_parallel)  # before a long load
            device = rank_device(device)
        pipe = cls(*load_video_pipeline(model, device=device, dtype=dtype))
        if context_parallel is not None:
            pipe.enable_context_parallel(context_parallel)
        return pipe

    @classmethod
    def from_pipe(cls, pipe, preset: VideoPreset | None = None,
                  context_parallel: int | ContextParallelConfig | None = None) -> TextToVideoPipeline:
        """Wrap a diffusers Wan or HunyuanVideo (1.5) pipeline already loaded, reusing its components (diffusers'
        `from_pipe` convention: no second load). Layout facts and defaults come from its components' configs."""
        wrapped = cls(pipe, preset or preset_for_pipeline(pipe), pipe.device, pipe.dtype)
        if context_parallel is not None:
            wrapped.enable_context_parallel(context_parallel)
        return wrapped

    def enable_context_parallel(self, parallel: int | ContextParallelConfig) -> None:
        """Split each video over ranks (diffusers' Ulysses context parallelism, the degree or a ready config): once,
        after any LoRA. Every rank must make the same calls; rank 0 (`is_main_process`) gets the frames."""
        import torch.distributed as dist

        if self.context_parallel > 1:
            raise GenError(f"context parallelism is already enabled ({self.context_parallel} ranks)")
        try:
            enable_context_parallel(self.transformers(), parallel)
        except ValueError as exc:
            raise GenError(f"{self.preset.name}: {exc}") from None
        self.context_parallel = dist.get_world_size()
        if not self.is_main_process:
            self.pipe.set_progress_bar_config(disable=True)

    @property
    def is_main_process(self) -> bool:
        """Whether this process prints and writes: always, unless it is a rank other than 0 of a split video."""
        import torch.distributed as dist

        return self.context_parallel == 1 or dist.get_rank() == 0

    def load_loras(self, loras: list[tuple[str, float]]) -> None:
        """Load LoRA weights (.safetensors) with scales; they act on the same layers the radial
        processors use. Needs `peft` (the video extra). Before `enable_context_parallel`."""
        if not loras:
            return
        if self.context_parallel > 1:
            raise GenError("load LoRAs before enabling context parallelism (its hooks sit on the layers LoRA wraps)")
        from gen.paths import safe_name
        from gen.video_models import check_lora_file

        names = []
        for index, (path, _) in enumerate(loras):
            check_lora_file(path)
            name = f"{safe_name(Path(path).stem, 40)}_{index}"
            try:
                self.pipe.load_lora_weights(str(path), adapter_name=name)
            except ImportError:
                raise GenError("loading LoRAs needs peft: pip install 'gen[video]'") from None
            except (ValueError, KeyError, RuntimeError, OSError) as exc:
                raise GenError(f"LoRA {Path(path).name} does not fit {self.preset.name}: "
                               f"{str(exc).splitlines()[0][:200]}") from None
            names.append(name)
        self.pipe.set_adapters(names, adapter_weights=[scale for _, scale in loras])
        self.loras = [(Path(path).name, scale) for path, scale in loras]

    def transformers(self) -> list[torch.nn.Module]:
        """One transformer, or two (Wan2.2 A14B: high- and low-noise experts)."""
        return pipeline_transformers(self.pipe)

    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        frames: int | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        attention: str = "radial",
        dense_layers: int | None = None,
        dense_steps: int | None = None,
        dense_final_steps: int = 0,
        decay: float | None = None,
        granularity: str = "block",
        image: ImageInput | None = None,
        last_image: ImageInput | None = None,
        video: VideoInput | None = None,
        strength: float | None = None,
        on_step: StepCallback | None = None,
        stats: RadialStats | None = None,
        output_type: str = "np",
    ) -> TextToVideoOutput:
        """`stats`, if given, collects the radial calls' counters, layouts and trace (tests, benchmarks).
        `output_type` "latent" returns the denoised latents (`out.latents`) without decoding them."""
        # 1. Check the settings and which inputs this model takes (nothing is read or loaded yet).
        p = self.preset
        steps = p.steps if num_inference_steps is None else num_inference_steps
        guidance = p.guidance if guidance_scale is None else guidance_scale
        check_video_inputs(p, image is not None, last_image is not None, video is not None, strength, steps,
                           width is not None or height is not None)
        strength = DEFAULT_STRENGTH if video is not None and strength is None else strength
        check_pipeline_dependencies(pipeline_class_for(p, image is not None, video is not None))
        config = self._radial_config(decay, granularity, dense_layers, dense_steps, dense_final_steps)
        self._check(steps, guidance, seed, attention, output_type)
        # 2. Read the inputs and fix the output size (HunyuanVideo 1.5 I2V: from the image's aspect ratio).
        first = load_image(image, "image") if image is not None else None
        if p.bucket is not None and first is not None:
            width, height = bucket_size(p, *first.size)
        frames, width, height = p.shape(frames, width, height)
        check_video_shape(p, frames, width, height)
        check_context_parallel(p, self.context_parallel, frames, width, height)
        inputs = _fit_inputs(first, image, last_image, video, frames, width, height)
        layout = video_layout(p, frames, width, height, config.decay)
        # 3. Run the stock diffusers pipeline of this mode with radial attention on its transformers (split over
        #    the ranks under context parallelism: every rank denoises the same latents; rank 0 decodes them).
        pipe = self._variant(inputs)
        decoded = output_type == "np" and self.is_main_process
        arguments = dict(prompt=prompt, negative_prompt=negative_prompt or None, height=height, width=width,
                         num_frames=frames + p.extra_frames, num_inference_steps=steps, guidance_scale=guidance,
                         generator=torch.Generator("cpu").manual_seed(seed), output_type="np" if decoded else "latent",
                         image=inputs.image,
                         last_image=inputs.last_image, video=inputs.video, strength=strength)
        accepted = inspect.signature(pipe.__call__).parameters
        stats = RadialStats() if stats is None else stats
        with (self._attention(attention, config, pipe, stats), _progress(pipe, on_step),
              _guider_scale(pipe, guidance, "guidance_scale" not in accepted)):
            result = pipe(**{k: v for k, v in arguments.items() if k in accepted and v is not None})
        if on_step:
            on_step(pipe.num_timesteps, pipe.num_timesteps)
        video_frames = result.frames[0] if decoded else None
        latents = None if decoded else result.frames[0].float().cpu().numpy()
        # 4. Everything needed to reproduce the video.
        params = {
            "kind": "video", "prompt": prompt, "negative_prompt": negative_prompt, "frames": frames,
            "width": width, "height": height, "steps": steps, "guidance": guidance, "seed": seed,
            "attention": attention, "dense_layers": config.dense_layers, "dense_steps": config.dense_steps,
            "dense_final_steps": dense_final_steps, "decay": config.decay, "mask_granularity": granularity,
            "latent_frames": layout.frames, "tokens_per_frame": layout.tokens_per_frame, "mode": inputs.mode,
            "image": inputs.names.get("image"), "last_image": inputs.names.get("last_image"),
            "video": inputs.names.get("video"), "strength": strength, "input_sha256": inputs.sha256,
            "loras": [[name, scale] for name, scale in self.loras],
            "model": p.name, "random_weights": p.is_random, "device": self.device.type,
            "dtype": dtype_name(self.dtype), "context_parallel": self.context_parallel, "gen_version": gen.__version__,
        }
        return TextToVideoOutput(video_frames, params, {"radial_calls": stats.radial_calls,
                                                        "dense_calls": stats.dense_calls}, latents)

    def _radial_config(self, decay, granularity, dense_layers, dense_steps, dense_final_steps) -> RadialConfig:
        p = self.preset
        if granularity not in GRANULARITIES:
            raise GenError(f"mask granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
        check_radial_settings(dense_layers, dense_steps, dense_final_steps, decay)
        return RadialConfig(decay=p.decay if decay is None else decay, granularity=granularity,
                            dense_layers=p.dense_layers if dense_layers is None else dense_layers,
                            dense_steps=p.dense_steps if dense_steps is None else dense_steps,
                            dense_final_steps=dense_final_steps)

    def _check(self, steps, guidance, seed, attention, output_type) -> None:
        check_steps(steps)
        check_guidance(guidance)
        check_seed(seed)
        if attention not in ATTENTION_MODES:
            raise GenError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
        if output_type not in OUTPUT_TYPES:
            raise GenError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")

    def _variant(self, inputs: VideoInputs):
        """The diffusers pipeline of this call's mode: the loaded one, or one sharing its components."""
        import diffusers

        name = pipeline_class_for(self.preset, inputs.image is not None, inputs.video is not None)
        if name not in self._variants:
            variant = getattr(diffusers, name).from_pipe(self.pipe)
            variant.set_progress_bar_config(leave=False, disable=not self.is_main_process)
            self._variants[name] = variant
        return self._variants[name]

    @contextlib.contextmanager
    def _attention(self, attention: str, config: RadialConfig, pipe, stats: RadialStats):
        if attention == "dense":
            yield
            return
        with install_radial(pipeline_transformers(pipe), config, pipeline_clock(pipe), stats):
            yield


def _check_context_parallel_setup(parallel) -> None:
    """A degree or config gen can run, with torch.distributed initialised for as many processes."""
    from gen.attention.video import context_parallel_config

    try:
        context_parallel_config(parallel)
    except ValueError as exc:
        raise GenError(str(exc)) from None


def _fit_inputs(first: Image.Image | None, image, last_image, video, frames: int, width: int,
                height: int) -> VideoInputs:
    """Fit the inputs to the output size (cover, centre crop) and record their names and content hashes."""
    inputs = VideoInputs()
    if first is not None:
        inputs.image = cover_resize(first, width, height)
        _record(inputs, "image", image, first)
    if last_image is not None:
        last = load_image(last_image, "last image")
        inputs.last_image = cover_resize(last, width, height)
        _record(inputs, "last_image", last_image, last)
    if video is not None:
        if isinstance(video, (str, Path)):
            from gen.video_io import read_video

            clip = read_video(video, frames)
        else:
            if len(video) < frames:
                raise GenError(f"the input video has {len(video)} frames; {frames} are needed")
            clip = list(video)[:frames]
        pictures = [frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame)) for frame in clip]
        inputs.video = [cover_resize(picture.convert("RGB"), width, height) for picture in pictures]
        _record(inputs, "video", video, pictures)
    return inputs


def _record(inputs: VideoInputs, kind: str, source, loaded) -> None:
    """A file input is named and hashed by its bytes (`sha256sum`); an in-memory one by its pixels."""
    if isinstance(source, (str, Path)):
        from gen.video_io import file_sha256

        inputs.names[kind], inputs.sha256[kind] = Path(source).name, file_sha256(source)
        return
    digest = hashlib.sha256()
    for picture in loaded if isinstance(loaded, list) else [loaded]:
        digest.update(f"{picture.size}".encode())
        digest.update(picture.convert("RGB").tobytes())
    inputs.names[kind], inputs.sha256[kind] = None, "pixels:" + digest.hexdigest()


@contextlib.contextmanager
def _progress(pipe, on_step: StepCallback | None):
    """Report finished steps as each new step starts (read from the pipeline, as the radial hook does: works on
    pipelines without a step callback); raising in `on_step` cancels between steps."""
    if on_step is None:
        yield
        return
    clock, done = pipeline_clock(pipe), [0]

    def report(module, args):
        position = clock()
        if position is not None and position[0] > done[0]:
            done[0] = position[0]
            on_step(*position)

    handles = [t.register_forward_pre_hook(report) for t in pipeline_transformers(pipe)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _guider_scale(pipe, guidance: float, needed: bool):
    """HunyuanVideo 1.5 takes its guidance scale from a guider component, not a call argument: swap in a guider
    with this scale for the call and put the loaded one back."""
    if not needed or getattr(pipe, "guider", None) is None:
        yield
        return
    loaded = pipe.guider
    pipe.guider = loaded.new(guidance_scale=guidance)
    try:
        yield
    finally:
        pipe.guider = loaded
