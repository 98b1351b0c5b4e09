"""The `gen` command line. It parses, validates and calls; the methods live elsewhere.

Errors the user can fix print one line and exit with status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path

import gen
from gen.errors import FieldError, GenError, printable, user_message

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


POSITIONAL_FIELDS = ("prompt",)


def flag_name(field: str) -> str:
    """How the command line names a job field: `train_size` → `--train-size`, positional `prompt` as is."""
    return field if field in POSITIONAL_FIELDS else "--" + field.replace("_", "-")


def _default(job_type, field: str) -> str:
    """A job field's default, for help texts (the job type is the one home of defaults)."""
    return str(next(f.default for f in dataclasses.fields(job_type) if f.name == field))


def _job_parser(commands, name: str, **kwargs) -> argparse.ArgumentParser:
    """A generation command: its flags' dests are job fields; unset flags are left out of the namespace,
    so the job type's own defaults apply."""
    parser = commands.add_parser(name, argument_default=argparse.SUPPRESS, **kwargs)
    parser.set_defaults(func=cmd_generate)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser, out_help: str, dtype_help: str) -> None:
    """--out, --overwrite, --device, --dtype: where and how any job runs."""
    from gen.loading import DTYPES

    parser.add_argument("--out", help=out_help)
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: best available)")
    parser.add_argument("--dtype", choices=DTYPES, help=dtype_help)


def _add_video_layout_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    """--model, --frames, --width, --height: what fixes a video's token layout."""
    parser.add_argument("--model", help="video preset, or a local folder / hub id of a "
                        f"Wan or HunyuanVideo pipeline (default: {default_model})")
    parser.add_argument("--frames", type=int, help="pixel frames, 4k+1 for Wan (default: per model)")
    parser.add_argument("--width", type=int, help="pixels, a multiple of 16 (default: per model)")
    parser.add_argument("--height", type=int, help="pixels, a multiple of 16 (default: per model)")


def _add_image_command(commands) -> None:
    from gen.attention.entropy import ENTROPY_MODES
    from gen.attention.kernels import BACKENDS
    from gen.jobs import ImageJob
    from gen.models import PRESETS

    image = _job_parser(
        commands, "image", help="text-to-image at any size (attention entropy scaling)",
        description="Generate images from a prompt at any size. Entropy scaling keeps images clean far "
        "from the model's training size. A prompt that starts with '-' goes after '--' "
        "(gen image -- '-a prompt'); a flag's value that does, after '=' (--negative=-blurry).")
    image.add_argument("prompt")
    image.add_argument("--model", help=f"preset ({', '.join(PRESETS)}), hub id or local diffusers folder "
                       f"(default: {_default(ImageJob, 'model')})")
    grid = "a multiple of 8 (SD, SDXL) or 16 (FLUX.1, SD3.5, Qwen-Image); default: the model's training size"
    image.add_argument("--width", type=int, help=f"pixels, {grid}")
    image.add_argument("--height", type=int, help=f"pixels, {grid}")
    image.add_argument("--steps", type=int, help="denoising steps (default: per model)")
    image.add_argument("--guidance", type=float,
                       help="the model's guidance: CFG scale (SD, SDXL, SD3.5), distilled guidance (FLUX.1-dev), "
                       "true-CFG scale (Qwen-Image); FLUX.1-schnell takes none (default: per model)")
    image.add_argument("--true-cfg", type=float,
                       help="FLUX.1 only: > 1 adds real CFG with the --negative prompt (two passes per step)")
    image.add_argument("--negative", help="negative prompt (FLUX.1: needs --true-cfg > 1)")
    image.add_argument("--seed", type=int, help="seed of the first image (default: random, printed)")
    image.add_argument("--batch", type=int, help="number of images, seeds seed..seed+N-1 (default 1)")
    image.add_argument("--entropy-scaling", choices=ENTROPY_MODES,
                       help="auto: on when the size differs from the training size (default)")
    image.add_argument("--train-size", type=int, help="override the model's training size in pixels")
    image.add_argument("--attention-backend", choices=BACKENDS,
                       help="dense attention kernel (xformers: CUDA only, if installed; FLUX.1 and Qwen-Image get "
                       "it through diffusers' dispatcher, SD3.5 cannot; default sdpa)")
    _add_run_arguments(image, "output PNG; with --batch N, names get -SEED (default: outputs/TIME-SEED.png)",
                       "default: fp16 on GPU, fp32 on CPU")


