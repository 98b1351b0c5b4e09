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


# ------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    from gen.metadata import read_png_metadata

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


if __name__ == "__main__":
    sys.exit(main())
