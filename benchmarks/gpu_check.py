"""One short GPU run: checks the CUDA paths and times them (target: under 8 minutes on an H200).

Installs nothing; needs torch with CUDA plus this project's dependencies importable.

    python benchmarks/gpu_check.py [--out gpu_check.md] [--quick]

Checks (each line says PASS or FAIL):
  * tiny-sd / tiny-sdxl pipelines on CUDA: entropy scaling `on` at the training size is
    pixel-identical to `off`, and changes the image elsewhere;
  * arch-sd15 UNet in fp16: gen's processors at the training size give exactly the stock
    output; away from it, two self-attention layers match an fp32 reference computed with
    the formula scale more closely than one with the plain 1/√d scale;
  * xformers backend, if installed: same UNet output as SDPA within fp16 tolerance;
  * style transfer on CUDA: cache and recompute modes give the same image.
Timings: per-step UNet time with entropy scaling on vs off (alternated rounds, median
ratio) for arch-sd15 and arch-sdxl at sizes away from their training sizes, one
whole arch-sd15 generation, and style transfer costs (benchmarks/style_transfer.py) on
arch-sd15 at 512², 50 steps, fp16.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from entropy_scaling import run as run_entropy_benchmark  # noqa: E402
from entropy_scaling import unet_step  # noqa: E402
from style_transfer import run as run_style_benchmark  # noqa: E402
from style_transfer import table as style_table  # noqa: E402
from radial_attention import run as run_radial_benchmark  # noqa: E402
from radial_attention import table as radial_table  # noqa: E402
from timing import alternate, median_ratio  # noqa: E402

from gen.attention import entropy_scaling, is_cross_attention, select_layers  # noqa: E402
from gen.attention.kernels import resolve_backend  # noqa: E402
from gen.errors import BackendUnavailable  # noqa: E402
from gen.attention.processors import dense_backend  # noqa: E402
from gen.models import build_arch_unet  # noqa: E402

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def check(name: str, ok: bool, detail: str = "") -> bool:
    say(f"- {'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    return ok


def check_tiny_pipelines(device: torch.device) -> bool:
    from pipelines import TextToImagePipeline

    ok = True
    for name in ("tiny-sd", "tiny-sdxl"):
        pipe = TextToImagePipeline.from_pretrained(name, device=str(device))
        same = {m: np.asarray(pipe("a lighthouse", width=64, height=64, seed=3, entropy_scaling=m).images[0])
                for m in ("off", "on")}
        ok &= check(f"{name} {device.type} {pipe.model.dtype}: entropy on == off at training size",
                    np.array_equal(same["off"], same["on"]))
        other = {m: np.asarray(pipe("a lighthouse", width=128, height=64, seed=3, entropy_scaling=m).images[0])
                 for m in ("off", "on")}
        ok &= check(f"{name}: entropy on != off at 128x64", not np.array_equal(other["off"], other["on"]))
    return ok


def _reference(attn, x, scale):
    q, k, v = (f(x).float() for f in (attn.to_q, attn.to_k, attn.to_v))
    b, h = x.shape[0], attn.heads
    q, k, v = (t.view(b, -1, h, t.shape[-1] // h).transpose(1, 2) for t in (q, k, v))
    out = torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v
    out = out.transpose(1, 2).reshape(b, -1, h * v.shape[-1]).to(x.dtype)
    return attn.to_out[0](out).float()


def check_arch_unet(device: torch.device) -> bool:
    unet = build_arch_unet("arch-sd15", device=device, dtype=torch.float16).eval()
    ok = True
    stock = unet_step_output(unet, (64, 64), device)
    with entropy_scaling(unet, train_size=512):
        gen_out = unet_step_output(unet, (64, 64), device)
    ok &= check("arch-sd15 fp16 512x512: gen processors == stock (bitwise)", torch.equal(stock, gen_out))

    layers = list(select_layers(unet, "self", include=["down_blocks.0.*"]).items())[:2]
    captured = []
    hooks = [m.register_forward_hook(lambda m, a, kw, o, n=n: captured.append((n, m, a[0], o)), with_kwargs=True)
             for n, m in layers]
    with entropy_scaling(unet, train_size=512):
        unet_step_output(unet, (96, 96), device)  # 768x768
    for hook in hooks:
        hook.remove()
    with torch.inference_mode():
        for name, attn, x, out in captured:
            assert not is_cross_attention(name, attn)
            tokens, head_dim = x.shape[1], attn.to_q.out_features // attn.heads
            formula = head_dim**-0.5 * math.sqrt(math.log(tokens) / math.log(tokens * 4 // 9))
            err_formula = (out.float() - _reference(attn, x, formula)).abs().max().item()
            err_plain = (out.float() - _reference(attn, x, head_dim**-0.5)).abs().max().item()
            ok &= check(f"arch-sd15 768x768 {name}: matches formula scale",
                        err_formula < err_plain and err_formula < 2e-2,
                        f"max err {err_formula:.2e} (plain scale {err_plain:.2e})")

    try:
        resolve_backend("xformers", device)
    except BackendUnavailable as exc:
        say(f"- SKIP xformers backend, refused with: {exc}")
    else:
        with dense_backend(unet, "xformers"):
            xf = unet_step_output(unet, (64, 64), device)
        err = (xf.float() - stock.float()).abs().max().item()
        ok &= check("xformers backend == sdpa within fp16 tolerance", err < 5e-2, f"max err {err:.2e}")
    del unet
    torch.cuda.empty_cache()
    return ok


def unet_step_output(unet, latent_hw, device):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, *latent_hw, generator=g).to(device, torch.float16)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g).to(device, torch.float16)
    with torch.inference_mode():
        return unet(sample, 500, encoder_hidden_states=context).sample


def time_entropy(rounds: int, quick: bool) -> None:
    say()
    say("| model | size (train) | variant | median s/step | ratio to off |")
    say("|---|---|---|---|---|")
    cases = [("arch-sd15", 256, 256), ("arch-sd15", 1024, 1024)]
    if not quick:
        cases += [("arch-sdxl", 768, 768), ("arch-sdxl", 2048, 1024)]
    for model, width, height in cases:
        for r in run_entropy_benchmark(model, width, height, rounds, "cuda", "fp16"):
            say(f"| {r['model']} | {r['size']} ({r['train']}) | {r['variant']} | {r['median_s']:.4f} | "
                f"{r['ratio']:.3f} |")
        torch.cuda.empty_cache()


def time_whole_generation(device: torch.device, steps: int) -> None:
    from pipelines import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained("arch-sd15", device=str(device))
    pipe.pipe.set_progress_bar_config(disable=True)
    runs = alternate(
        {m: (lambda m=m: pipe("a lighthouse", width=768, height=768, num_inference_steps=steps, seed=1,
                              entropy_scaling=m)) for m in ("off", "on")},
        repeats=3, device=device,
    )
    say()
    say(f"arch-sd15 whole generation 768x768, {steps} steps, fp16: off {statistics.median(runs['off']):.2f}s, "
        f"on {statistics.median(runs['on']):.2f}s, ratio {median_ratio(runs['on'], runs['off']):.3f}")


def check_style(device: torch.device) -> bool:
    """Style transfer on CUDA: both memory modes agree; costs at SD 1.5's real size and 50 steps."""
    from pipelines import StyleTransferPipeline

    pipe = StyleTransferPipeline.from_pretrained("tiny-sd", device=str(device), cache=False)
    content, style = ROOT / "assets" / "coffee.jpg", ROOT / "assets" / "brick.jpg"
    a = pipe(content, style, num_inference_steps=20, size=64, memory="cache")
    b = pipe(content, style, num_inference_steps=20, size=64, memory="recompute")
    diff = np.abs(np.asarray(a.images[0], int) - np.asarray(b.images[0], int)).max()
    ok = check("tiny-sd style transfer on CUDA fp16: cache and recompute modes agree", diff <= 2,
               f"max pixel difference {diff}")
    rows, facts = run_style_benchmark("arch-sd15", 512, 50, "cuda", "fp16")
    say()
    for line in style_table(rows, facts):
        say(line)
    torch.cuda.empty_cache()
    return ok


