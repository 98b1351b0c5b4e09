"""What an `image`, `style` or `video` job means: checked, planned, then run on a loaded pipeline.

One home for this logic, shared by the command line (one job per call) and the batch
renderer (many jobs, one pipeline per model). `plan_job` checks everything that can be
checked without a model and fixes the output files; `load_pipeline_for` loads what a plan
needs; `run_job` generates and writes the outputs atomically, returning one record per file.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen.errors import GenError

Progress = Callable[[str, int, int], None]  # (phase, step, total)


@dataclass
class JobPlan:
    kind: str
    args: argparse.Namespace
    outputs: list[Path]  # every file the job writes
    data: dict[str, Any] = field(default_factory=dict)  # checked values: seeds, loaded images, LoRAs…

    @property
    def pipeline_key(self) -> tuple:
        """Jobs with equal keys can share one loaded pipeline."""
        a = self.args
        return (self.kind, a.model, a.device, a.dtype, getattr(a, "attention_backend", None),
                getattr(a, "train_size", None), tuple(self.data.get("loras", ())))


def plan_job(args: argparse.Namespace) -> JobPlan:
    planners = {"image": _plan_image, "style": _plan_style, "video": _plan_video}
    return planners[args.command](args)


def default_stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


# ----------------------------------------------------------------------------- image


def _plan_image(args) -> JobPlan:
    from gen.models import resolve_model
    from gen.outputs import batch_output_paths, check_output_paths
    from gen.validation import check_batch, check_guidance, check_seed, check_side, check_steps

    resolve_model(args.model)
    for label, value in (("--train-size", args.train_size), ("width", args.width), ("height", args.height)):
        if value is not None:  # an unset side defaults to the training size, known once loaded
            check_side(label, value)
    if args.steps is not None:
        check_steps(args.steps)
    if args.guidance is not None:
        check_guidance(args.guidance)
    check_batch(args.batch)
    first_seed = args.seed if args.seed is not None else secrets.randbelow(2**32 - args.batch)
    seeds = [first_seed + i for i in range(args.batch)]
    for seed in seeds:
        check_seed(seed)
    if args.out:
        outputs = batch_output_paths(args.out, seeds)
    else:
        outputs = [Path("outputs") / f"{default_stamp()}-{seed}.png" for seed in seeds]
    check_output_paths(outputs, args.overwrite)
    _check_backend(args)
    return JobPlan("image", args, outputs, {"seeds": seeds})


def _run_image(plan: JobPlan, pipe, progress: Progress | None) -> list[dict]:
    from gen.metadata import png_text_chunks
    from gen.outputs import atomic_write

    a, records = plan.args, []
    seeds, skip = plan.data["seeds"], plan.data.get("skip", set())
    for index, (seed, path) in enumerate(zip(seeds, plan.outputs)):
        if path in skip:  # already written by an interrupted run of the same job
            continue
        result = pipe(a.prompt, negative_prompt=a.negative, width=a.width, height=a.height,
                      num_inference_steps=a.steps, guidance_scale=a.guidance, seed=seed,
                      entropy_scaling=a.entropy_scaling, progress_desc=f"image {index + 1}/{len(seeds)}",
                      on_step=(lambda step, total: progress("image", step, total)) if progress else None)
        image, params = result.images[0], result.parameters[0]
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_text_chunks(params)),
                     overwrite=a.overwrite)
        records.append({"path": str(path), "params": params})
    return records


# ----------------------------------------------------------------------------- style


def _plan_style(args) -> JobPlan:
    from gen.images import load_image, load_mask
    from gen.models import resolve_model
    from gen.outputs import check_output_paths, named_output_paths
    from gen.style import strength_to_gamma
    from gen.validation import check_seed, check_side, check_steps, parse_weighted_path

    resolve_model(args.model)
    check_steps(args.steps)
    check_seed(args.seed)
    if args.size is not None:
        check_side("--size", args.size)
    if args.gamma is not None and not 0.0 <= args.gamma <= 1.0:
        raise GenError(f"--gamma must be between 0 and 1, got {args.gamma}")
    if args.strength is not None:
        strength_to_gamma(args.strength)
    if not args.temperature > 0:
        raise GenError(f"--temperature must be > 0, got {args.temperature}")
    contents = [load_image(path, "content image") for path in args.content]
    styles = []
    for spec in args.style:
        path, weight = parse_weighted_path(spec)
        if weight < 0:
            raise GenError(f"style weight must be >= 0, got {weight} in {spec!r}")
        styles.append((load_image(path, "style image"), weight, path))
    if not any(weight > 0 for _, weight, _ in styles):
        raise GenError("at least one style needs a weight > 0")
    mask = load_mask(args.mask, contents[0].size) if args.mask else None
    out = args.out or Path("outputs") / f"{default_stamp()}-style.png"
    outputs = named_output_paths(out, args.content)
    check_output_paths(outputs, args.overwrite)
    _check_backend(args)
    return JobPlan("style", args, outputs, {"contents": contents, "styles": styles, "mask": mask})


def _run_style(plan: JobPlan, pipe, progress: Progress | None) -> list[dict]:
    from gen.metadata import png_text_chunks
    from gen.outputs import atomic_write

    a, styles = plan.args, plan.data["styles"]
    result = pipe(
        plan.data["contents"], [(image, weight) for image, weight, _ in styles], gamma=a.gamma, strength=a.strength,
        temperature=a.temperature, num_inference_steps=a.steps, size=a.size, layers=a.layers,
        injection=not a.no_injection, adain_init=not a.no_adain, preserve_colors=a.preserve_color,
        mask=plan.data["mask"], memory=a.memory, use_cache=not a.no_cache, on_step=progress,
    )
    kept = [(Path(path).name, weight) for _, weight, path in styles if weight > 0]
    files = {"content_files": [Path(p).name for p in a.content], "style_files": [n for n, _ in kept],
             "seed": a.seed, "styles": ", ".join(f"{name} ({weight:g})" for name, weight in kept)}
    records = []
    for path, image, params in zip(plan.outputs, result.images, result.parameters):
        params = dict(params, **files, prompt=f"style transfer: {Path(a.content[params['content_index']]).name}")
        if path in plan.data.get("skip", set()):
            continue
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_text_chunks(params)),
                     overwrite=a.overwrite)
        records.append({"path": str(path), "params": params, "stats": result.stats})
    return records


# ----------------------------------------------------------------------------- video


def _plan_video(args) -> JobPlan:
    from gen.outputs import check_output_paths
    from gen.validation import (check_guidance, check_radial_settings, check_seed, check_steps,
                                parse_weighted_path)
    from gen.video_io import sidecar_path
    from gen.video_models import check_lora_file, check_video_shape, video_preset

    preset = video_preset(args.model)
    frames, width, height = preset.shape(args.frames, args.width, args.height)
    check_video_shape(preset, frames, width, height)
    if args.steps is not None:
        check_steps(args.steps)
    if args.guidance is not None:
        check_guidance(args.guidance)
    check_radial_settings(args.dense_layers, args.dense_steps, args.dense_final_steps, args.decay, flags=True)
    if not 1 <= args.fps <= 120:
        raise GenError(f"--fps must be between 1 and 120, got {args.fps}")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    check_seed(seed)
    loras = [parse_weighted_path(spec) for spec in args.lora]
    for path, _ in loras:
        check_lora_file(path)
    out = Path(args.out) if args.out else Path("outputs") / f"{default_stamp()}-{seed}.mp4"
    check_output_paths([out], args.overwrite, suffixes=(".mp4",))
    check_output_paths([sidecar_path(out)], args.overwrite, suffixes=(".json",))
    frames_dir = out.with_name(out.stem + "_frames")
    if args.png_frames and frames_dir.exists() and not args.overwrite:
        raise GenError(f"frame folder {str(frames_dir)!r} already exists; pass --overwrite to replace it")
    outputs = [out, sidecar_path(out)]
    return JobPlan("video", args, outputs, {"frames": frames, "width": width, "height": height, "seed": seed,
                                            "loras": loras, "frames_dir": frames_dir, "random": preset.is_random})


def _run_video(plan: JobPlan, pipe, progress: Progress | None) -> list[dict]:
    from gen.video_io import write_mp4, write_png_frames, write_sidecar

    a, d = plan.args, plan.data
    result = pipe(a.prompt, negative_prompt=a.negative, frames=d["frames"], width=d["width"], height=d["height"],
                  num_inference_steps=a.steps, guidance_scale=a.guidance, seed=d["seed"], attention=a.attention,
                  dense_layers=a.dense_layers, dense_steps=a.dense_steps, dense_final_steps=a.dense_final_steps,
                  decay=a.decay, granularity=a.mask_granularity,
                  on_step=(lambda step, total: progress("video", step, total)) if progress else None)
    params = dict(result.parameters, fps=a.fps)
    skip = d.get("skip", set())
    # The sidecar goes last: a video whose sidecar exists is complete (the batch renderer relies on it).
    if plan.outputs[0] not in skip:
        write_mp4(plan.outputs[0], result.frames, fps=a.fps, overwrite=a.overwrite)
    if a.png_frames:
        write_png_frames(d["frames_dir"], result.frames, overwrite=a.overwrite, keep_existing=bool(skip))
    if plan.outputs[1] not in skip:
        write_sidecar(plan.outputs[0], params, overwrite=a.overwrite)
    return [{"path": str(plan.outputs[0]), "params": params, "stats": result.stats}]


# ----------------------------------------------------------------------------- loading and running


def _check_backend(args) -> None:
    from gen.attention.kernels import resolve_backend
    from gen.loading import choose_device

    resolve_backend(args.attention_backend, choose_device(args.device))  # before a long model load


def load_pipeline_for(plan: JobPlan):
    """The pipeline a plan needs (LoRAs loaded for videos)."""
    a = plan.args
    if plan.kind == "image":
        from pipelines import TextToImagePipeline

        return TextToImagePipeline.from_pretrained(a.model, device=a.device, dtype=a.dtype, train_size=a.train_size,
                                                   attention_backend=a.attention_backend)
    if plan.kind == "style":
        from pipelines import StyleTransferPipeline

        return StyleTransferPipeline.from_pretrained(a.model, device=a.device, dtype=a.dtype,
                                                     attention_backend=a.attention_backend)
    from pipelines import TextToVideoPipeline

    pipe = TextToVideoPipeline.from_pretrained(a.model, device=a.device, dtype=a.dtype)
    pipe.load_loras(plan.data["loras"])
    return pipe


def uses_random_weights(plan: JobPlan, pipe) -> bool:
    if plan.kind == "video":
        return plan.data["random"]
    return pipe.model.preset.is_random


def run_job(plan: JobPlan, pipe, progress: Progress | None = None) -> list[dict]:
    """Generate and write a planned job's outputs; one record (path, params, stats) per output."""
    runners = {"image": _run_image, "style": _run_style, "video": _run_video}
    return runners[plan.kind](plan, pipe, progress)
