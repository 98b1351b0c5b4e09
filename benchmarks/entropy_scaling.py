"""Per-step denoiser time with attention entropy scaling on vs off (design §3.2: the method is free).

UNets (`arch-sd15`, `arch-sd21`, `arch-sdxl`: the real configurations, random weights) with a CFG
batch of 2; diffusion transformers (`arch-flux-dev`, `arch-sd35-medium`, `arch-sd35-large`,
`arch-qwen-image`: the real width with `--depth` joint blocks, Flux with twice as many
single-stream blocks; full depth is `--depth 0`) with the batch and text length their pipelines
use (FLUX.1-dev: 1 × 512 T5 tokens; SD3.5: CFG batch 2 × 333 CLIP+T5 tokens; Qwen-Image: 1 × 32
tokens, one of its two true-CFG calls). The tiny presets (`tiny-flux`, `tiny-sd3`,
`tiny-qwen-image`) run the same code at toy sizes. Three variants, alternated round-robin in
one run at a size away from the training size:

  off        stock diffusers processors
  gen-plain  gen's wrappers (UNet: gen's processor; transformer: wrappers and scale gates) with a
             factor of exactly 1, i.e. the stock kernel call through gen's code
  entropy    entropy scaling (the factor folded into the kernel's scale argument)

and prints the median time per step and the median per-round ratio to `off`.

    python benchmarks/entropy_scaling.py                                   # CPU, arch-sd15, 256x256
    python benchmarks/entropy_scaling.py --model arch-flux-dev --size 256x256 --depth 1 --rounds 8
    python benchmarks/entropy_scaling.py --device cuda --dtype bf16 --model arch-qwen-image --depth 0 --size 1024x1024
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import alternate, machine_description, median_ratio  # noqa: E402

from gen.attention import UNetAttnProcessor, entropy_scaling, install_processors, select_layers  # noqa: E402
from gen.attention.entropy import is_unet  # noqa: E402
from gen.attention.scale_gates import scaled_softmax  # noqa: E402
from gen.loading import choose_dtype  # noqa: E402
from gen.models import PRESETS  # noqa: E402
from gen.tiny_models import ARCH_TRANSFORMERS, build_arch_transformer, build_arch_unet  # noqa: E402

UNETS = ("arch-sd15", "arch-sd21", "arch-sdxl")
TINY_DITS = ("tiny-flux", "tiny-sd3", "tiny-qwen-image")
MODELS = UNETS + ARCH_TRANSFORMERS + TINY_DITS
TEXT_TOKENS = {"FluxTransformer2DModel": 512, "SD3Transformer2DModel": 333, "QwenImageTransformer2DModel": 32}


def unet_step(unet, latent_hw, device, dtype):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, *latent_hw, generator=g).to(device, dtype)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g).to(device, dtype)
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 1280, generator=g).to(device, dtype),
            "time_ids": torch.tensor([[1024.0, 1024.0, 0, 0, 1024.0, 1024.0]] * 2).to(device, dtype),
        }

    def step():
        with torch.inference_mode():
            unet(sample, 500, encoder_hidden_states=context, **kwargs)

    return step


def transformer_inputs(transformer, width: int, height: int, device, dtype, text_tokens: int | None = None) -> dict:
    """Random inputs of one transformer call as its pipeline makes it (8× VAE, 16 pixels per token side)."""
    g = torch.Generator().manual_seed(0)
    config, kind = transformer.config, type(transformer).__name__
    text = text_tokens or TEXT_TOKENS[kind]
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device, dtype)  # noqa: E731
    h, w = height // 16, width // 16  # token grid
    if kind == "SD3Transformer2DModel":
        return dict(hidden_states=rand(2, config.in_channels, 2 * h, 2 * w),
                    encoder_hidden_states=rand(2, text, config.joint_attention_dim),
                    pooled_projections=rand(2, config.pooled_projection_dim),
                    timestep=torch.tensor([500.0, 500.0], device=device))
    hidden, encoder = rand(1, h * w, config.in_channels), rand(1, text, config.joint_attention_dim)
    timestep = torch.tensor([0.5], device=device, dtype=dtype)
    if kind == "QwenImageTransformer2DModel":
        return dict(hidden_states=hidden, encoder_hidden_states=encoder, timestep=timestep, img_shapes=[[(1, h, w)]])
    image_ids = torch.zeros(h, w, 3)
    image_ids[..., 1], image_ids[..., 2] = torch.arange(h)[:, None], torch.arange(w)[None, :]
    guidance = torch.tensor([3.5], device=device, dtype=dtype) if config.guidance_embeds else None
    return dict(hidden_states=hidden, encoder_hidden_states=encoder, pooled_projections=rand(1, config.pooled_projection_dim),
                timestep=timestep, img_ids=image_ids.reshape(-1, 3).to(device, dtype),
                txt_ids=torch.zeros(text, 3, device=device, dtype=dtype), guidance=guidance)


def transformer_step(transformer, width, height, device, dtype):
    inputs = transformer_inputs(transformer, width, height, device, dtype)

    def step():
        with torch.inference_mode():
            transformer(**inputs)

    return step


def build_denoiser(model: str, device: torch.device, dtype: torch.dtype, depth: int | None):
    """(denoiser, training size in pixels) of a benchmark model."""
    if model in UNETS:
        return build_arch_unet(model, device=device, dtype=dtype).eval(), PRESETS[model].train_size
    if model in TINY_DITS:
        from gen.loading import dtype_name
        from gen.models import load_pipeline

        loaded = load_pipeline(model, device=str(device), dtype=dtype_name(dtype))
        return loaded.pipe.transformer, loaded.train_size
    transformer = build_arch_transformer(model, device=device, dtype=dtype, depth=depth).eval()
    return transformer, PRESETS[model.removeprefix("arch-")].train_size  # arch-flux-dev -> flux-dev


def run(model: str, width: int, height: int, rounds: int, device: str, dtype: str | None,
        depth: int | None = None) -> list[dict]:
    dev = torch.device(device)
    torch_dtype = choose_dtype(dev, dtype)
    started = time.perf_counter()
    denoiser, train = build_denoiser(model, dev, torch_dtype, depth)
    print(f"built {model} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    label = model if depth is None or model not in ARCH_TRANSFORMERS else f"{model} (depth {depth})"
    return time_denoiser(label, denoiser, train, width, height, rounds, dev, torch_dtype)


def time_denoiser(label: str, denoiser, train: int, width: int, height: int, rounds: int, dev: torch.device,
                  torch_dtype: torch.dtype) -> list[dict]:
    """The three variants alternated on a built UNet or transformer; one row each."""
    if is_unet(denoiser):
        step = unet_step(denoiser, (height // 8, width // 8), dev, torch_dtype)
        plain = lambda: install_processors(denoiser, UNetAttnProcessor(), kind="self")  # noqa: E731
    else:
        step = transformer_step(denoiser, width, height, dev, torch_dtype)
        plain = lambda: scaled_softmax(denoiser, lambda keys: 1.0, select_layers(denoiser, "self"))  # noqa: E731

    # Processors are installed outside the timed step, as a pipeline does once per image.
    contexts = {"gen-plain": plain, "entropy": lambda: entropy_scaling(denoiser, train_size=train)}
    times = alternate({"off": step, "gen-plain": step, "entropy": step}, rounds, dev, contexts=contexts)
    return [
        {"model": label, "size": f"{width}x{height}", "train": train, "variant": name,
         "median_s": statistics.median(t), "ratio": median_ratio(t, times["off"])}
        for name, t in times.items()
    ]


def table(rows: list[dict]) -> list[str]:
    lines = ["| model | size (train) | variant | median s/step | ratio to off |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['size']} ({r['train']}) | {r['variant']} | {r['median_s']:.4f} | {r['ratio']:.3f} |"
              for r in rows]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="arch-sd15", choices=MODELS)
    parser.add_argument("--size", default="256x256", help="WIDTHxHEIGHT in pixels (default 256x256)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--depth", type=int, default=1,
                        help="joint blocks of an architecture transformer (real width); 0 = full depth (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    rows = run(args.model, width, height, args.rounds, args.device, args.dtype, args.depth or None)
    print(f"# entropy scaling per-step cost, {machine_description(torch.device(args.device))}, {args.rounds} "
          f"alternated rounds, {time.strftime('%Y-%m-%d')}")
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