def _add_style_command(commands) -> None:
    from gen.attention.kernels import BACKENDS
    from gen.jobs import StyleJob
    from gen.style import CONVENTIONS, LAYER_SETS
    from pipelines.style_transfer import MEMORY_MODES

    style = _job_parser(
        commands, "style", help="repaint content images in the style of one or more pictures (StyleID)",
        description="Style transfer by style injection. Output size: the content's aspect ratio with its "
        "longer side --size (multiples of 8); style images and further contents are scaled to cover that "
        "size and centre-cropped. The process is deterministic (DDIM, eta 0).")
    style.add_argument("--content", action="append", required=True, metavar="IMAGE",
                       help="content image; repeat for several (stylised in one batch)")
    style.add_argument("--style", action="append", required=True, metavar="IMAGE[:WEIGHT]",
                       help="style image, optionally with a blend weight; repeat to blend styles")
    style.add_argument("--model", help="SD 1.x/2.x or SDXL preset, hub id or local diffusers folder "
                       f"(default: {_default(StyleJob, 'model')})")
    strength = style.add_mutually_exclusive_group()
    strength.add_argument("--gamma", type=float, help="query preservation in [0, 1] (default 0.75; 0.3 = stronger style)")
    strength.add_argument("--strength", type=float, help="style strength in [0, 1], mapped onto gamma (0.5 = gamma 0.75)")
    style.add_argument("--temperature", type=float,
                       help=f"attention temperature T > 0 (default {_default(StyleJob, 'temperature')})")
    style.add_argument("--steps", type=int, help=f"DDIM steps (default {_default(StyleJob, 'steps')})")
    style.add_argument("--size", type=int, help="longer side of the output in pixels (default: training size)")
    style.add_argument("--seed", type=int, help="recorded only: the method is deterministic")
    style.add_argument("--preserve-color", action="store_true", help="keep the content's colours (lightness from the style)")
    style.add_argument("--mask", metavar="IMAGE", help="white where the style applies; same size as the content image")
    style.add_argument("--no-injection", action="store_true", help="no key/value injection (inversion + AdaIN only)")
    style.add_argument("--no-adain", action="store_true", help="start from the content's inverted latent as is")
    style.add_argument("--layers", nargs="+", metavar="NAME",
                       help=f"injected self-attention layers: a set ({', '.join(LAYER_SETS)}), layer names or "
                       "patterns (default: the convention's set; vsp on SDXL)")
    style.add_argument("--convention", choices=list(CONVENTIONS),
                       help=f"whose StyleID to follow: gen, original (run_styleid.py) or port (the authors' diffusers "
                       f"port) (default: {_default(StyleJob, 'convention')})")
    style.add_argument("--inject-from", type=int, metavar="STEP",
                       help="first injected generation step, 0-based (default: the convention's: gen 1, original 1, "
                       "port 0)")
    style.add_argument("--memory", choices=MEMORY_MODES,
                       help="cache: keep features (faster); recompute: keep only latents (less memory); default auto")
    style.add_argument("--no-cache", action="store_true", help="do not read or write the inversion cache")
    style.add_argument("--attention-backend", choices=BACKENDS, help="dense attention kernel (default sdpa)")
    _add_run_arguments(style, "output PNG; several contents add -NAME (default: outputs/TIME-style.png)",
                       "default: fp16 on GPU, fp32 on CPU")


