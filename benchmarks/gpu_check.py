"""One short GPU run: checks the CUDA paths and times them (target: under 8 minutes on an H200).

Installs nothing; needs torch with CUDA plus this project's dependencies importable.

    python benchmarks/gpu_check.py [--out gpu_check.md] [--quick]
    python benchmarks/gpu_check.py --smoke      # every code path on CPU with tiny sizes (tests run this)

On a lent GPU machine without network or diffusers (torch, transformers, accelerate, safetensors
present), bring the missing wheels in the working tree and install them into a scratch folder:

    pip download diffusers==0.42.1 importlib_metadata --no-deps -d .whl     # here, before the run
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl    # there
    PYTHONPATH=/tmp/site:$PWD GEN_CACHE_DIR=/tmp/gencache HF_HUB_OFFLINE=1 \
        python3 benchmarks/gpu_check.py --out $OUT/gpu_check.md

Checks (each line says PASS or FAIL):
  * tiny-sd / tiny-sdxl / tiny-flux / tiny-sd3 / tiny-qwen-image pipelines: entropy scaling `on` at
    the training size is pixel-identical to `off`, and changes the image elsewhere;
  * the SD 1.5 UNet (arch-sd15): gen's processors at the training size give exactly the stock
    output; away from it, two self-attention layers match a reference computed with the
    formula scale more closely than one with the plain 1/√d scale;
  * xformers backend, if it can run: same UNet output as SDPA within fp16 tolerance;
  * style transfer: cache and recompute modes give the same image;
  * radial FlexAttention against SDPA with the boolean mask (block and token granularity);
  * diffusion transformers (FLUX.1-dev, SD3.5 Large, Qwen-Image at full depth in bf16; tiny ones in
    the smoke run): entropy scaling at the training size gives exactly the stock output, changes it
    elsewhere, and reaches diffusers' other dispatcher backends (flash, efficient, cuDNN SDPA).
Timings: entropy scaling on vs off per UNet step (arch-sd15, arch-sdxl) and per transformer call
(the DiTs above, at sizes below and above their training size), one whole arch-sd15
generation, style transfer costs at 512²/50 steps, each named style layer set's cost on SDXL's UNet
at 1024², radial vs dense attention alone on Wan's layout (×1, ×2, ×4 frames), and one
arch-wan-1.3b denoising step at 81 × 480 × 832.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from entropy_scaling import run as run_entropy_benchmark  # noqa: E402
from radial_attention import run as run_radial_benchmark  # noqa: E402
from radial_attention import table as radial_table  # noqa: E402
from style_transfer import layer_set_costs, layer_set_table  # noqa: E402
from style_transfer import run as run_style_benchmark  # noqa: E402
from style_transfer import table as style_table  # noqa: E402
from timing import alternate, median_ratio  # noqa: E402

from gen.attention import attention_layers, entropy_scaling, is_cross_attention, select_layers  # noqa: E402
from gen.attention.kernels import resolve_backend  # noqa: E402
from gen.attention.processors import dense_backend  # noqa: E402
from gen.errors import BackendUnavailable  # noqa: E402
from gen.loading import dtype_name, first_line  # noqa: E402


@dataclass(frozen=True)
class Profile:
    """Sizes and models of one run: the real ones on a GPU, tiny ones for a CPU smoke run."""

    device: str
    dtype: torch.dtype
    unet: str  # "arch-sd15" or "tiny-sd"
    train: int  # its training size in pixels
    entropy_cases: tuple[tuple[str, int, int], ...]
    whole_model: str
    whole_size: int
    whole_steps: int
    style: tuple[str, int, int]  # model, size, steps
    layer_sets: tuple[str, int, int]  # model, size, alternated rounds
    radial_multipliers: tuple[int, ...]
    radial_heads: int
    radial_rounds: int
    video_bf16: bool
    dit_cases: tuple[tuple[str, int, int], ...] = ()  # (model, width, height): entropy on vs off per step
    dit_depth: int | None = None  # joint blocks of the architecture transformers; None = full depth
    dit_dtype: torch.dtype = torch.bfloat16
    dit_backends: tuple[str, ...] = ()  # diffusers dispatcher backends that must get the scale too

    @property
    def dtype_name(self) -> str:
        from gen.loading import dtype_name

        return dtype_name(self.dtype)


def gpu_profile(quick: bool) -> Profile:
    cases = (("arch-sd15", 256, 256), ("arch-sd15", 1024, 1024))
    if not quick:
        cases += (("arch-sdxl", 768, 768), ("arch-sdxl", 2048, 1024))
    # Full-depth DiTs in bf16: FLUX.1-dev 12B (24 GB), SD3.5 Large 8B, Qwen-Image 20B (41 GB), one at a time.
    dits = (("arch-flux-dev", 512, 512), ("arch-qwen-image", 768, 768))
    if not quick:
        dits = (("arch-flux-dev", 512, 512), ("arch-flux-dev", 2048, 1024), ("arch-sd35-large", 512, 512),
                ("arch-sd35-large", 1536, 640), ("arch-qwen-image", 768, 768), ("arch-qwen-image", 1664, 928))
    return Profile("cuda", torch.float16, "arch-sd15", 512, cases, "arch-sd15", 768, 20,
                   ("arch-sd15", 512, 50), ("arch-sd15" if quick else "arch-sdxl", 1024, 5),
                   (1, 2) if quick else (1, 2, 4), 12, 5, True,
                   dits, None, torch.bfloat16, ("_native_flash", "_native_efficient", "_native_cudnn"))


SMOKE = Profile("cpu", torch.float32, "tiny-sd", 64, (("arch-sd15", 64, 64),), "tiny-sd", 128, 2,
                ("tiny-sd", 64, 4), ("tiny-sdxl", 64, 1), (1,), 1, 1, False,
                (("tiny-flux", 144, 80), ("tiny-sd3", 144, 80), ("tiny-qwen-image", 144, 80)), None, torch.float32,
                ("_native_math", "flex"))

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def check(name: str, ok: bool, detail: str = "") -> bool:
    say(f"- {'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    return ok


def free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_tiny_pipelines(device: torch.device) -> bool:
    from pipelines import TextToImagePipeline

    ok = True
    for name in ("tiny-sd", "tiny-sdxl", "tiny-flux", "tiny-sd3", "tiny-qwen-image"):
        pipe = TextToImagePipeline.from_pretrained(name, device=str(device))
        pipe.pipe.set_progress_bar_config(disable=True)
        train = pipe.model.train_size
        same = {m: np.asarray(pipe("a lighthouse", width=train, height=train, seed=3, entropy_scaling=m).images[0])
                for m in ("off", "on")}
        ok &= check(f"{name} {device.type} {pipe.model.dtype}: entropy on == off at training size",
                    np.array_equal(same["off"], same["on"]))
        other = {m: np.asarray(pipe("a lighthouse", width=2 * train, height=train, seed=3,
                                    entropy_scaling=m).images[0]) for m in ("off", "on")}
        ok &= check(f"{name}: entropy on != off at {2 * train}x{train}", not np.array_equal(other["off"], other["on"]))
        del pipe
        free_memory(device)
    return ok


def _unet(profile: Profile, device: torch.device):
    from gen.models import load_pipeline
    from gen.tiny_models import build_arch_unet

    if profile.unet.startswith("arch-"):
        return build_arch_unet(profile.unet, device=device, dtype=profile.dtype).eval()
    return load_pipeline(profile.unet, device=str(device), dtype=profile.dtype_name).pipe.unet


def _reference(attn, x, scale):
    q, k, v = (f(x).float() for f in (attn.to_q, attn.to_k, attn.to_v))
    b, h = x.shape[0], attn.heads
    q, k, v = (t.view(b, -1, h, t.shape[-1] // h).transpose(1, 2) for t in (q, k, v))
    out = torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v
    out = out.transpose(1, 2).reshape(b, -1, h * v.shape[-1]).to(x.dtype)
    return attn.to_out[0](out).float()


def unet_step_output(unet, latent_hw, device):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, *latent_hw, generator=g).to(device, unet.dtype)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g).to(device, unet.dtype)
    with torch.inference_mode():
        return unet(sample, 500, encoder_hidden_states=context).sample


def check_unet(profile: Profile, device: torch.device) -> bool:
    unet = _unet(profile, device)
    train_latent, big_latent = profile.train // 8, profile.train * 3 // 2 // 8  # 1.5× the training size
    ok = True
    stock = unet_step_output(unet, (train_latent, train_latent), device)
    with entropy_scaling(unet, train_size=profile.train):
        gen_out = unet_step_output(unet, (train_latent, train_latent), device)
    ok &= check(f"{profile.unet} {profile.dtype_name} {profile.train}²: gen processors == stock (bitwise)",
                torch.equal(stock, gen_out))

    layers = list(select_layers(unet, "self", include=["down_blocks.0.*"]).items())[:2]
    captured = []
    hooks = [m.register_forward_hook(lambda m, a, kw, o, n=n: captured.append((n, m, a[0], o)), with_kwargs=True)
             for n, m in layers]
    with entropy_scaling(unet, train_size=profile.train):
        unet_step_output(unet, (big_latent, big_latent), device)
    for hook in hooks:
        hook.remove()
    with torch.inference_mode():
        for name, attn, x, out in captured:
            assert not is_cross_attention(name, attn)
            tokens, head_dim = x.shape[1], attn.to_q.out_features // attn.heads
            formula = head_dim**-0.5 * math.sqrt(math.log(tokens) / math.log(tokens * 4 // 9))
            err_formula = (out.float() - _reference(attn, x, formula)).abs().max().item()
            err_plain = (out.float() - _reference(attn, x, head_dim**-0.5)).abs().max().item()
            ok &= check(f"{profile.unet} at 1.5× size, {name}: matches the formula scale",
                        err_formula < err_plain and err_formula < 2e-2,
                        f"max err {err_formula:.2e} (plain scale {err_plain:.2e})")
    try:
        resolve_backend("xformers", device)
    except BackendUnavailable as exc:
        say(f"- SKIP xformers backend, refused with: {exc}")
    else:
        with dense_backend(unet, "xformers"):
            xf = unet_step_output(unet, (train_latent, train_latent), device)
        err = (xf.float() - stock.float()).abs().max().item()
        ok &= check("xformers backend == sdpa within fp16 tolerance", err < 5e-2, f"max err {err:.2e}")
    del unet
    free_memory(device)
    return ok


def time_entropy(profile: Profile, rounds: int) -> None:
    say()
    say("| model | size (train) | variant | median s/step | ratio to off |")
    say("|---|---|---|---|---|")
    for model, width, height in profile.entropy_cases:
        for r in run_entropy_benchmark(model, width, height, rounds, profile.device, profile.dtype_name):
            say(f"| {r['model']} | {r['size']} ({r['train']}) | {r['variant']} | {r['median_s']:.4f} | "
                f"{r['ratio']:.3f} |")
        free_memory(torch.device(profile.device))


def check_and_time_dits(profile: Profile, device: torch.device, rounds: int) -> bool:
    """Per diffusion transformer (full depth in bf16 on a GPU): entropy scaling at the training size gives
    exactly the stock output, changes it elsewhere, reaches every dispatcher backend listed (FLUX.1), and
    costs nothing per step (entropy on vs off, alternated)."""
    from entropy_scaling import build_denoiser, time_denoiser
    from entropy_scaling import table as entropy_table

    ok, rows, sizes = True, [], {}
    for model, width, height in profile.dit_cases:
        sizes.setdefault(model, []).append((width, height))
    for model, cases in sizes.items():
        started = time.perf_counter()
        transformer, train = build_denoiser(model, device, profile.dit_dtype, profile.dit_depth)
        label = f"{model} {dtype_name(profile.dit_dtype)}"
        say(f"- built {label} in {time.perf_counter() - started:.0f}s")
        ok &= _check_dit(label, transformer, train, cases[0], profile, device)
        for width, height in cases:
            rows += time_denoiser(model, transformer, train, width, height, rounds, device, profile.dit_dtype)
        del transformer
        free_memory(device)
    say()
    for line in entropy_table(rows):
        say(line)
    return ok


def _check_dit(label, transformer, train, other_size, profile: Profile, device: torch.device) -> bool:
    from entropy_scaling import transformer_inputs

    from gen.attention.processors import dispatcher_backend

    def output(size, scaled, backend="sdpa"):
        inputs = transformer_inputs(transformer, *size, device, profile.dit_dtype)
        with torch.inference_mode(), dispatcher_backend(transformer, backend):
            with entropy_scaling(transformer, train_size=train) if scaled else contextlib.nullcontext():
                return transformer(**inputs).sample.float()

    ok = check(f"{label} {train}x{train}: entropy on == stock (bitwise)",
               torch.equal(output((train, train), False), output((train, train), True)))
    stock, scaled = output(other_size, False), output(other_size, True)
    change = (scaled - stock).abs().max().item()
    ok &= check(f"{label} {other_size[0]}x{other_size[1]}: entropy changes the output", change > 0 and
                bool(torch.isfinite(scaled).all()), f"max change {change:.2e}")
    if not hasattr(attention_layers(transformer).popitem()[1].processor, "_attention_backend"):
        return ok  # SD3: its processors call torch SDPA, no dispatcher backend to choose
    for backend in profile.dit_backends:
        try:
            other = output(other_size, True, backend)
        except Exception as exc:  # a backend this torch/GPU cannot run: say so, it is not gen's failure
            say(f"- SKIP {label} dispatcher backend {backend}: {first_line(exc)}")
            continue
        err = (other - scaled).abs().max().item()
        ok &= check(f"{label} dispatcher backend {backend} gets the scale", err < change,
                    f"max err vs native {err:.2e}, entropy's own change {change:.2e}")
    return ok


def time_whole_generation(profile: Profile, device: torch.device) -> None:
    from pipelines import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(profile.whole_model, device=str(device))
    pipe.pipe.set_progress_bar_config(disable=True)
    size, steps = profile.whole_size, profile.whole_steps
    runs = alternate(
        {m: (lambda m=m: pipe("a lighthouse", width=size, height=size, num_inference_steps=steps, seed=1,
                              entropy_scaling=m)) for m in ("off", "on")},
        repeats=3, device=device,
    )
    say()
    say(f"{profile.whole_model} whole generation {size}x{size}, {steps} steps, {profile.dtype_name}: "
        f"off {statistics.median(runs['off']):.2f}s, on {statistics.median(runs['on']):.2f}s, "
        f"ratio {median_ratio(runs['on'], runs['off']):.3f}")


def check_style(profile: Profile, device: torch.device) -> bool:
    """Style transfer: both memory modes agree; costs at the profile's size and steps."""
    from pipelines import StyleTransferPipeline

    pipe = StyleTransferPipeline.from_pretrained("tiny-sd", device=str(device), cache=False)
    content, style = ROOT / "assets" / "coffee.jpg", ROOT / "assets" / "brick.jpg"
    a = pipe(content, style, num_inference_steps=20, size=64, memory="cache")
    b = pipe(content, style, num_inference_steps=20, size=64, memory="recompute")
    diff = np.abs(np.asarray(a.images[0], int) - np.asarray(b.images[0], int)).max()
    ok = check(f"tiny-sd style transfer on {device.type}: cache and recompute modes agree", diff <= 2,
               f"max pixel difference {diff}")
    model, size, steps = profile.style
    rows, facts = run_style_benchmark(model, size, steps, profile.device, profile.dtype_name)
    say()
    for line in style_table(rows, facts):
        say(line)
    free_memory(device)
    model, size, repeats = profile.layer_sets
    rows, facts = layer_set_costs(model, size, profile.device, profile.dtype_name, repeats)
    say()
    for line in layer_set_table(rows, facts):
        say(line)
    free_memory(device)
    return ok


