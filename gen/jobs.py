"""Jobs: what to generate, as typed values — one kind each for images, styles and videos.

A job is a frozen dataclass whose field names are the job-file keys (and the command line's
flags, `--train-size` for `train_size`). Every face builds jobs — the command line from its
flags, the UI from its widgets, the batch renderer from JSONL/CSV rows, Python callers
directly — and hands them to the same path:

    plan = plan_job(job)              # every check that needs no model; inputs loaded, outputs fixed
    pipe = load_pipeline_for(plan)    # the pipeline it needs
    records = execute(plan, pipe)     # generate and write atomically; one record per output

`run_job(job)` does all three. A job's `check()` raises the one-line errors; errors about one
setting are `FieldError`s, which each face names in its user's words (`--width` on the command
line, `width` in a job file, `Width` in the UI). The dict form (`to_dict` / `from_dict`) is what
job files and manifests hold; `job_from_record` reads the parameters stored in outputs (PNG
metadata, video sidecars, also those written by earlier versions) back into a job.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gen.errors import FieldError, GenError

if TYPE_CHECKING:
    from gen.video_models import VideoPreset

Progress = Callable[[str, int, int], None]  # (phase, step, total)


# ----------------------------------------------------------------------------- typed values


@dataclass(frozen=True)
class _FieldType:
    base: type  # str, int, float or bool
    optional: bool  # None allowed (the model's default)
    many: bool  # a tuple of `base` (repeatable flags, lists in job files)


@dataclass(frozen=True, kw_only=True)
class Job:
    """Settings every kind shares. Subclasses add their own and one `check()`."""

    kind: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    file_fields: ClassVar[tuple[str, ...]] = ()  # paths, relative to a job file's folder in job files

    model: str
    seed: int | None = None
    out: str | None = None
    overwrite: bool = False
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        for name, spec in _field_types(type(self)).items():
            object.__setattr__(self, name, _coerce(name, getattr(self, name), spec, text=False))

    # -- dict form

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, text: bool = False) -> Job:
        """A job from its dict form. `text`: values are text to parse (CSV cells, UI text boxes): blank
        means "not given", `true`/`false` are booleans, `a|b` is a list."""
        specs = _field_types(cls)
        unknown = [key for key in data if key not in specs and key != "kind"]
        if unknown:
            required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING]
            listed = required + [name for name in specs if name not in required]
            raise GenError(f"unknown field {unknown[0]!r} for {_article(cls.kind)} {cls.kind} job; "
                           f"its fields: {', '.join(listed)}")
        if data.get("kind", cls.kind) != cls.kind:
            raise GenError(f"kind {data.get('kind')!r} given to {_article(cls.kind)} {cls.kind} job")
        values = {}
        for key, value in data.items():
            if key == "kind" or value is None:
                continue
            if text and isinstance(value, str) and not value.strip() and specs[key].base is not str:
                continue  # a blank cell or text box: the default
            values[key] = _coerce(key, value, specs[key], text)
        for f in fields(cls):
            if f.name not in values and f.default is dataclasses.MISSING:
                raise FieldError(f.name, f"missing {{name}} (required for {_article(cls.kind)} {cls.kind} job)")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """`kind` and every field; lists for repeatable ones. `from_dict(job.to_dict()) == job`."""
        data: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    def replace(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    def with_paths_from(self, folder: Path) -> Job:
        """Relative input paths resolved against `folder` (a job file's); `style.png:0.3` keeps its weight."""
        from gen.validation import parse_weighted_path

        def resolve(spec: str) -> str:
            path = parse_weighted_path(spec)[0]
            if not path or Path(path).expanduser().is_absolute():
                return spec
            return str(folder / path) + spec[len(path):]  # the weight as written

        changes = {}
        for name in self.file_fields:
            value = getattr(self, name)
            if isinstance(value, tuple):
                changes[name] = tuple(resolve(v) for v in value)
            elif isinstance(value, str):
                changes[name] = resolve(value)
        return self.replace(**changes)

    # -- checks

    def check(self) -> None:
        """Every check that needs no model and no input file; raises FieldError / GenError."""
        from gen.loading import DTYPES
        from gen.validation import check_choice, check_seed

        if self.seed is not None:
            check_seed(self.seed)
        if self.dtype is not None:
            check_choice("dtype", self.dtype, DTYPES)
        if self.out is not None and Path(self.out).suffix.lower() != self.extension:
            raise FieldError("out", f"{{name}} {self.out!r} must end in {self.extension}")


@dataclass(frozen=True, kw_only=True)
class ImageJob(Job):
    """Text-to-image at any size (attention entropy scaling)."""

    kind: ClassVar[str] = "image"
    extension: ClassVar[str] = ".png"

    prompt: str
    model: str = "tiny-sd"
    negative: str = ""
    width: int | None = None  # None: the model's training size
    height: int | None = None
    steps: int | None = None  # None: per model
    guidance: float | None = None  # the model's own: CFG; FLUX.1-dev: distilled; Qwen-Image: true CFG
    true_cfg: float | None = None  # FLUX.1 only: > 1 adds real CFG with the negative prompt
    batch: int = 1  # images with seeds seed, seed+1, …
    entropy_scaling: str = "auto"
    train_size: int | None = None
    attention_backend: str = "sdpa"

    def check(self) -> None:
        from gen.attention.entropy import ENTROPY_MODES
        from gen.attention.kernels import BACKENDS
        from gen.models import check_image_settings, resolve_model
        from gen.validation import MAX_SEED, check_batch, check_choice, check_side

        super().check()
        preset = resolve_model(self.model)
        check_choice("attention_backend", self.attention_backend, BACKENDS)
        # The family's size grid, steps and guidance rules; an unset value is the model's default.
        check_image_settings(preset, self.width, self.height, self.guidance, self.negative, self.true_cfg,
                             self.steps, self.attention_backend)
        if self.train_size is not None:
            check_side("train_size", self.train_size, preset.family_spec.size_multiple if preset.family_spec else 8)
        check_batch(self.batch)
        if self.seed is not None and self.seed + self.batch - 1 > MAX_SEED:
            raise FieldError("seed", f"{{name}} {self.seed} with batch {self.batch} runs past the last seed {MAX_SEED}")
        check_choice("entropy_scaling", self.entropy_scaling, ENTROPY_MODES)


@dataclass(frozen=True, kw_only=True)
class StyleJob(Job):
    """Style transfer by style injection (StyleID)."""

    kind: ClassVar[str] = "style"
    extension: ClassVar[str] = ".png"
    file_fields: ClassVar[tuple[str, ...]] = ("content", "style", "mask")

    content: tuple[str, ...]  # content images, stylised in one batch
    style: tuple[str, ...]  # style images, `PATH` or `PATH:WEIGHT`
    model: str = "tiny-sd"
    seed: int | None = 0  # recorded only: the method is deterministic
    gamma: float | None = None  # query preservation; None: 0.75 (or from strength)
    strength: float | None = None  # a 0–1 knob mapped onto gamma
    temperature: float = 1.5
    steps: int = 50
    size: int | None = None  # longer side; None: the training size
    preserve_color: bool = False
    mask: str | None = None
    no_injection: bool = False
    no_adain: bool = False
    layers: tuple[str, ...] | None = None  # layer sets, names or patterns; None: the convention's default
    convention: str = "gen"  # whose StyleID: gen, original (run_styleid.py) or port (the diffusers port)
    inject_from: int | None = None  # first injected generation step; None: the convention's
    memory: str = "auto"
    no_cache: bool = False
    attention_backend: str = "sdpa"

    def check(self) -> None:
        from gen.attention.kernels import BACKENDS
        from gen.models import UNET_FAMILIES, check_family, resolve_model
        from gen.style import check_injection_steps, check_layer_specs
        from gen.validation import check_choice, check_positive, check_range, check_side, check_steps
        from pipelines.style_transfer import MEMORY_MODES

        super().check()
        check_family(resolve_model(self.model), UNET_FAMILIES, "style transfer")
        for name in ("content", "style"):
            if not getattr(self, name):
                raise FieldError(name, f"{{name}}: give at least one {name} image")
        check_steps(self.steps)
        if self.size is not None:
            check_side("size", self.size)
        if self.gamma is not None and self.strength is not None:
            raise FieldError("strength", "{name} and gamma cannot both be given (strength is mapped onto gamma)")
        if self.gamma is not None:
            check_range("gamma", self.gamma, 0.0, 1.0)
        if self.strength is not None:
            check_range("strength", self.strength, 0.0, 1.0)
        check_positive("temperature", self.temperature)
        weights = [self.style_weight(spec) for spec in self.style]
        if not any(weight > 0 for weight in weights):
            raise GenError("at least one style needs a weight > 0")
        check_injection_steps(self.convention, self.steps, self.inject_from)
        if self.layers is not None:
            check_layer_specs(list(self.layers))
        check_choice("memory", self.memory, MEMORY_MODES)
        check_choice("attention_backend", self.attention_backend, BACKENDS)

    @staticmethod
    def style_weight(spec: str) -> float:
        """The blend weight of a `PATH[:WEIGHT]` style: finite and >= 0."""
        from gen.validation import check_finite, parse_weighted_path

        weight = parse_weighted_path(spec)[1]
        check_finite("style", weight, f" weight in {spec!r}")
        if weight < 0:
            raise FieldError("style", f"{{name}} weight must be >= 0, got {weight} in {spec!r}")
        return weight


@dataclass(frozen=True, kw_only=True)
class VideoJob(Job):
    """Video from text, a first (and last) frame or an input video, with radial sparse attention and dense
    warm-up. The model decides which inputs it takes (gen.video_models.check_video_inputs)."""

    kind: ClassVar[str] = "video"
    extension: ClassVar[str] = ".mp4"
    file_fields: ClassVar[tuple[str, ...]] = ("lora", "image", "last_image", "video")

    prompt: str
    model: str = "tiny-wan"
    negative: str = ""
    frames: int | None = None  # None: per model
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    attention: str = "radial"
    dense_layers: int | None = None
    dense_steps: int | None = None
    dense_final_steps: int = 0
    decay: float | None = None
    mask_granularity: str = "block"
    lora: tuple[str, ...] = ()  # `PATH` or `PATH:SCALE`, .safetensors
    fps: int = 16
    png_frames: bool = False
    image: str | None = None  # first frame (image-to-video models, Wan2.2-TI2V-5B)
    last_image: str | None = None  # last frame (first/last-frame models)
    video: str | None = None  # input video (video-to-video)
    strength: float | None = None  # video-to-video: the part of the schedule run (None: 0.8)
    context_parallel: int = 1  # ranks (GPUs) one video is split over; the command line starts them (--gpus)

    def check(self) -> None:
        from gen.validation import check_choice, check_finite, check_guidance, check_range, check_steps, parse_weighted_path
        from gen.video_models import check_pipeline_dependencies, check_video_inputs, pipeline_class_for
        from pipelines.text_to_video import ATTENTION_MODES

        super().check()
        preset = self.check_layout()
        given = dict(image=self.image is not None, last_image=self.last_image is not None, video=self.video is not None)
        check_video_inputs(preset, **given, strength=self.strength, steps=self.steps or preset.steps,
                           size_given=self.width is not None or self.height is not None)
        check_pipeline_dependencies(pipeline_class_for(preset, given["image"], given["video"]))
        if self.steps is not None:
            check_steps(self.steps)
        if self.guidance is not None:
            check_guidance(self.guidance)
        check_choice("attention", self.attention, ATTENTION_MODES)
        check_range("fps", self.fps, 1, 120)
        for spec in self.lora:
            check_finite("lora", parse_weighted_path(spec)[1], f" scale in {spec!r}")
        if self.context_parallel != 1 and self.device not in (None, "cuda", "cpu"):
            raise FieldError("device", f"{{name}} {self.device!r}: split over several ranks, each takes its own GPU; "
                             "give cuda or cpu, or leave it out")

    def check_layout(self) -> VideoPreset:
        """What fixes the radial mask (model, frames, size, decay, granularity, warm-up), whatever the inputs:
        also what `gen mask` and the UI's mask picture check. Returns the model's preset."""
        from gen.attention.radial import GRANULARITIES
        from gen.validation import check_choice, check_radial_settings
        from gen.video_models import check_context_parallel, check_video_shape, video_preset

        preset = video_preset(self.model)
        shape = preset.shape(self.frames, self.width, self.height)
        check_video_shape(preset, *shape)
        check_context_parallel(preset, self.context_parallel, *shape)
        check_choice("mask_granularity", self.mask_granularity, GRANULARITIES)
        check_radial_settings(self.dense_layers, self.dense_steps, self.dense_final_steps, self.decay)
        return preset


JOB_TYPES: dict[str, type[Job]] = {cls.kind: cls for cls in (ImageJob, StyleJob, VideoJob)}


def job_from_dict(data: Mapping[str, Any], *, text: bool = False) -> Job:
    """The job of the kind `data["kind"]` names."""
    kind = data.get("kind")
    if kind not in JOB_TYPES:
        raise GenError(f"kind must be one of {', '.join(JOB_TYPES)}, got {kind!r}")
    return JOB_TYPES[kind].from_dict(data, text=text)


# Parameters recorded in outputs whose name differs from the job field they come from.
_RECORD_NAMES = {"negative_prompt": "negative"}


def job_from_record(params: Mapping[str, Any]) -> Job:
    """The job that reproduces an output, from the parameters stored in it (PNG `gen` chunk, video
    sidecar; also those of earlier versions). Derived values (token counts, flags such as
    `entropy_scaling_active`) are left out; a style's images come back as file names only."""
    kind = params.get("kind") if isinstance(params, Mapping) else None
    if kind not in JOB_TYPES:
        raise GenError("these are not gen parameters (no image, style or video kind)")
    cls = JOB_TYPES[kind]
    known = {f.name for f in fields(cls)} - {"out", "overwrite", "context_parallel"}  # the same output on one GPU
    data = {_RECORD_NAMES.get(key, key): value for key, value in params.items()}
    if kind == "style":
        weights = data.get("style_weights") or [1.0] * len(data.get("style_files", []))
        data.update(content=data.get("content_files", []),
                    style=[f"{name}:{weight:g}" for name, weight in zip(data.get("style_files", []), weights)],
                    no_injection=not data.get("injection", True), no_adain=not data.get("adain", True),
                    size=max(data.get("width") or 0, data.get("height") or 0) or None,
                    mask=None)  # recorded as a flag only
        if data.get("strength") is not None:
            data["gamma"] = None  # derived from the strength
        if data.get("layer_set"):
            data["layers"] = [data["layer_set"]]  # the set by name, not its resolved layers
    if kind == "video":
        data["lora"] = []  # recorded by name only; the files are not known
    return cls.from_dict({key: value for key, value in data.items() if key in known}, text=False)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _field_types(cls: type[Job]) -> dict[str, _FieldType]:
    return _FIELD_TYPES.get(cls) or _FIELD_TYPES.setdefault(cls, _read_field_types(cls))


_FIELD_TYPES: dict[type, dict[str, _FieldType]] = {}


def _read_field_types(cls: type[Job]) -> dict[str, _FieldType]:
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in fields(cls):
        hint, optional = hints[f.name], False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint, optional = args[0], True
        many = typing.get_origin(hint) is tuple
        specs[f.name] = _FieldType(typing.get_args(hint)[0] if many else hint, optional, many)
    return specs


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0", "")


def _coerce(name: str, value: Any, spec: _FieldType, text: bool) -> Any:
    """`value` as the field's type, or a FieldError saying what was expected."""
    if value is None:
        if spec.optional:
            return None
        raise FieldError(name, "{name} cannot be empty")
    if spec.many:
        if isinstance(value, str):
            items = value.split("|") if text else [value]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise FieldError(name, f"{{name}} must be a list of text, got {value!r}")
        return tuple(_coerce(name, item, _FieldType(spec.base, False, False), text) for item in items)
    if spec.base is str:
        if not isinstance(value, str):
            raise FieldError(name, f"{{name}} must be text, got {value!r}")
        return value
    if spec.base is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise FieldError(name, f"{{name}} must be true or false, got {value!r}")
    if isinstance(value, bool):
        raise FieldError(name, f"{{name}} must be a number, got {value!r}")
    if isinstance(value, str):  # text, and numbers given as strings in JSON (as the command line takes them)
        try:
            value = float(value) if spec.base is float else int(value.strip())
        except ValueError:
            kind = "a whole number" if spec.base is int else "a number"
            raise FieldError(name, f"{{name}} must be {kind}, got {value!r}") from None
    if spec.base is int:
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise FieldError(name, f"{{name}} must be a whole number, got {value!r}")
            value = int(value)
        if not isinstance(value, int):
            raise FieldError(name, f"{{name}} must be a whole number, got {value!r}")
        return value
    if not isinstance(value, (int, float)):
        raise FieldError(name, f"{{name}} must be a number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- plans


@dataclass
class JobPlan:
    """A checked job with its seed and outputs fixed and its inputs loaded; nothing written yet."""

    job: Job
    outputs: list[Path]  # every file the job writes
    inputs: dict[str, Any] = field(default_factory=dict)  # seeds, loaded images, LoRAs…
    skip: set[Path] = field(default_factory=set)  # outputs an interrupted run already wrote (the renderer's)

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def files(self) -> list[Path]:
        """Every file the job may write: its outputs and, for a video with PNG frames, each frame."""
        from gen.video_io import frame_file

        frames_dir = self.inputs.get("frames_dir")
        if frames_dir is None or not getattr(self.job, "png_frames", False):
            return list(self.outputs)
        return self.outputs + [frame_file(frames_dir, i) for i in range(self.job.frames)]

    @property
    def pipeline_key(self) -> tuple:
        """Jobs with equal keys can share one loaded pipeline."""
        job = self.job
        return (job.kind, job.model, job.device, job.dtype, getattr(job, "attention_backend", None),
                getattr(job, "train_size", None), tuple(self.inputs.get("loras", ())))


def plan_job(job: Job, resume: bool = False) -> JobPlan:
    """Check `job`, fix its seed and output files and load its inputs; raises before any model loads.

    `resume` (the batch renderer's): outputs that exist already are no error; the caller decides
    which are this job's (and puts them in `plan.skip`). Nothing is ever replaced unless the job
    says `overwrite`.
    """
    if not isinstance(job, Job):
        raise TypeError(f"plan_job takes an ImageJob, StyleJob or VideoJob, got {type(job).__name__}")
    job.check()
    return _PLANNERS[job.kind](job, job.overwrite or resume)


def default_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _default_out(job: Job, tag: Any) -> Path:
    return Path("outputs") / f"{default_stamp()}-{tag}{job.extension}"


def _plan_image(job: ImageJob, existing_ok: bool) -> JobPlan:
    from gen.outputs import batch_output_paths, check_output_paths

    first_seed = job.seed if job.seed is not None else secrets.randbelow(2**32 - job.batch)
    seeds = [first_seed + i for i in range(job.batch)]
    out = Path(job.out) if job.out else _default_out(job, first_seed)
    outputs = batch_output_paths(out, seeds)
    check_output_paths(outputs, existing_ok)
    _check_backend(job)
    return JobPlan(job.replace(seed=first_seed, out=str(out)), outputs, {"seeds": seeds})


def _plan_style(job: StyleJob, existing_ok: bool) -> JobPlan:
    from gen.images import load_image, load_mask
    from gen.outputs import check_output_paths, named_output_paths
    from gen.validation import parse_weighted_path

    contents = [load_image(path, "content image") for path in job.content]
    styles = []
    for spec in job.style:
        path = parse_weighted_path(spec)[0]
        styles.append((load_image(path, "style image"), job.style_weight(spec), path))
    mask = load_mask(job.mask, contents[0].size) if job.mask else None
    out = Path(job.out) if job.out else _default_out(job, "style")
    outputs = named_output_paths(out, job.content)
    check_output_paths(outputs, existing_ok)
    _check_backend(job)
    return JobPlan(job.replace(out=str(out)), outputs, {"contents": contents, "styles": styles, "mask": mask})


def _plan_video(job: VideoJob, existing_ok: bool) -> JobPlan:
    from gen.outputs import check_output_paths
    from gen.validation import parse_weighted_path
    from gen.video_io import sidecar_path
    from gen.video_models import bucket_size, check_lora_file, video_preset

    preset = video_preset(job.model)
    frames, width, height = preset.shape(job.frames, job.width, job.height)
    images = {field: _input_image(field, getattr(job, field)) for field in ("image", "last_image")
              if getattr(job, field) is not None}
    if job.video is not None:
        _check_input_video(job.video, frames)
    if preset.bucket is not None:  # the model sizes the video from the image; the job leaves the size unset
        width, height = bucket_size(preset, *images["image"].size)
    seed = job.seed if job.seed is not None else secrets.randbelow(2**32)
    loras = [parse_weighted_path(spec) for spec in job.lora]
    for path, _ in loras:
        check_lora_file(path)
    out = Path(job.out) if job.out else _default_out(job, seed)
    check_output_paths([out], existing_ok, suffixes=(".mp4",))
    check_output_paths([sidecar_path(out)], existing_ok, suffixes=(".json",))
    frames_dir = out.with_name(out.stem + "_frames")
    if job.png_frames and frames_dir.exists() and not existing_ok:
        raise FieldError("overwrite", f"frame folder {str(frames_dir)!r} already exists; pass {{name}} to replace it")
    size = {} if preset.bucket is not None else dict(width=width, height=height)
    planned = job.replace(frames=frames, seed=seed, out=str(out), **size)
    return JobPlan(planned, [out, sidecar_path(out)], {"loras": loras, "frames_dir": frames_dir,
                                                       "random": preset.is_random})


def _input_image(field: str, path: str):
    """An input image read as `gen style` reads them; a bad one is refused naming its field (`--image`)."""
    from gen.images import load_image

    try:
        return load_image(path, "{name}")
    except FieldError:
        raise
    except GenError as exc:
        raise FieldError(field, str(exc)) from None


def _check_input_video(path: str, frames: int) -> None:
    """The input video can be read and has the frames asked for (ffmpeg counts them; nothing is kept)."""
    from gen.video_io import video_frame_count

    try:
        count = video_frame_count(path, "{name}")
    except GenError as exc:
        raise FieldError("video", str(exc)) from None
    if count < frames:
        raise FieldError("video", f"{{name}} {Path(path).name} has {count} frames; {frames} are needed "
                         "(give fewer frames or a longer video)")


_PLANNERS: dict[str, Callable[[Any, bool], JobPlan]] = {"image": _plan_image, "style": _plan_style, "video": _plan_video}


def _check_backend(job: Job) -> None:
    from gen.attention.kernels import resolve_backend
    from gen.loading import choose_device

    resolve_backend(job.attention_backend, choose_device(job.device))  # before a long model load


# ----------------------------------------------------------------------------- loading


def load_pipeline_for(plan: JobPlan):
    """The pipeline a plan needs (LoRAs loaded for videos)."""
    job = plan.job
    if isinstance(job, ImageJob):
        from pipelines import TextToImagePipeline

        return TextToImagePipeline.from_pretrained(job.model, device=job.device, dtype=job.dtype,
                                                   train_size=job.train_size, attention_backend=job.attention_backend)
    if isinstance(job, StyleJob):
        from pipelines import StyleTransferPipeline

        return StyleTransferPipeline.from_pretrained(job.model, device=job.device, dtype=job.dtype,
                                                     attention_backend=job.attention_backend)
    from pipelines import TextToVideoPipeline

    device = job.device
    if job.context_parallel > 1:  # one rank of a split video: its own GPU
        from gen.distributed import rank_device

        device = rank_device(device)
    pipe = TextToVideoPipeline.from_pretrained(job.model, device=device, dtype=job.dtype)
    pipe.load_loras(plan.inputs["loras"])
    if job.context_parallel > 1:
        pipe.enable_context_parallel(job.context_parallel)  # after LoRAs: its hooks sit on the layers they wrap
    return pipe


class PipelineCache:
    """One loaded pipeline at a time: consecutive plans with the same key share it."""

    def __init__(self, quiet: bool = False) -> None:
        self.key, self.pipe, self.quiet = None, None, quiet

    def get(self, plan: JobPlan):
        if plan.pipeline_key != self.key:
            self.key, self.pipe = None, None  # free the previous model first
            self.pipe, self.key = load_pipeline_for(plan), plan.pipeline_key
            if self.quiet:
                self.pipe.pipe.set_progress_bar_config(disable=True)
        return self.pipe


def uses_random_weights(plan: JobPlan, pipe) -> bool:
    if plan.kind == "video":
        return plan.inputs["random"]
    return pipe.model.preset.is_random


# ----------------------------------------------------------------------------- running


def execute(plan: JobPlan, pipe, progress: Progress | None = None) -> list[dict]:
    """Generate and write a planned job's outputs; one record (path, params, stats) per output.

    First removes what killed writes of these outputs left (temporaries of processes that are gone)."""
    from gen.outputs import remove_stale_temporaries

    if getattr(pipe, "is_main_process", True):  # ranks other than 0 of a split video write nothing
        remove_stale_temporaries(plan.files)
    return _RUNNERS[plan.kind](plan, pipe, progress)


def run_job(job: Job, pipe=None, progress: Progress | None = None) -> list[dict]:
    """Plan, load (unless a loaded `pipe` is given) and execute one job."""
    plan = plan_job(job)
    return execute(plan, pipe if pipe is not None else load_pipeline_for(plan), progress)


def _run_image(plan: JobPlan, pipe, progress: Progress | None) -> list[dict]:
    from gen.metadata import png_text_chunks
    from gen.outputs import atomic_write

    job: ImageJob = plan.job
    seeds, records = plan.inputs["seeds"], []
    for index, (seed, path) in enumerate(zip(seeds, plan.outputs)):
        if path in plan.skip:  # already written by an interrupted run of the same job
            continue
        result = pipe(job.prompt, negative_prompt=job.negative, width=job.width, height=job.height,
                      num_inference_steps=job.steps, guidance_scale=job.guidance, true_cfg=job.true_cfg, seed=seed,
                      entropy_scaling=job.entropy_scaling, progress_desc=f"image {index + 1}/{len(seeds)}",
                      on_step=(lambda step, total: progress("image", step, total)) if progress else None)
        image, params = result.images[0], result.parameters[0]
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_text_chunks(params)),
                     overwrite=job.overwrite)
        records.append({"path": str(path), "params": params})
    return records