def _add_video_command(commands) -> None:
    from gen.attention.radial import GRANULARITIES
    from gen.jobs import VideoJob
    from gen.video_models import DEFAULT_STRENGTH
    from pipelines.text_to_video import ATTENTION_MODES

    video = _job_parser(
        commands, "video", help="video from text, a first/last frame or a video, with radial sparse attention "
        "(Wan, HunyuanVideo)",
        description="Generate a video. Radial attention makes attention cost O(n log n); the first "
        "--dense-layers blocks and --dense-steps steps run dense (warm-up). The model decides which inputs it "
        "takes (--image, --last-image, --video); input images and frames are scaled to cover the output size "
        "and centre-cropped.")
    video.add_argument("prompt")
    _add_video_layout_arguments(video, default_model=_default(VideoJob, "model"))
    video.add_argument("--image", metavar="IMAGE", help="first frame (image-to-video models, wan2.2-ti2v-5b)")
    video.add_argument("--last-image", metavar="IMAGE", help="last frame (first/last-frame models)")
    video.add_argument("--video", metavar="VIDEO", help="input video: video-to-video (Wan text-to-video models)")
    video.add_argument("--strength", type=float, help="video-to-video: how much changes, 0–1; the part of the "
                       f"schedule run (default {DEFAULT_STRENGTH})")
    video.add_argument("--steps", type=int, help="denoising steps (default: per model)")
    video.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: per model)")
    video.add_argument("--negative", help="negative prompt")
    video.add_argument("--seed", type=int, help="seed (default: random, printed)")
    video.add_argument("--attention", choices=ATTENTION_MODES, help="default radial")
    video.add_argument("--dense-layers", type=int, help="first N transformer blocks run dense (default: per model)")
    video.add_argument("--dense-steps", type=int, help="first N steps run dense (default: per model)")
    video.add_argument("--dense-final-steps", type=int, help="last N steps run dense (default 0)")
    video.add_argument("--decay", type=float, help="radial band decay (default: per model)")
    video.add_argument("--mask-granularity", choices=GRANULARITIES, help="default block")
    video.add_argument("--lora", action="append", metavar="PATH[:SCALE]",
                       help="LoRA weights (.safetensors), optionally with a scale; repeatable")
    video.add_argument("--fps", type=int, help=f"frames per second of the MP4 (default {_default(VideoJob, 'fps')})")
    video.add_argument("--png-frames", action="store_true", help="also write every frame as PNG into OUT_frames/")
    video.add_argument("--gpus", "--context-parallel", dest="context_parallel", type=int, metavar="N",
                       help="split the video over N GPUs (Ulysses context parallelism): gen starts one process per "
                       "GPU, or runs as one of them under torchrun --nproc-per-node N (default 1)")
    _add_run_arguments(video, "output MP4 (default: outputs/TIME-SEED.mp4); parameters go to OUT.json",
                       "default: bf16 on GPU, fp32 on CPU")


