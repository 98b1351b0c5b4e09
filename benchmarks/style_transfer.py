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

With --layer-sets, the cost of each named layer set (gen.style.LAYER_SETS) instead, on
the architecture preset's UNet alone (the sets differ only there): one denoising step
with injection (feature-cache mode: 1 row; low-memory mode: 3 rows) over a plain step —
exact FLOPs at the training size (counted on the meta device, no weights needed) and,
with --repeats > 0, time at --size, alternated in one run — and the features kept, in
16-bit as on a GPU, per image and step at --size and for content + style at the
training size with 49 injected steps of 50.

    python benchmarks/style_transfer.py                       # CPU, arch-sd15, 256², 4 steps
    python benchmarks/style_transfer.py --device cuda --size 512 --steps 50
    python benchmarks/style_transfer.py --layer-sets --model arch-sdxl --repeats 0      # seconds
    python benchmarks/style_transfer.py --layer-sets --model arch-sdxl --size 1024 --device cuda --dtype fp16
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from timing import alternate, machine_description, median_ratio, synchronize  # noqa: E402

from gen.attention import attention_layers, install_processors  # noqa: E402
from gen.errors import GenError  # noqa: E402
from gen.images import cover_resize, load_image  # noqa: E402
from gen.inversion import InversionCache  # noqa: E402
from gen.loading import choose_device, choose_dtype  # noqa: E402
from gen.models import PRESETS, load_pipeline  # noqa: E402
from gen.style import (LAYER_SETS, InjectionState, StyleInjectionProcessor, default_injection_layers,  # noqa: E402
                       feature_elements, feature_shape, layer_set)
from gen.tiny_models import build_arch_unet  # noqa: E402
from pipelines import StyleTransferPipeline  # noqa: E402

CONTENT, STYLE = ROOT / "assets" / "coffee.jpg", ROOT / "assets" / "brick.jpg"