def check_radial(profile: Profile, device: torch.device) -> bool:
    """Radial attention: FlexAttention against SDPA with the boolean mask, the attention-alone table,
    and one video denoising step (arch-wan-1.3b at 81 × 480 × 832 on a GPU), dense vs radial."""
    from gen.attention.radial import VideoLayout, radial_sparse_attention, reference_radial_attention
    from gen.attention.video import RadialConfig, RadialStats, install_radial

    dtype = torch.bfloat16 if profile.video_bf16 else torch.float32
    ok = True
    for granularity in ("block", "token"):
        layout = VideoLayout(frames=8, tokens_per_frame=30 * 52 if profile.video_bf16 else 300, flavour="wan")
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 4, layout.total_tokens, 128, generator=g).to(device, dtype) for _ in range(3))
        err = (radial_sparse_attention(q, k, v, layout, granularity).float()
               - reference_radial_attention(q, k, v, layout, granularity).float()).abs().max().item()
        ok &= check(f"radial FlexAttention ({granularity}) == SDPA with the mask, {dtype}", err < 2e-2,
                    f"max err {err:.2e}")
    say()
    rows = run_radial_benchmark(list(profile.radial_multipliers), profile.radial_heads, 128, profile.radial_rounds,
                                profile.device, dtype, "block", ceiling=True)
    for line in radial_table(rows, f"attention alone, {profile.radial_heads} heads × 128, {dtype}, block"):
        say(line)
    free_memory(device)

    transformer, latents, text, label = _video_step_inputs(profile, device, dtype)
    timestep = torch.tensor([500], device=device)

    def step():
        with torch.inference_mode():
            transformer(latents, timestep, text)

    stats = RadialStats()

    def radial():  # installed around each timed step, as a pipeline call installs it once per video
        return install_radial(transformer, RadialConfig(dense_layers=1, dense_steps=0), stats=stats)

    times = alternate({"dense": step, "radial": step}, 3, device, warmup=1, contexts={"radial": radial})
    dense, radial_s = statistics.median(times["dense"]), statistics.median(times["radial"])
    ok &= check(f"{label}: radial processors ran", stats.radial_calls > 0, f"{stats.radial_calls} radial calls")
    say()
    say(f"{label}, one denoising step (one transformer call): dense {dense:.3f}s, radial (block 0 dense) "
        f"{radial_s:.3f}s, speedup {dense / radial_s:.2f}x")
    transformer = latents = text = None  # free the model before the next check
    free_memory(device)
    return ok