def build_parser() -> argparse.ArgumentParser:
    from gen.attention.radial import GRANULARITIES

    parser = _Parser(prog="gen", description="Training-free attention methods for diffusers models.")
    parser.add_argument("--version", action="version", version=f"gen {gen.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_image_command(commands)
    _add_style_command(commands)
    _add_video_command(commands)

    render = commands.add_parser(
        "render", help="render a file of jobs (JSONL or CSV) into a folder, resumable, with a manifest",
        description="Render image, style and video jobs. Each job has a kind, optional id and the parameters "
        "of the matching command (same names as its flags). Outputs are named after the job id; "
        "DIR/manifest.jsonl records every finished job. Run again to resume.")
    render.add_argument("jobs", help="job file: .jsonl (one JSON object per line) or .csv")
    render.add_argument("--out", required=True, metavar="DIR", help="output folder")
    render.add_argument("--skip-invalid", action="store_true", help="run the valid jobs even if some lines are bad")
    render.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on Ray Data: a local Ray without ADDRESS, else join the cluster at ADDRESS")
    render.add_argument("--workers", type=int, default=1, help="Ray actors (one pipeline each); needs --ray")
    render.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default 0)")
    render.add_argument("--wait", action="store_true",
                        help="if another gen render writes to DIR, wait for it instead of refusing")
    render.set_defaults(func=cmd_render)

    mask = commands.add_parser(
        "mask", help="show the radial attention mask of a video layout (needs no weights)",
        description="Print the token layout, kept-block density and attention FLOPs saved by radial "
        "attention for a video model, frame count and size; optionally draw the mask.")
    _add_video_layout_arguments(mask, default_model="wan2.1-1.3b")
    mask.set_defaults(model="wan2.1-1.3b")
    mask.add_argument("--decay", type=float, help="band decay (default: per model)")
    mask.add_argument("--mask-granularity", choices=GRANULARITIES, default="block",
                      help="block: the reference's 128-block coarsening; token: the exact mask")
    mask.add_argument("--png", help="write a picture of the mask here")
    mask.add_argument("--overwrite", action="store_true", help="replace an existing --png")
    mask.set_defaults(func=cmd_mask)

    app = commands.add_parser("app", help="open the web UI (Gradio)",
                              description="Serve the web UI. Local only (127.0.0.1) unless --host or --share.")
    app.add_argument("--model", help="default image/style model in the UI (default: tiny-sd)")
    app.add_argument("--video-model", help="default video model in the UI (default: tiny-wan)")
    app.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    app.add_argument("--device", help="cuda, cpu, … (default: best available)")
    app.add_argument("--out", default="outputs/app", metavar="DIR", help="where results are written")
    app.set_defaults(func=cmd_app)

    cache = commands.add_parser("cache", help="show or clear gen's caches (inversions, built tiny models)")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--all", action="store_true", help="clear: also remove the built tiny models")
    cache.set_defaults(func=cmd_cache)

    info = commands.add_parser("info", help="print the parameters stored in an image")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print only gen's JSON parameters")
    info.set_defaults(func=cmd_info)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that clean-up runs as it does for Ctrl-C."""


def handle_termination():
    """Turn SIGTERM into `Terminated` (main thread only): temporaries are removed and locks released as
    for Ctrl-C. Returns the handler it replaced (None off the main thread, where nothing changes)."""
    def terminate(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, terminate)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = handle_termination()
    try:
        return args.func(args)
    except GenError as exc:
        print(f"gen {args.command}: error: {user_message(exc, flag_name)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a disk or folder that fails while writing: one line, not a traceback
        print(f"gen {args.command}: error: {user_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"gen {args.command}: {how}; finished outputs are kept, no partial file was written", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------- generation


def cmd_generate(args: argparse.Namespace) -> int:
    """`gen image`, `gen style` and `gen video`: the flags become a job; plan (all checks), load, run, report."""
    from gen.jobs import JOB_TYPES, plan_job

    given = {key: value for key, value in vars(args).items() if key not in ("command", "func")}
    job = JOB_TYPES[args.command](**given)
    if getattr(job, "context_parallel", 1) != 1:
        return _context_parallel(job)
    _generate(plan_job(job))
    return 0


def _generate(plan, main_process: bool = True) -> None:
    """Load and run a planned job; the main process (all but ranks other than 0 of a split video) reports."""
    from gen.jobs import execute, load_pipeline_for, uses_random_weights

    model = plan.job.model
    _quiet_libraries()
    say = (lambda text: print(text, file=sys.stderr)) if main_process else (lambda text: None)
    say(f"loading {model} …")
    pipe = load_pipeline_for(plan)
    if uses_random_weights(plan, pipe):
        say(f"note: {model} has random weights; its outputs are noise-like (for tests and demos)")
    with _StepBars() as bars:  # image and video pipelines draw their own per-step bar
        records = execute(plan, pipe, bars.update if plan.kind == "style" else None)
    for record in records:
        print(_summary(plan.kind, record))
    if plan.kind == "style":
        stats = records[0]["stats"]
        say(f"{stats['unet_calls']} UNet calls, {stats['inversions']} inversions ({stats['cache_hits']} from "
            f"cache), memory mode {stats['memory_mode']}")


# ------------------------------------------------------- one video on several GPUs


def _context_parallel(job) -> int:
    """`gen video --gpus N`: under torchrun (or gen's own launch), run as one rank; else check everything, then
    start the N ranks through torch's elastic launcher and wait for them."""
    from gen import distributed
    from gen.jobs import plan_job

    if distributed.launched_by_torchrun():
        return run_rank(job)
    plan = plan_job(job)  # every check, once, before any process starts
    distributed.check_launch(job.context_parallel, job.device)
    return distributed.launch(plan.job.to_dict(), job.context_parallel)


def run_rank(job) -> int:
    """One rank of a split video: every rank checks the job, loads the model onto its GPU and runs its share of
    each step; rank 0 prints progress and writes the outputs. The run's first failure is told once, by the rank
    it happened on; the exit status is the one a one-process run would have (2 for bad input)."""
    from gen import distributed
    from gen.jobs import plan_job

    ranks = None
    try:
        ranks = distributed.init_ranks()
        if job.context_parallel != ranks.world_size:
            raise FieldError("context_parallel", f"{{name}} {job.context_parallel} with {ranks.world_size} processes; "
                             f"start as many as the degree (torchrun --nproc-per-node {job.context_parallel})")
        plan = plan_job(job)
        plan.job = plan.job.replace(seed=distributed.same_seed_everywhere(plan.job.seed))
        _generate(plan, ranks.is_main_process)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every way a rank can end is told once, as one line
        return _rank_failure(exc, ranks)
    finally:
        distributed.close_ranks()


def _rank_failure(exc: BaseException, ranks) -> int:
    from gen import distributed

    if isinstance(exc, Terminated):  # the launcher stops the others once one rank has failed: that one tells
        return EXIT_TERMINATED
    who = f"rank {ranks.rank}: " if ranks is not None else ""
    if isinstance(exc, KeyboardInterrupt):
        status, line = EXIT_INTERRUPTED, f"{who}interrupted; no partial file was written"
    elif isinstance(exc, (GenError, OSError)):
        status, line = EXIT_USAGE, f"error: {who}{user_message(exc, flag_name)}"
    else:  # a crash, out of memory, a collective broken by another rank's failure
        status, line = 1, f"error: {who}{user_message(exc)}"
    if ranks is None or distributed.first_failure(line):
        print(f"gen video: {line}", file=sys.stderr)
    return status


def run_rank_from_environment() -> int:
    """`python -m gen.rank`: one rank of `gen video --gpus N`, its job handed over by the launch."""
    from gen import distributed
    from gen.jobs import VideoJob

    previous = handle_termination()
    try:
        job = VideoJob.from_dict(distributed.job_from_environment())
    except GenError as exc:
        print(f"gen video: error: {user_message(exc, flag_name)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_rank(job)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _summary(kind: str, record: dict) -> str:
    p = record["params"]
    if kind == "image":
        note = " (entropy scaling on)" if p["entropy_scaling_active"] else ""
        return f"{record['path']}  seed {p['seed']}  {p['width']}x{p['height']}{note}"
    if kind == "style":
        return f"{record['path']}  {p['width']}x{p['height']}"
    stats = record["stats"]
    return (f"{record['path']}  {p['frames']} frames {p['width']}x{p['height']}  seed {p['seed']}  "
            f"({stats['radial_calls']} radial / {stats['dense_calls']} dense self-attention calls)")


def _quiet_libraries() -> None:
    """Keep the terminal to our progress bar: no loading bars or library chatter."""
    import warnings

    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


class _StepBars:
    """One tqdm bar per phase (invert, stylise), fed by the pipeline's step callback."""

    def __enter__(self):
        self.bars = {}
        return self

    def update(self, phase: str, step: int, total: int) -> None:
        from tqdm.auto import tqdm

        if phase not in self.bars:
            self.bars[phase] = tqdm(total=total, desc=phase, leave=False)
        self.bars[phase].update(step - self.bars[phase].n)

    def __exit__(self, *exc):
        for bar in self.bars.values():
            bar.close()


# ----------------------------------------------------------------------- render


def cmd_render(args: argparse.Namespace) -> int:
    from gen.render import render

    _quiet_libraries()
    summary = render(args.jobs, args.out, skip_invalid=args.skip_invalid, use_ray=args.ray is not None,
                     ray_address=args.ray or None, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                     wait=args.wait)
    print(f"{summary.done} done, {summary.skipped} already complete, {summary.failed} failed"
          + (f", {summary.invalid} invalid skipped" if summary.invalid else "") + f"; manifest: {args.out}/manifest.jsonl")
    return 1 if summary.failed else 0


# ------------------------------------------------------------------------- mask


def cmd_mask(args: argparse.Namespace) -> int:
    from gen.validation import check_radial_settings
    from gen.video_models import video_layout, video_preset

    preset = video_preset(args.model)
    frames, width, height = preset.shape(args.frames, args.width, args.height)
    decay = preset.decay if args.decay is None else args.decay
    check_radial_settings(decay=decay)
    layout = video_layout(preset, frames, width, height, decay)
    png = None
    if args.png:
        from gen.outputs import check_output_paths

        png = Path(args.png)
        check_output_paths([png], args.overwrite)

    from gen.attention.radial import attention_flops_fraction, kept_block_density, mask_picture

    density = kept_block_density(layout, args.mask_granularity)
    flops = attention_flops_fraction(layout, args.mask_granularity)
    print(f"model {preset.name} ({preset.flavour}): {frames} frames {width}x{height}")
    print(f"tokens: {layout.frames} latent frames x {layout.tokens_per_frame} per frame "
          f"({height // preset.size_multiple}x{width // preset.size_multiple}) = {layout.video_tokens} video"
          + (f" + {layout.text_tokens} text" if layout.text_tokens else "") + f" = {layout.total_tokens}")
    print(f"mask: {args.mask_granularity} granularity, decay {decay:g}, block {layout.block}"
          + (", frame 0 is an attention sink" if layout.flavour == "wan" else ""))
    print(f"kept-block density (video x video): {100 * density:.1f} %")
    print(f"attention FLOPs vs dense: {100 * flops:.1f} % ({100 * (1 - flops):.1f} % saved, "
          f"{1 / flops:.2f}x fewer)")
    if png is not None:
        from PIL import Image

        from gen.outputs import atomic_write

        picture = Image.fromarray(mask_picture(layout, args.mask_granularity))
        atomic_write(png, lambda tmp: picture.save(tmp, format="PNG"), overwrite=args.overwrite)
        print(f"picture: {png}")
    return 0


# -------------------------------------------------------------------------- app


def cmd_app(args: argparse.Namespace) -> int:
    try:
        from app.ui import launch
    except ImportError:
        raise GenError("the web UI needs gradio: pip install 'gen[app]'") from None
    if not 1 <= args.port <= 65535:
        raise GenError(f"--port must be between 1 and 65535, got {args.port}")
    from gen.video_models import VIDEO_PRESETS, video_preset

    if args.model in VIDEO_PRESETS:
        raise GenError(f"{args.model} is a video model; pass it as --video-model (--model is for images and styles)")
    if args.video_model is not None:
        video_preset(args.video_model)  # one line naming the presets if unknown
    _quiet_libraries()
    launch(host=args.host, port=args.port, share=args.share, model=args.model, video_model=args.video_model,
           out_dir=args.out, device=args.device)
    return 0


# ------------------------------------------------------------------------ cache


def cmd_cache(args: argparse.Namespace) -> int:
    import shutil

    from gen.inversion import default_inversion_cache
    from gen.paths import user_cache_dir

    cache = default_inversion_cache()
    models = user_cache_dir() / "models"
    if args.action == "info":
        print(f"inversions: {cache.root}  {len(cache.entries())} entries, {cache.size_bytes() / 2**20:.1f} MiB "
              f"(cap {cache.max_bytes / 2**20:.0f} MiB; GEN_INVERSION_CACHE_MB)")
        built = sorted(p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if models.is_dir() else []
        print(f"tiny models: {models}  {', '.join(built) or 'none built'}")
        return 0
    removed = cache.clear()
    print(f"removed {removed} cached inversions from {cache.root}")
    if args.all and models.is_dir():
        shutil.rmtree(models)
        print(f"removed built tiny models from {models}")
    return 0


# ------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    from gen.metadata import read_png_metadata

    if Path(args.file).suffix.lower() in (".mp4", ".json"):  # a video's parameters are in its sidecar
        from gen.video_io import read_mp4_metadata, read_sidecar

        try:
            params = read_sidecar(args.file)
        except GenError:  # no sidecar: the MP4 carries them too
            mp4 = Path(args.file)
            params = read_mp4_metadata(mp4) if mp4.suffix.lower() == ".mp4" and mp4.is_file() else None
            if params is None:
                raise
        print(json.dumps(params, indent=2, sort_keys=True))
        return 0
    text, params = read_png_metadata(args.file)
    if args.json:
        if params is None:
            raise GenError(f"{args.file} has no gen parameters")
        print(json.dumps(params, indent=2, sort_keys=True))
        return 0
    if text is None and params is None:
        raise GenError(f"{args.file} carries no generation parameters")
    if text is not None:
        print(printable(text))
    if params is not None:
        print()
        print(json.dumps(params, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
