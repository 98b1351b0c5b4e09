"""Per-step UNet time with attention entropy scaling on vs off (design §3.2: the method is free).

Runs the `arch-sd15` UNet (SD 1.5's real configuration, random weights) with a CFG
batch of 2 at a size away from its 512 training size, alternating three variants
round-robin in one run:

  off        stock diffusers processors
  gen-plain  gen's processor on every self-attention layer, default scale
  entropy    gen's entropy-scaling processor (scale folded into the kernel call)

and prints the median time per step and the median per-round ratio to `off`.

    python benchmarks/entropy_scaling.py                      # CPU, 256x256, 8 rounds
    python benchmarks/entropy_scaling.py --device cuda --dtype fp16 --size 1024 --rounds 20
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

from gen.attention import UNetAttnProcessor, entropy_scaling, install_processors  # noqa: E402
from gen.loading import choose_dtype  # noqa: E402
from gen.models import PRESETS  # noqa: E402
from gen.tiny_models import build_arch_unet  # noqa: E402


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


def run(model: str, width: int, height: int, rounds: int, device: str, dtype: str | None) -> list[dict]:
    dev = torch.device(device)
    torch_dtype = choose_dtype(dev, dtype)
    started = time.perf_counter()
    unet = build_arch_unet(model, device=dev, dtype=torch_dtype).eval()
    print(f"built {model} UNet in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    train = PRESETS[model].train_size
    step = unet_step(unet, (height // 8, width // 8), dev, torch_dtype)

    # Processors are installed outside the timed step, as a pipeline does once per image.
    contexts = {
        "gen-plain": lambda: install_processors(unet, UNetAttnProcessor(), kind="self"),
        "entropy": lambda: entropy_scaling(unet, train_size=train),
    }
    times = alternate({"off": step, "gen-plain": step, "entropy": step}, rounds, dev, contexts=contexts)
    return [
        {"model": model, "size": f"{width}x{height}", "train": train, "variant": name,
         "median_s": statistics.median(t), "ratio": median_ratio(t, times["off"])}
        for name, t in times.items()
    ]


def print_table(rows: list[dict], device: torch.device, rounds: int) -> None:
    print(f"# entropy scaling per-step cost, {machine_description(device)}, {rounds} alternated rounds, "
          f"{time.strftime('%Y-%m-%d')}")
    print("| model | size (train) | variant | median s/step | ratio to off |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} ({r['train']}) | {r['variant']} | {r['median_s']:.4f} | {r['ratio']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="arch-sd15", choices=["arch-sd15", "arch-sd21", "arch-sdxl"])
    parser.add_argument("--size", default="256x256", help="WIDTHxHEIGHT in pixels (default 256x256)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    rows = run(args.model, width, height, args.rounds, args.device, args.dtype)
    print_table(rows, torch.device(args.device), args.rounds)


if __name__ == "__main__":
    main()
