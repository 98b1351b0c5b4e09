"""The `gen` command line. It parses, validates and calls; the methods live elsewhere.

Errors the user can fix print one line and exit with status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

import gen
from gen.errors import GenError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from gen.attention.entropy import ENTROPY_MODES
    from gen.attention.kernels import BACKENDS
    from gen.models import DTYPES, PRESETS

    parser = _Parser(prog="gen", description="Training-free attention methods for diffusers models.")
    parser.add_argument("--version", action="version", version=f"gen {gen.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    image = commands.add_parser(
        "image",
        help="text-to-image at any size (attention entropy scaling)",
        description="Generate images from a prompt at any size. Entropy scaling keeps images clean far "
        "from the model's training size.",
    )
    image.add_argument("prompt")
    image.add_argument("--model", default="tiny-sd",
                       help=f"preset ({', '.join(PRESETS)}), hub id or local diffusers folder (default: tiny-sd)")
    image.add_argument("--width", type=int, help="pixels, a multiple of 8 (default: the model's training size)")
    image.add_argument("--height", type=int, help="pixels, a multiple of 8 (default: the model's training size)")
    image.add_argument("--steps", type=int, help="denoising steps (default: per model)")
    image.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: per model)")
    image.add_argument("--negative", default="", help="negative prompt")
    image.add_argument("--seed", type=int, help="seed of the first image (default: random, printed)")
    image.add_argument("--batch", type=int, default=1, help="number of images, seeds seed..seed+N-1")
    image.add_argument("--entropy-scaling", choices=ENTROPY_MODES, default="auto",
                       help="auto: on when the size differs from the training size (default)")
    image.add_argument("--train-size", type=int, help="override the model's training size in pixels")
    image.add_argument("--out", help="output PNG; with --batch N, names get -SEED (default: outputs/TIME-SEED.png)")
    image.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    image.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: best available)")
    image.add_argument("--dtype", choices=DTYPES, help="default: fp16 on GPU, fp32 on CPU")
    image.add_argument("--attention-backend", choices=BACKENDS, default="sdpa",
                       help="dense attention kernel (xformers: CUDA only, if installed)")
    image.set_defaults(func=cmd_image)

    style = commands.add_parser(
        "style",
        help="repaint content images in the style of one or more pictures (StyleID)",
        description="Style transfer by style injection. Output size: the content's aspect ratio with its "
        "longer side --size (multiples of 8); style images and further contents are scaled to cover that "
        "size and centre-cropped. The process is deterministic (DDIM, eta 0).",
    )
    style.add_argument("--content", action="append", required=True, metavar="IMAGE",
                       help="content image; repeat for several (stylised in one batch)")
    style.add_argument("--style", action="append", required=True, metavar="IMAGE[:WEIGHT]",
                       help="style image, optionally with a blend weight; repeat to blend styles")
    style.add_argument("--model", default="tiny-sd", help="preset, hub id or local diffusers folder (default: tiny-sd)")
    strength = style.add_mutually_exclusive_group()
    strength.add_argument("--gamma", type=float, help="query preservation in [0, 1] (default 0.75; 0.3 = stronger style)")
    strength.add_argument("--strength", type=float, help="style strength in [0, 1], mapped onto gamma (0.5 = gamma 0.75)")
    style.add_argument("--temperature", type=float, default=1.5, help="attention temperature T > 0 (default 1.5)")
    style.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    style.add_argument("--size", type=int, help="longer side of the output in pixels (default: training size)")
    style.add_argument("--seed", type=int, default=0, help="recorded only: the method is deterministic")
    style.add_argument("--preserve-color", action="store_true", help="keep the content's colours (lightness from the style)")
    style.add_argument("--mask", metavar="IMAGE", help="white where the style applies; same size as the content image")
    style.add_argument("--no-injection", action="store_true", help="no key/value injection (inversion + AdaIN only)")
    style.add_argument("--no-adain", action="store_true", help="start from the content's inverted latent as is")
    style.add_argument("--layers", nargs="+", metavar="NAME", help="injected self-attention layers (names or patterns)")
    style.add_argument("--memory", choices=["auto", "cache", "recompute"], default="auto",
                       help="cache: keep features (faster); recompute: keep only latents (less memory)")
    style.add_argument("--no-cache", action="store_true", help="do not read or write the inversion cache")
    style.add_argument("--out", help="output PNG; several contents add -NAME (default: outputs/TIME-style.png)")
    style.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    style.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: best available)")
    style.add_argument("--dtype", choices=DTYPES, help="default: fp16 on GPU, fp32 on CPU")
    style.add_argument("--attention-backend", choices=BACKENDS, default="sdpa", help="dense attention kernel")
    style.set_defaults(func=cmd_style)

    video = commands.add_parser(
        "video", help="text-to-video with radial sparse attention (Wan, HunyuanVideo)",
        description="Generate a video. Radial attention makes attention cost O(n log n); the first "
        "--dense-layers blocks and --dense-steps steps run dense (warm-up).")
    video.add_argument("prompt")
    video.add_argument("--model", default="tiny-wan", help="video preset (default: tiny-wan)")
    video.add_argument("--frames", type=int, help="pixel frames, 4k+1 for Wan (default: per model)")
    video.add_argument("--width", type=int, help="pixels, a multiple of 16 (default: per model)")
    video.add_argument("--height", type=int, help="pixels, a multiple of 16 (default: per model)")
    video.add_argument("--steps", type=int, help="denoising steps (default: per model)")
    video.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: per model)")
    video.add_argument("--negative", default="", help="negative prompt")
    video.add_argument("--seed", type=int, help="seed (default: random, printed)")
    video.add_argument("--attention", choices=["radial", "dense"], default="radial")
    video.add_argument("--dense-layers", type=int, help="first N transformer blocks run dense (default: per model)")
    video.add_argument("--dense-steps", type=int, help="first N steps run dense (default: per model)")
    video.add_argument("--dense-final-steps", type=int, default=0, help="last N steps run dense (default 0)")
    video.add_argument("--decay", type=float, help="radial band decay (default: per model)")
    video.add_argument("--mask-granularity", choices=["block", "token"], default="block")
    video.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                       help="LoRA weights (.safetensors), optionally with a scale; repeatable")
    video.add_argument("--fps", type=int, default=16, help="frames per second of the MP4 (default 16)")
    video.add_argument("--png-frames", action="store_true", help="also write every frame as PNG into OUT_frames/")
    video.add_argument("--out", help="output MP4 (default: outputs/TIME-SEED.mp4); parameters go to OUT.json")
    video.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    video.add_argument("--device", help="cuda, cuda:1 or cpu (default: best available)")
    video.add_argument("--dtype", choices=DTYPES, help="default: bf16 on GPU, fp32 on CPU")
    video.set_defaults(func=cmd_video)

    mask = commands.add_parser(
        "mask", help="show the radial attention mask of a video layout (needs no weights)",
        description="Print the token layout, kept-block density and attention FLOPs saved by radial "
        "attention for a video model, frame count and size; optionally draw the mask.")
    mask.add_argument("--model", default="wan2.1-1.3b", help="video preset (default: wan2.1-1.3b)")
    mask.add_argument("--frames", type=int, help="pixel frames (default: per model)")
    mask.add_argument("--width", type=int, help="pixels (default: per model)")
    mask.add_argument("--height", type=int, help="pixels (default: per model)")
    mask.add_argument("--decay", type=float, help="band decay (default: per model)")
    mask.add_argument("--mask-granularity", choices=["block", "token"], default="block",
                      help="block: the reference's 128-block coarsening; token: the exact mask")
    mask.add_argument("--png", help="write a picture of the mask here")
    mask.add_argument("--overwrite", action="store_true", help="replace an existing --png")
    mask.set_defaults(func=cmd_mask)

    cache = commands.add_parser("cache", help="show or clear gen's caches (inversions, built tiny models)")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--all", action="store_true", help="clear: also remove the built tiny models")
    cache.set_defaults(func=cmd_cache)

    info = commands.add_parser("info", help="print the parameters stored in an image")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print only gen's JSON parameters")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GenError as exc:
        print(f"gen {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"gen {args.command}: interrupted; finished outputs are kept, no partial file was written",
              file=sys.stderr)
        return EXIT_INTERRUPTED


# ------------------------------------------------------------------------ image


def cmd_image(args: argparse.Namespace) -> int:
    from gen.models import resolve_model
    from gen.outputs import batch_output_paths, check_output_paths
    from gen.validation import check_batch, check_guidance, check_seed, check_side, check_steps

    # Everything that can be checked without loading a model is checked first.
    preset = resolve_model(args.model)
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
        stamp = time.strftime("%Y%m%d-%H%M%S")
        outputs = [Path("outputs") / f"{stamp}-{seed}.png" for seed in seeds]
    check_output_paths(outputs, args.overwrite)

    from gen.attention.kernels import resolve_backend
    from gen.models import choose_device

    resolve_backend(args.attention_backend, choose_device(args.device))  # before a long model load
    _quiet_libraries()
    from gen.metadata import png_text_chunks
    from gen.outputs import atomic_write
    from pipelines import TextToImagePipeline

    print(f"loading {args.model} …", file=sys.stderr)
    pipe = TextToImagePipeline.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, train_size=args.train_size,
        attention_backend=args.attention_backend,
    )
    if pipe.model.preset.is_random:
        print(f"note: {args.model} has random weights; its images are noise-like (for tests and demos)",
              file=sys.stderr)
    for index, (seed, path) in enumerate(zip(seeds, outputs)):
        result = pipe(
            args.prompt, negative_prompt=args.negative, width=args.width, height=args.height,
            num_inference_steps=args.steps, guidance_scale=args.guidance, seed=seed,
            entropy_scaling=args.entropy_scaling, progress_desc=f"image {index + 1}/{len(seeds)}",
        )
        image, params = result.images[0], result.parameters[0]
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_text_chunks(params)),
                     overwrite=args.overwrite)
        note = " (entropy scaling on)" if params["entropy_scaling_active"] else ""
        print(f"{path}  seed {seed}  {params['width']}x{params['height']}{note}")
    return 0


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


# ------------------------------------------------------------------------ style


def cmd_style(args: argparse.Namespace) -> int:
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
    if args.out:
        outputs = named_output_paths(args.out, args.content)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        outputs = named_output_paths(Path("outputs") / f"{stamp}-style.png", args.content)
    check_output_paths(outputs, args.overwrite)

    from gen.attention.kernels import resolve_backend
    from gen.models import choose_device

    resolve_backend(args.attention_backend, choose_device(args.device))
    _quiet_libraries()
    from gen.metadata import png_text_chunks
    from gen.outputs import atomic_write
    from pipelines import StyleTransferPipeline

    print(f"loading {args.model} …", file=sys.stderr)
    pipe = StyleTransferPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                                 attention_backend=args.attention_backend)
    if pipe.model.preset.is_random:
        print(f"note: {args.model} has random weights; its images are noise-like (for tests and demos)",
              file=sys.stderr)
    with _StepBars() as bars:
        result = pipe(
            contents, [(image, weight) for image, weight, _ in styles], gamma=args.gamma, strength=args.strength,
            temperature=args.temperature, num_inference_steps=args.steps, size=args.size, layers=args.layers,
            injection=not args.no_injection, adain_init=not args.no_adain, preserve_colors=args.preserve_color,
            mask=mask, memory=args.memory, use_cache=not args.no_cache, on_step=bars.update,
        )
    kept = [(Path(path).name, weight) for _, weight, path in styles if weight > 0]
    files = {"content_files": [Path(p).name for p in args.content], "style_files": [n for n, _ in kept],
             "seed": args.seed}
    for path, image, params in zip(outputs, result.images, result.parameters):
        params = dict(params, **files, prompt=f"style transfer: {Path(args.content[params['content_index']]).name}",
                      styles=", ".join(f"{name} ({weight:g})" for name, weight in kept))
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_text_chunks(params)),
                     overwrite=args.overwrite)
        print(f"{path}  {params['width']}x{params['height']}")
    stats = result.stats
    print(f"{stats['unet_calls']} UNet calls, {stats['inversions']} inversions ({stats['cache_hits']} from cache), "
          f"memory mode {stats['memory_mode']}", file=sys.stderr)
    return 0


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


# ------------------------------------------------------------------------ video


def cmd_video(args: argparse.Namespace) -> int:
    from gen.outputs import check_output_paths
    from gen.validation import check_guidance, check_seed, check_steps, parse_weighted_path
    from gen.video_io import sidecar_path
    from gen.video_models import check_lora_file, check_video_shape, video_preset

    preset = video_preset(args.model)
    frames = args.frames if args.frames is not None else preset.frames
    width = args.width if args.width is not None else preset.width
    height = args.height if args.height is not None else preset.height
    check_video_shape(preset, frames, width, height)
    if args.steps is not None:
        check_steps(args.steps)
    if args.guidance is not None:
        check_guidance(args.guidance)
    for label, value in (("--dense-layers", args.dense_layers), ("--dense-steps", args.dense_steps),
                         ("--dense-final-steps", args.dense_final_steps)):
        if value is not None and value < 0:
            raise GenError(f"{label} must be >= 0, got {value}")
    if args.decay is not None and not args.decay > 0:
        raise GenError(f"--decay must be > 0, got {args.decay}")
    if not 1 <= args.fps <= 120:
        raise GenError(f"--fps must be between 1 and 120, got {args.fps}")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    check_seed(seed)
    loras = [parse_weighted_path(spec) for spec in args.lora]
    for path, _ in loras:
        check_lora_file(path)
    out = Path(args.out) if args.out else Path("outputs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{seed}.mp4"
    check_output_paths([out], args.overwrite, suffixes=(".mp4",))
    check_output_paths([sidecar_path(out)], args.overwrite, suffixes=(".json",))
    frames_dir = out.with_name(out.stem + "_frames")
    if args.png_frames and frames_dir.exists() and not args.overwrite:
        raise GenError(f"frame folder {str(frames_dir)!r} already exists; pass --overwrite to replace it")

    _quiet_libraries()
    from pipelines import TextToVideoPipeline

    print(f"loading {args.model} …", file=sys.stderr)
    pipe = TextToVideoPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    pipe.load_loras(loras)
    if preset.source in ("tiny", "arch"):
        print(f"note: {args.model} has random weights; its videos are noise-like (for tests and demos)",
              file=sys.stderr)
    result = pipe(args.prompt, negative_prompt=args.negative, frames=frames, width=width, height=height,
                  num_inference_steps=args.steps, guidance_scale=args.guidance, seed=seed, attention=args.attention,
                  dense_layers=args.dense_layers, dense_steps=args.dense_steps,
                  dense_final_steps=args.dense_final_steps, decay=args.decay, granularity=args.mask_granularity)
    from gen.video_io import write_mp4, write_png_frames, write_sidecar

    params = dict(result.parameters, fps=args.fps)
    write_mp4(out, result.frames, fps=args.fps, overwrite=args.overwrite)
    write_sidecar(out, params, overwrite=args.overwrite)
    if args.png_frames:
        write_png_frames(frames_dir, result.frames, overwrite=args.overwrite)
    stats = result.stats
    print(f"{out}  {frames} frames {width}x{height}  seed {seed}  "
          f"({stats['radial_calls']} radial / {stats['dense_calls']} dense self-attention calls)")
    return 0


# ------------------------------------------------------------------------- mask


def cmd_mask(args: argparse.Namespace) -> int:
    from gen.video_models import video_layout, video_preset

    preset = video_preset(args.model)
    frames = args.frames if args.frames is not None else preset.frames
    width = args.width if args.width is not None else preset.width
    height = args.height if args.height is not None else preset.height
    decay = preset.decay if args.decay is None else args.decay
    if not decay > 0:
        raise GenError(f"--decay must be > 0, got {decay}")
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

    if Path(args.file).suffix.lower() in (".mp4", ".json"):
        return _video_info(Path(args.file))
    text, params = read_png_metadata(args.file)
    if args.json:
        if params is None:
            raise GenError(f"{args.file} has no gen parameters")
        print(json.dumps(params, indent=2, sort_keys=True))
        return 0
    if text is None and params is None:
        raise GenError(f"{args.file} carries no generation parameters")
    if text is not None:
        print(text)
    if params is not None:
        print()
        print(json.dumps(params, indent=2, sort_keys=True))
    return 0



def _video_info(path: Path) -> int:
    """A video's parameters live in its JSON sidecar (OUT.json beside OUT.mp4)."""
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise GenError(f"{path.name} has no parameter sidecar ({sidecar.name} not found)")
    try:
        params = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GenError(f"{sidecar.name} is not valid JSON") from None
    print(json.dumps(params, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