def check_radial(device: torch.device, quick: bool) -> bool:
    """Radial attention on CUDA: FlexAttention against SDPA with the boolean mask, the attention-alone
    table, and one denoising step of arch-wan-1.3b at 81 frames 480×832, dense vs radial."""
    from gen.attention.radial import VideoLayout, radial_attention, reference_radial_attention
    from gen.attention.video import RadialState, install_radial
    from gen.video_models import build_arch_wan_transformer

    ok = True
    for granularity in ("block", "token"):
        layout = VideoLayout(frames=8, tokens_per_frame=30 * 52, flavour="wan", decay=0.2)
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 4, layout.total_tokens, 128, generator=g).to(device, torch.bfloat16)
                   for _ in range(3))
        err = (radial_attention(q, k, v, layout, granularity).float()
               - reference_radial_attention(q, k, v, layout, granularity).float()).abs().max().item()
        ok &= check(f"radial FlexAttention ({granularity}) == SDPA with the mask, bf16", err < 2e-2,
                    f"max err {err:.2e}")
    say()
    for line in radial_table(run_radial_benchmark([1, 2] if quick else [1, 2, 4], 12, 128, 5, "cuda",
                                                  torch.bfloat16, "block"),
                             "attention alone, 12 heads × 128, bf16, block granularity"):
        say(line)
    torch.cuda.empty_cache()

    transformer = build_arch_wan_transformer(device, torch.bfloat16).eval()
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 21, 60, 104, generator=g).to(device, torch.bfloat16)
    text = torch.randn(1, 512, 4096, generator=g).to(device, torch.bfloat16)
    timestep = torch.tensor([500], device=device)

    def step():
        with torch.inference_mode():
            transformer(latents, timestep, text)

    state = RadialState(dense_layers=1, dense_steps=0)

    @contextlib.contextmanager
    def radial():
        installation, hook = install_radial(transformer, state)
        with installation:
            yield
        hook.remove()

    times = alternate({"dense": step, "radial": step}, 3, device, warmup=1, contexts={"radial": radial})
    dense, radial_s = statistics.median(times["dense"]), statistics.median(times["radial"])
    say()
    say(f"arch-wan-1.3b, one denoising step (one transformer call), 81 frames 480x832 = 32760 tokens, bf16: "
        f"dense {dense:.3f}s, radial (block 0 dense) {radial_s:.3f}s, speedup {dense / radial_s:.2f}x")
    del transformer
    torch.cuda.empty_cache()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="skip the SDXL timings")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to check", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    started = time.perf_counter()
    import diffusers

    say(f"# GPU check, {time.strftime('%Y-%m-%d')}, {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}")
    say()
    ok = check_tiny_pipelines(device)
    ok &= check_arch_unet(device)
    time_entropy(args.rounds, args.quick)
    time_whole_generation(device, steps=20)
    ok &= check_style(device)
    ok &= check_radial(device, args.quick)
    say()
    say(f"total {time.perf_counter() - started:.0f}s, peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, "
        f"{'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    if args.out:
        Path(args.out).write_text("\n".join(LINES) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