def _run_style(plan: JobPlan, pipe, progress: Progress | None) -> list[dict]:
    from gen.metadata import png_text_chunks
    from gen.outputs import atomic_write

    job: StyleJob = plan.job
    styles = plan.inputs["styles"]
    result = pipe(
        plan.inputs["contents"], [(image, weight) for image, weight, _ in styles], gamma=job.gamma,
        strength=job.strength, temperature=job.temperature, num_inference_steps=job.steps, size=job.size,
        layers=list(job.layers) if job.layers is not None else None, convention=job.convention,
        inject_from=job.inject_from, injection=not job.no_injection,
        adain_init=not job.no_adain, preserve_colors=job.preserve_color, mask=plan.inputs["mask"],
        memory=job.memory, use_cache=not job.no_cache, on_step=progress,
    )
    kept = [(Path(path).name, weight) for _, weight, path in styles if weight > 0]
    files = {"content_files": [Path(p).name for p in job.content], "style_files": [n for n, _ in kept],
             "seed": job.seed, "styles": ", ".join(f"{name} ({weight:g})" for name, weight in kept)}
    records = []
    for path, image, params in zip(plan.outputs, result.images, result.parameters):
        params = dict(params, **files, prompt=f"style transfer: {Path(job.content[params['content_index']]).name}")
        if path in plan.skip:
            continue
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_text_chunks(params)),
                     overwrite=job.overwrite)
        records.append({"path": str(path), "params": params, "stats": result.stats})
    return records


