"""Style transfer cost: UNet evaluations, time relative to plain generation, feature memory.

On an architecture preset (real SD 1.5 shapes, random weights), for each memory mode:

  * UNet calls and rows (batch elements) per stylised image, with a new style and with
    the style's inversion cached (target: ≤ 2N calls for N steps with a cached style);
  * wall time relative to a plain generation with the same steps (the stock pipeline,
    empty prompt, no guidance: N single-row UNet calls plus text encoding and decoding);
  * hook overhead: time spent inside the UNet calls of a stylisation (gen's processors
    at work) over bare UNet calls with exactly the same batch sizes on the stock
    processors (target ≤ 10 %);
  * feature memory kept, against the reference code's fp32 q, k and v of content and
    style for every injected layer and step (target: ≥ 2× lower).

    python benchmarks/style_transfer.py                       # CPU, arch-sd15, 256², 4 steps
    python benchmarks/style_transfer.py --device cuda --size 512 --steps 50
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from timing import machine_description, synchronize  # noqa: E402

from gen.images import cover_resize, load_image  # noqa: E402
from gen.inversion import InversionCache  # noqa: E402
from gen.models import load_pipeline  # noqa: E402
from gen.style import default_injection_layers, feature_shape  # noqa: E402
from pipelines import StyleTransferPipeline  # noqa: E402

CONTENT, STYLE = ROOT / "assets" / "coffee.jpg", ROOT / "assets" / "brick.jpg"


def reference_feature_bytes(unet, size: int, steps: int) -> int:
    """The reference code's cache: q, k, v of content and style, every injected layer and step, fp32."""
    per_step = sum(math.prod(feature_shape(unet, layer, (size // 8, size // 8))) for layer in
                   default_injection_layers(unet))
    return per_step * 3 * 2 * steps * 4


def timed(fn, device):
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


class UNetClock:
    """Batch size of, and time spent inside, every UNet call (the processors' work included)."""

    def __init__(self, unet, device):
        self.device, self.batch_sizes, self.seconds, self._start = device, [], 0.0, 0.0
        self._handles = [unet.register_forward_pre_hook(self._before), unet.register_forward_hook(self._after)]

    def _before(self, module, args):
        synchronize(self.device)
        self.batch_sizes.append(args[0].shape[0])
        self._start = time.perf_counter()

    def _after(self, module, args, output):
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._start

    def remove(self):
        for handle in self._handles:
            handle.remove()


def run(model: str, size: int, steps: int, device: str | None, dtype: str | None) -> tuple[list[dict], dict]:
    loaded = load_pipeline(model, device=device, dtype=dtype)
    dev = loaded.device
    content = cover_resize(load_image(CONTENT), size, size)
    style = cover_resize(load_image(STYLE), size, size)
    unet = loaded.pipe.unet

    batch_sizes: list[int] = []
    hook = unet.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))
    pipe = StyleTransferPipeline(loaded, cache=False)
    with torch.inference_mode():
        conditioning = pipe._empty_conditioning(size, size)
    hook.remove()

    def bare_calls(sizes):
        """The same UNet calls (batch sizes) with stock processors and no method around them."""
        g = torch.Generator().manual_seed(0)
        latent = torch.randn(1, 4, size // 8, size // 8, generator=g).to(dev, unet.dtype)
        with torch.inference_mode():
            for rows in sizes:
                unet(latent.expand(rows, -1, -1, -1), 500,
                     encoder_hidden_states=conditioning["embeds"].expand(rows, -1, -1))

    # Warm-up (allocator, kernels), then the baseline: a plain generation with the same steps
    # (stock pipeline, empty prompt, no guidance: N single-row UNet calls, text encoding, decoding).
    bare_calls([1, 2, 3])
    loaded.pipe.set_progress_bar_config(disable=True)
    _, plain_s = timed(lambda: loaded.pipe("", num_inference_steps=steps, guidance_scale=1.0, width=size,
                                           height=size), dev)

    rows = []
    for mode in ("cache", "recompute"):
        with tempfile.TemporaryDirectory() as folder:
            pipe = StyleTransferPipeline(loaded, cache=InversionCache(folder))
            for style_state in ("new style", "cached style"):
                if style_state == "cached style":  # only the style is cached: a new content each time
                    pipe.cache.clear()
                    pipe(style, style, num_inference_steps=steps, size=size, memory=mode)
                clock = UNetClock(unet, dev)
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                out, seconds = timed(lambda: pipe(content, style, num_inference_steps=steps, size=size,
                                                  memory=mode, use_cache=style_state == "cached style"), dev)
                clock.remove()
                sizes = clock.batch_sizes
                if style_state == "cached style":
                    pipe.cache.clear()
                _, bare_s = timed(lambda: bare_calls(sizes), dev)
                rows.append({
                    "mode": mode, "style": style_state, "calls": len(sizes), "rows": sum(sizes),
                    "seconds": seconds, "vs_plain": seconds / plain_s, "overhead": clock.seconds / bare_s - 1,
                    "feature_mib": out.stats["feature_bytes"] / 2**20,
                    "peak_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
                })
    facts = {"machine": machine_description(dev), "model": model, "size": size, "steps": steps,
             "dtype": str(loaded.dtype).replace("torch.", ""), "plain_s": plain_s,
             "reference_mib": reference_feature_bytes(unet, size, steps) / 2**20}
    return rows, facts


def table(rows: list[dict], facts: dict) -> list[str]:
    lines = [
        f"# style transfer cost, {facts['machine']}, {facts['model']} {facts['size']}², {facts['steps']} steps, "
        f"{facts['dtype']}, {time.strftime('%Y-%m-%d')}",
        f"plain generation (stock pipeline, {facts['steps']} steps, no guidance): {facts['plain_s']:.2f}s; "
        f"reference fp32 q/k/v "
        f"cache for these settings: {facts['reference_mib']:.1f} MiB",
        "",
        "| mode | style | UNet calls | UNet rows | time s | × plain | hook overhead | features MiB | "
        "vs reference | GPU peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = facts["reference_mib"] / r["feature_mib"] if r["feature_mib"] else float("inf")
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "–"
        lines.append(f"| {r['mode']} | {r['style']} | {r['calls']} | {r['rows']} | {r['seconds']:.2f} | "
                     f"{r['vs_plain']:.2f} | {100 * r['overhead']:+.1f} % | {r['feature_mib']:.1f} | "
                     f"{ratio:.1f}× less | {peak} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="arch-sd15")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    args = parser.parse_args()
    rows, facts = run(args.model, args.size, args.steps, args.device, args.dtype)
    print("\n".join(table(rows, facts)))


if __name__ == "__main__":
    main()
