"""Attention alone: dense SDPA vs radial FlexAttention on a video model's real token layout.

The layout is the model's default one (`--model`; Wan2.1-1.3B: 21 latent frames × 30 × 52 tokens,
81 frames at 480×832; HunyuanVideo models add their text tokens), then 2× and 4× as many latent frames. Few heads keep CPU time sane (attention cost is linear in heads).
Rounds alternate dense and radial in one run; the table gives medians and:

  speedup       dense time / radial time   (target ≥ 0.7 × 1 / density at ≥ 32k tokens)
  growth        radial time / radial time of the previous row (frames doubled)
  predicted     kept blocks / kept blocks of the previous row (what the mask predicts)
  growth/pred   target ≤ 1.1

With --ceiling, the same FlexAttention kernel also runs with a BlockMask that keeps every block:
its time against dense SDPA is the kernel's own per-block efficiency, so efficiency / density is
the best speedup any mask of that density can reach with it.

    python benchmarks/radial_attention.py                    # CPU, 1 head, ×1 ×2 ×4 frames
    python benchmarks/radial_attention.py --device cuda --heads 12 --dtype bf16
    python benchmarks/radial_attention.py --model wan2.2-ti2v-5b --multipliers 1 2   # 31 × 880 tokens
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from timing import alternate, machine_description  # noqa: E402

from gen.attention.radial import block_classes, compiled_flex_attention, radial_sparse_attention  # noqa: E402
from gen.video_models import VIDEO_PRESETS, video_layout  # noqa: E402


def all_kept_block_mask(tokens: int, block: int, device: torch.device):
    """A BlockMask of full blocks only: FlexAttention doing dense attention, block by block."""
    from torch.nn.attention.flex_attention import BlockMask

    n = -(-tokens // block)
    none = torch.zeros(1, 1, n, dtype=torch.int32, device=device)
    order = torch.arange(n, dtype=torch.int32, device=device).expand(1, 1, n, n).contiguous()
    # Separate index tensors: inductor's CPU template fails to compile when one tensor is passed twice.
    return BlockMask.from_kv_blocks(none, torch.zeros_like(order), torch.full_like(none, n), order, BLOCK_SIZE=block,
                                    mask_mod=lambda b, h, q, kv: q >= 0, seq_lengths=(tokens, tokens))


def run(multipliers: list[int], heads: int, head_dim: int, rounds: int, device: str, dtype: torch.dtype,
        granularity: str, ceiling: bool = False, model: str = "wan2.1-1.3b") -> list[dict]:
    dev = torch.device(device)
    preset = VIDEO_PRESETS[model]
    rows = []
    for multiplier in multipliers:
        base = video_layout(preset, preset.frames, preset.width, preset.height)  # Wan2.1-1.3B: 21 × 1560 tokens
        layout = dataclasses.replace(base, frames=base.frames * multiplier)
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, heads, layout.total_tokens, head_dim, generator=g).to(dev, dtype)
                   for _ in range(3))
        full, partial = block_classes(layout, granularity)
        kept = int((full | partial).sum())
        started = time.perf_counter()
        radial_sparse_attention(q, k, v, layout, granularity)  # builds the mask, compiles for this shape
        setup = time.perf_counter() - started
        variants = {"dense": lambda: F.scaled_dot_product_attention(q, k, v),
                    "radial": lambda: radial_sparse_attention(q, k, v, layout, granularity)}
        if ceiling:
            everything = all_kept_block_mask(layout.total_tokens, layout.block, dev)
            compiled_flex_attention()(q, k, v, block_mask=everything)  # compile outside the timing
            variants["flex all kept"] = lambda: compiled_flex_attention()(q, k, v, block_mask=everything)
        times = alternate(variants, rounds, dev, warmup=0)
        rows.append({"frames": layout.frames, "tokens": layout.total_tokens, "kept": kept,
                     "density": kept / full.size, "dense": statistics.median(times["dense"]),
                     "radial": statistics.median(times["radial"]), "setup": setup,
                     "all_kept": statistics.median(times["flex all kept"]) if ceiling else None})
    return rows


def table(rows: list[dict], facts: str) -> list[str]:
    lines = [facts, "",
             "| latent frames | tokens | kept-block density | dense s | radial s | speedup | 0.7/density | "
             "growth | predicted | growth/pred | kernel efficiency | ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    efficiency = lambda r: f"{r['dense'] / r['all_kept']:.3f}" if r["all_kept"] else "–"  # noqa: E731
    ceiling = lambda r: f"{r['dense'] / r['all_kept'] / r['density']:.2f}" if r["all_kept"] else "–"  # noqa: E731
    previous = None
    for r in rows:
        speedup = r["dense"] / r["radial"]
        growth = f"{r['radial'] / previous['radial']:.2f}" if previous else "–"
        predicted = f"{r['kept'] / previous['kept']:.2f}" if previous else "–"
        ratio = f"{(r['radial'] / previous['radial']) / (r['kept'] / previous['kept']):.2f}" if previous else "–"
        lines.append(f"| {r['frames']} | {r['tokens']} | {100 * r['density']:.1f} % | {r['dense']:.3f} | "
                     f"{r['radial']:.3f} | {speedup:.2f} | {0.7 / r['density']:.2f} | {growth} | {predicted} | "
                     f"{ratio} | {efficiency(r)} | {ceiling(r)} |")
        previous = r
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="wan2.1-1.3b", choices=list(VIDEO_PRESETS),
                        help="whose default layout (frames, size, text tokens, decay) to time")
    parser.add_argument("--multipliers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--granularity", choices=["block", "token"], default="block")
    parser.add_argument("--ceiling", action="store_true", help="also time FlexAttention keeping every block")
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    rows = run(args.multipliers, args.heads, args.head_dim, args.rounds, args.device, dtype, args.granularity,
               args.ceiling, args.model)
    preset = VIDEO_PRESETS[args.model]
    facts = (f"# radial vs dense attention, {args.model} layout ({preset.frames} frames {preset.width}x{preset.height}"
             f"{f', {preset.text_tokens} text tokens' if preset.text_tokens else ''}), "
             f"{machine_description(torch.device(args.device))}, {args.heads} head(s) × {args.head_dim}, {args.dtype}, "
             f"{args.granularity} granularity, decay {preset.decay:g}, {args.rounds} alternated rounds, "
             f"{time.strftime('%Y-%m-%d')}")
    print("\n".join(table(rows, facts)))


if __name__ == "__main__":
    main()
