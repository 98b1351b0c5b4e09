"""One video on several processes: what Ulysses context parallelism costs, measured on CPU and computed for GPUs.

Measured (CPU, gloo): one transformer forward of a small Wan-shaped transformer with radial attention on a
long layout (16 latent frames × 32 × 32 = 16,384 tokens), 1 process × 2 threads against 2 processes × 1
thread. Both run in one torchrun launch of 2 ranks, round by round: rank 0 runs the one-process model with
2 threads while rank 1 waits at a barrier, then both ranks run the split model with 1 thread each. So the
two variants alternate on the same machine, and

    efficiency = T(1 process × 2 threads) / T(2 processes × 1 thread)     (target ≥ 0.85)

is what the all-to-alls (and the rest of the split) cost: 1.0 would be a free split. The all-to-all bytes each
rank sends per forward are counted at diffusers' all-to-all (every Ulysses exchange goes through it) and
computed: 4 exchanges (q, k, v there, the output back) of (tokens/N × heads × head_dim) per self-attention
layer, of which (N−1)/N leaves the rank.

Computed (`--computed`): Wan2.1-14B at 1280×720 × 81 frames on 1/2/4/8 GPUs: attention FLOPs with the radial
mask's density, projection/FFN FLOPs, all-to-all bytes per layer and their time at an NVLink-class bandwidth.
Nothing of it is measured: a lent GPU machine has one GPU, on which context parallelism cannot run.

    python benchmarks/context_parallel.py                 # CPU measurement: launches 2 ranks (torchrun)
    python benchmarks/context_parallel.py --computed      # the Wan2.1-14B table
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

# The measured model: Wan-shaped, 2 blocks, 4 heads × 32; latents (1, 4, 16, 64, 64) → 16 × 32 × 32 tokens.
MODEL = dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=4, out_channels=4,
             text_dim=32, freq_dim=32, ffn_dim=256, num_layers=2, cross_attn_norm=True,
             qk_norm="rms_norm_across_heads", rope_max_seq_len=1024)
LATENTS = (1, 4, 16, 64, 64)
TEXT_TOKENS = 64


def _inputs():
    g = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(LATENTS, generator=g), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, TEXT_TOKENS, MODEL["text_dim"], generator=g), return_dict=False)


class _ByteCounter:
    """Bytes through diffusers' all-to-all (all Ulysses exchanges, stock and gen's) and its output gather."""

    def __init__(self):
        import diffusers.hooks.context_parallel as context_parallel
        import diffusers.models.attention_dispatch as dispatch

        self.reset()
        exchange, unshard = dispatch._all_to_all_single, context_parallel.EquipartitionSharder.unshard.__func__

        def counted_exchange(x, group):
            self.all_to_all += x.numel() * x.element_size()
            start = time.perf_counter()
            out = exchange(x, group)  # waits for the exchange to finish
            self.seconds += time.perf_counter() - start
            return out

        def counted_unshard(cls, tensor, dim, mesh):
            out = unshard(cls, tensor, dim, mesh)
            self.gather += out.numel() * out.element_size()
            return out

        dispatch._all_to_all_single = counted_exchange
        context_parallel.EquipartitionSharder.unshard = classmethod(counted_unshard)

    def reset(self) -> None:
        self.all_to_all = self.gather = 0
        self.seconds = 0.0  # inside the all-to-alls, waiting for the other rank included


def worker(rounds: int) -> None:
    """One rank of the measurement (under torchrun)."""
    import torch.distributed as dist
    from diffusers import WanTransformer3DModel

    from gen.attention.video import RadialConfig, enable_context_parallel, install_radial
    from gen.distributed import init_ranks

    ranks = init_ranks()
    degree = ranks.world_size
    torch.manual_seed(0)
    single = WanTransformer3DModel(**MODEL).eval()
    split = copy.deepcopy(single)
    enable_context_parallel(split, degree)
    radial = RadialConfig(decay=0.2, dense_layers=0, dense_steps=0)  # every layer radial, block granularity
    install_radial(single, radial)
    install_radial(split, radial)
    counter = _ByteCounter()
    inputs = _inputs()

    def run_single(threads: int):
        dist.barrier()
        seconds = out = None
        if ranks.is_main_process:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            with torch.no_grad():
                out = single(**inputs)[0]
            seconds = time.perf_counter() - start
        dist.barrier()
        return seconds, out

    def run_split():
        torch.set_num_threads(1)
        counter.reset()
        dist.barrier()
        start = time.perf_counter()
        with torch.no_grad():
            out = split(**inputs)[0]
        seconds = torch.tensor([time.perf_counter() - start])
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the split forward takes as long as its slowest rank
        return float(seconds), out

    run_single(degree), run_single(1), run_split()  # warm-up: compiles FlexAttention per head count, builds masks
    load = os.getloadavg()[0]  # other work on the machine skews thread scaling: reported with the table
    times = {"single": [], "single 1 thread": [], "split": [], "all-to-all": []}
    difference = 0.0
    for _ in range(rounds):
        one, reference = run_single(degree)
        alone, _ = run_single(1)
        two, out = run_split()
        if ranks.is_main_process:
            times["single"].append(one)
            times["single 1 thread"].append(alone)
            times["split"].append(two)
            times["all-to-all"].append(counter.seconds)
            difference = max(difference, float((out - reference).abs().max()))
    if ranks.is_main_process:
        _report(times, counter, degree, difference, load)
    dist.destroy_process_group()


def _report(times: dict, counter: _ByteCounter, degree: int, difference: float, load: float) -> None:
    tokens = LATENTS[2] * (LATENTS[3] // 2) * (LATENTS[4] // 2)
    dim = MODEL["num_attention_heads"] * MODEL["attention_head_dim"]
    leaves = (degree - 1) / degree
    computed = MODEL["num_layers"] * 4 * (tokens // degree) * dim * 4 * leaves  # fp32
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))  # noqa: E731
    print(f"# context parallelism, Wan-shaped transformer ({MODEL['num_layers']} blocks, "
          f"{MODEL['num_attention_heads']} heads × {MODEL['attention_head_dim']}), {LATENTS[2]} latent frames × "
          f"{LATENTS[3] // 2} × {LATENTS[4] // 2} = {tokens:,} tokens, radial (decay 0.2, block), fp32, CPU "
          f"{platform.machine()} with {os.cpu_count()} cores (load average {load:.1f} before), "
          f"torch {torch.__version__}, gloo, {len(times['split'])} alternated rounds, {time.strftime('%Y-%m-%d')}")
    print()
    print("| variant | s / forward (median) | rounds |")
    print("|---|---|---|")
    for name, label in (("single", f"1 process × {degree} threads"), ("split", f"{degree} processes × 1 thread"),
                        ("single 1 thread", "1 process × 1 thread (thread scaling, for reference)"),
                        ("all-to-all", f"inside the all-to-alls, of the {degree} × 1 forward (rank 0)")):
        print(f"| {label} | {median[name]:.3f} | {', '.join(f'{t:.3f}' for t in times[name])} |")
    print()
    print(f"efficiency T(1×{degree}) / T({degree}×1): {ratio('single', 'split'):.3f} (median of the rounds' ratios; "
          "target ≥ 0.85)")
    print(f"threads: T(1×1) / T(1×{degree}) = {ratio('single 1 thread', 'single'):.2f}; all-to-alls: "
          f"{100 * ratio('all-to-all', 'split'):.1f} % of the split forward")
    print(f"all-to-all bytes sent per rank per forward: measured {counter.all_to_all * leaves / 1e6:.2f} MB, "
          f"computed {computed / 1e6:.2f} MB; output gather (proj_out, received per rank) "
          f"{counter.gather / 1e6:.2f} MB")
    print(f"split vs one-process output, max difference: {difference:.3g}")


# ----------------------------------------------------------------------------- computed: Wan2.1-14B


WAN14B = dict(heads=40, head_dim=128, layers=40, ffn=13824, text=512)
BANDWIDTH = 450e9  # bytes/s one way per GPU: NVLink 4 (H100 SXM), 900 GB/s both ways
ACHIEVED_FLOPS = 400e12  # bf16 FLOP/s one GPU sustains (H100 dense peak ~990)


def computed_table() -> list[str]:
    from gen.attention.radial import attention_flops_fraction
    from gen.video_models import VIDEO_PRESETS, video_layout

    preset = VIDEO_PRESETS["wan2.1-14b"]
    layout = video_layout(preset, 81, 1280, 720)
    tokens, dim = layout.video_tokens, WAN14B["heads"] * WAN14B["head_dim"]
    fraction = attention_flops_fraction(layout, "block")
    attention = 4 * tokens**2 * dim * fraction  # QKᵀ and PV, the radial mask's share
    linear = 2 * tokens * (4 * dim**2 + 2 * dim**2 + 2 * dim * WAN14B["ffn"]) + 2 * WAN14B["text"] * 2 * dim**2
    lines = [f"# computed, not measured: Wan2.1-14B, 81 frames at 1280×720 = {layout.frames} × "
             f"{layout.tokens_per_frame} = {tokens:,} tokens, {WAN14B['heads']} heads × {WAN14B['head_dim']}, "
             f"{WAN14B['layers']} blocks, bf16; radial decay {layout.decay:g} keeps {100 * fraction:.1f} % of the "
             f"attention FLOPs; {BANDWIDTH / 1e9:.0f} GB/s one way per GPU (NVLink-class), "
             f"{ACHIEVED_FLOPS / 1e12:.0f} TFLOP/s per GPU", "",
             "| GPUs | tokens / GPU | heads / GPU | attention TFLOP / GPU / layer | other TFLOP / GPU / layer | "
             "all-to-all MB sent / GPU / layer | all-to-all ms / layer | compute ms / layer | comm / compute | "
             "s / step (2 forwards, CFG) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for gpus in (1, 2, 4, 8):
        sent = 4 * (tokens // gpus) * dim * 2 * (gpus - 1) / gpus  # q, k, v, out; bf16
        comm = sent / BANDWIDTH
        compute = (attention + linear) / gpus / ACHIEVED_FLOPS
        step = 2 * WAN14B["layers"] * (compute + comm)
        lines.append(f"| {gpus} | {tokens // gpus:,} | {WAN14B['heads'] // gpus} | {attention / gpus / 1e12:.1f} | "
                     f"{linear / gpus / 1e12:.1f} | {sent / 1e6:.0f} | {1e3 * comm:.2f} | {1e3 * compute:.0f} | "
                     f"{comm / compute:.3f} | {step:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--computed", action="store_true", help="print the computed Wan2.1-14B table only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.computed:
        print("\n".join(computed_table()))
    elif args.worker:
        worker(args.rounds)
    else:
        environment = dict(os.environ, OMP_NUM_THREADS="1",
                           PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                   __file__, "--worker", "--rounds", str(args.rounds)]
        sys.exit(subprocess.run(command, env=environment).returncode)


if __name__ == "__main__":
    main()