def _video_step_inputs(profile: Profile, device: torch.device, dtype: torch.dtype):
    from gen.tiny_models import build_arch_wan_transformer
    from gen.video_models import load_video_pipeline

    g = torch.Generator().manual_seed(0)
    if profile.video_bf16:
        transformer = build_arch_wan_transformer(device, dtype).eval()
        latents = torch.randn(1, 16, 21, 60, 104, generator=g).to(device, dtype)
        text = torch.randn(1, 512, 4096, generator=g).to(device, dtype)
        return transformer, latents, text, f"arch-wan-1.3b 81 frames 480x832 (32760 tokens), {dtype}"
    transformer = load_video_pipeline("tiny-wan", device=str(device))[0].transformer
    latents = torch.randn(1, 4, 5, 8, 8, generator=g).to(device, dtype)
    text = torch.randn(1, 7, 32, generator=g).to(device, dtype)
    return transformer, latents, text, "tiny-wan 17 frames 64x64"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="skip the SDXL timings and the 4× video row")
    parser.add_argument("--smoke", action="store_true", help="run every path on the CPU with tiny sizes")
    args = parser.parse_args()
    if args.smoke:
        profile, rounds = SMOKE, 1
    elif torch.cuda.is_available():
        profile, rounds = gpu_profile(args.quick), args.rounds
    else:
        print("gpu_check: no CUDA device; nothing to check (use --smoke for a CPU run of every path)",
              file=sys.stderr)
        return 2
    device = torch.device(profile.device)
    started = time.perf_counter()
    import diffusers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU smoke run"
    say(f"# GPU check, {time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}")
    say()
    ok = check_tiny_pipelines(device)
    ok &= check_unet(profile, device)
    time_entropy(profile, rounds)
    ok &= check_and_time_dits(profile, device, max(1, rounds // 4))
    time_whole_generation(profile, device)
    ok &= check_style(profile, device)
    ok &= check_radial(profile, device)
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
    say()
    say(f"total {time.perf_counter() - started:.0f}s{peak}, {'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    if args.out:
        Path(args.out).write_text("\n".join(LINES) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