def reference_feature_bytes(unet, size: int, steps: int) -> int:
    """The reference code's cache: q, k, v of content and style, every injected layer and step, fp32."""
    return feature_elements(unet, default_injection_layers(unet), (size // 8, size // 8)) * 3 * 2 * steps * 4


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


class UNetStep:
    """One denoising step of a UNet alone, plain or with one layer set injected (empty-prompt stand-ins)."""

    def __init__(self, unet, size: int, device, dtype):
        self.unet, self.device, self.dtype = unet, device, dtype
        self.hw = (size // 8, size // 8)
        config = unet.config
        self.latent = torch.zeros(1, 4, *self.hw, device=device, dtype=dtype)
        self.text = torch.zeros(3, 77, config.cross_attention_dim, device=device, dtype=dtype)
        self.added = None
        if config.addition_embed_type == "text_time":  # SDXL's micro-conditioning: pooled text + 6 time ids
            pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
            self.added = {"text_embeds": torch.zeros(3, pooled, device=device, dtype=dtype),
                          "time_ids": torch.full((3, 6), float(size), device=device, dtype=dtype)}
        self.modules = attention_layers(unet)

    def run(self, rows: int) -> None:
        added = {k: v[:rows] for k, v in self.added.items()} if self.added else None
        with torch.inference_mode():
            self.unet(self.latent.expand(rows, -1, -1, -1), 500, encoder_hidden_states=self.text[:rows],
                      added_cond_kwargs=added)

    def injected(self, layers: list[str], mode: str):
        """(rows, context factory): the processors on `layers`, their feature cache filled as an inversion would."""
        roles = ["gen:0"] if mode == "cache" else ["content:0", "style:0", "gen:0"]
        state = InjectionState(styles=[("style:0", 1.0)], roles=roles, inject=True, first_injected_step=0)
        for layer in layers:
            for role in ("content:0", "style:0"):
                shape = feature_shape(self.unet, layer, self.hw)
                state.store.put(role, layer, 0, torch.zeros(shape, device=self.device, dtype=self.dtype))
        return len(roles), lambda: install_processors(
            self.unet, factory=lambda n, _: StyleInjectionProcessor(n, state),
            layers={n: self.modules[n] for n in layers})


def named_sets(unet) -> dict[str, list[str]]:
    """The layer sets that resolve on this UNet, each once (all-blocks is paper on SD 1.x)."""
    sets: dict[str, list[str]] = {}
    for name in LAYER_SETS:
        try:
            layers = layer_set(unet, name)
        except GenError:
            continue  # instantstyle on SD 1.x
        if layers not in sets.values():
            sets[name] = layers
    return sets


def layer_set_flops(model: str) -> dict[str, tuple[float, float]]:
    """Exact FLOPs of an injected step over a plain one, per set, at the training size (meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    step = UNetStep(build_arch_unet(model, device="meta"), PRESETS[model].train_size, "meta", torch.float32)

    def flops(rows: int, context=contextlib.nullcontext) -> int:
        with context(), FlopCounterMode(display=False) as counter:
            step.run(rows)
        return counter.get_total_flops()

    plain = flops(1)
    return {name: tuple(flops(*step.injected(layers, mode)) / plain for mode in ("cache", "recompute"))
            for name, layers in named_sets(step.unet).items()}


def layer_set_costs(model: str, size: int, device: str | None, dtype: str | None, repeats: int,
                    ) -> tuple[list[dict], dict]:
    """Per named layer set: features kept, exact FLOPs, and (repeats > 0) measured time, over a plain step."""
    dev = choose_device(device) if repeats > 0 else torch.device("meta")  # untimed: shapes are enough
    torch_dtype = choose_dtype(dev, dtype) if repeats > 0 else torch.float32
    arch = PRESETS[model].source == "arch"
    if arch:
        unet = build_arch_unet(model, dev, torch_dtype)
    else:  # a tiny preset: the smoke run
        unet = load_pipeline(model, device=str(dev), dtype=dtype).pipe.unet
    step = UNetStep(unet, size, dev, torch_dtype)
    sets = named_sets(unet)
    times = {}
    if repeats > 0:
        variants, contexts = {"plain": lambda: step.run(1), "plain, 3 rows": lambda: step.run(3)}, {}
        for name, layers in sets.items():
            for mode in ("cache", "recompute"):
                rows, contexts[f"{name}/{mode}"] = step.injected(layers, mode)
                variants[f"{name}/{mode}"] = lambda rows=rows: step.run(rows)
        times = alternate(variants, repeats, dev, contexts=contexts)
    flops = layer_set_flops(model) if arch else {}
    train = PRESETS[model].train_size
    table_rows = []
    for name, layers in sets.items():
        table_rows.append({
            "set": name, "layers": len(layers), "flops": flops.get(name),
            "time": tuple(median_ratio(times[f"{name}/{mode}"], times["plain"]) for mode in ("cache", "recompute"))
            if times else None,
            "mib_step": feature_elements(unet, layers, step.hw) * 2 / 2**20,  # 16-bit, as on a GPU
            "gib_train": feature_elements(unet, layers, (train // 8, train // 8)) * 2 * 49 * 2 / 2**30,
        })
    facts = {"machine": machine_description(dev), "model": model, "size": size, "train": train,
             "dtype": str(torch_dtype).replace("torch.", ""), "repeats": repeats,
             "plain_s": min(times["plain"]) if times else None,
             "plain3": median_ratio(times["plain, 3 rows"], times["plain"]) if times else None}
    return table_rows, facts


def layer_set_table(rows: list[dict], facts: dict) -> list[str]:
    timed = facts["plain_s"] is not None
    lines = [f"# layer sets, {facts['model']} UNet, {time.strftime('%Y-%m-%d')}"]
    if timed:
        lines.append(f"measured: {facts['machine']}, {facts['size']}², {facts['dtype']}, median of "
                     f"{facts['repeats']} alternated rounds; plain step {facts['plain_s']:.2f}s, with 3 rows "
                     f"{facts['plain3']:.2f}× one row")
    lines += [
        "",
        f"| layer set | layers | FLOPs × plain at {facts['train']}², cache / low memory | "
        + ("time × plain, cache / low memory | " if timed else "")
        + f"features per image and step at {facts['size']}², MiB | content + style at {facts['train']}², "
        "49 injected steps, GiB |",
        "|---|---|---|" + ("---|" if timed else "") + "---|---|",
    ]
    for r in rows:
        flops = f"{r['flops'][0]:.4f} / {r['flops'][1]:.3f}" if r["flops"] else "–"
        measured = f"{r['time'][0]:.3f} / {r['time'][1]:.2f} | " if timed else ""
        lines.append(f"| {r['set']} | {r['layers']} | {flops} | {measured}{r['mib_step']:.2f} | {r['gib_train']:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="arch-sd15")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--layer-sets", action="store_true", help="the cost of each named layer set instead")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternated timing rounds (--layer-sets; 0: FLOPs and memory only, no weights)")
    args = parser.parse_args()
    if args.layer_sets:
        rows, facts = layer_set_costs(args.model, args.size, args.device, args.dtype, args.repeats)
        print("\n".join(layer_set_table(rows, facts)))
        return
    rows, facts = run(args.model, args.size, args.steps, args.device, args.dtype)
    print("\n".join(table(rows, facts)))


if __name__ == "__main__":
    main()