def _run_video(plan: JobPlan, pipe, progress: Progress | None) -> list[dict]:
    from gen.video_io import write_mp4, write_png_frames, write_sidecar

    job: VideoJob = plan.job
    result = pipe(job.prompt, negative_prompt=job.negative, frames=job.frames, width=job.width, height=job.height,
                  num_inference_steps=job.steps, guidance_scale=job.guidance, seed=job.seed, attention=job.attention,
                  dense_layers=job.dense_layers, dense_steps=job.dense_steps, dense_final_steps=job.dense_final_steps,
                  decay=job.decay, granularity=job.mask_granularity, image=job.image, last_image=job.last_image,
                  video=job.video, strength=job.strength,
                  on_step=(lambda step, total: progress("video", step, total)) if progress else None)
    if not pipe.is_main_process:  # a split video is written by rank 0
        return []
    params = dict(result.parameters, fps=job.fps)
    video, sidecar = plan.outputs
    # The sidecar goes last: a video whose sidecar exists is complete (the batch renderer relies on it).
    if video not in plan.skip:
        write_mp4(video, result.frames, fps=job.fps, overwrite=job.overwrite, metadata=params)
    if job.png_frames:
        write_png_frames(plan.inputs["frames_dir"], result.frames, overwrite=job.overwrite,
                         keep_existing=bool(plan.skip))
    if sidecar not in plan.skip:
        write_sidecar(video, params, overwrite=job.overwrite)
    return [{"path": str(video), "params": params, "stats": result.stats}]


_RUNNERS: dict[str, Callable[[JobPlan, Any, Progress | None], list[dict]]] = {
    "image": _run_image, "style": _run_style, "video": _run_video}
