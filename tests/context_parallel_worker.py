"""The scenarios of tests/test_context_parallel.py, run in one process or split over ranks.

As a script it is one rank of a torchrun launch (`torchrun --nproc-per-node 2 context_parallel_worker.py OUT`):
every rank runs every scenario through gen's Python API with `context_parallel=2`, and rank 0 saves the
latents (OUT.npz) and the layouts the radial processors saw (OUT.json).
"""

import json
import sys

import numpy as np
from PIL import Image

# Tiny, few steps; token granularity so that the radial mask really drops keys (block granularity keeps the one
# 128-block of a tiny layout whole); dense warm-up in the first block and the first step.
COMMON = dict(frames=17, width=64, height=64, num_inference_steps=2, seed=4, dense_layers=1, dense_steps=1,
              granularity="token", output_type="latent")
SCENARIOS = {
    "wan-radial": ("tiny-wan", dict(attention="radial")),
    "wan-dense": ("tiny-wan", dict(attention="dense")),
    "hunyuan-radial": ("tiny-hunyuan", dict(attention="radial")),
    "hunyuan-dense": ("tiny-hunyuan", dict(attention="dense")),
    "wan22-radial": ("tiny-wan22-i2v", dict(attention="radial", image=True)),  # two experts, switched by timestep
    "hunyuan15-radial": ("tiny-hunyuan15", dict(attention="radial", height=48)),
    # The tiny HunyuanVideo's prompts fill all 256 text tokens; its transformer called with padded text instead:
    "hunyuan-padded-text-dense": ("tiny-hunyuan", dict(padded_text="dense")),
    "hunyuan-padded-text-radial": ("tiny-hunyuan", dict(padded_text="radial")),
}


def padded_text_inputs() -> dict:
    """HunyuanVideo transformer inputs whose text is padded, differently per batch row (5 and 2 of 12 tokens)."""
    import torch

    g = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, 7:], mask[1, 10:] = 0, 0
    return dict(hidden_states=torch.randn(2, 4, 5, 8, 8, generator=g), timestep=torch.tensor([500, 500]),
                encoder_hidden_states=torch.randn(2, 12, 16, generator=g), encoder_attention_mask=mask,
                pooled_projections=torch.randn(2, 8, generator=g), guidance=torch.tensor([6000.0, 6000.0]))


def run_transformer(transformer, attention: str, stats):
    import torch

    from gen.attention.video import RadialConfig, install_radial

    with torch.no_grad():
        if attention == "dense":
            return transformer(**padded_text_inputs()).sample.numpy()
        with install_radial(transformer, RadialConfig(decay=0.95, dense_layers=0, dense_steps=0, granularity="token"),
                            stats=stats):
            return transformer(**padded_text_inputs()).sample.numpy()


def first_frame() -> Image.Image:
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)),
                                     np.full((64, 64), 90, np.uint8)], axis=-1))


def run_scenarios(ranks: int | None = None) -> tuple[dict, dict]:
    """{scenario: latents} and {scenario: layouts seen by radial calls, as (frames, tokens/frame, text)}, in one
    process or split over `ranks` (the degree; for the two-expert model a ready diffusers ContextParallelConfig)."""
    from diffusers import ContextParallelConfig

    from gen.attention.video import RadialStats
    from pipelines import TextToVideoPipeline

    latents, layouts, pipes = {}, {}, {}
    for name, (model, settings) in SCENARIOS.items():
        if model not in pipes:
            split = ContextParallelConfig(ulysses_degree=ranks) if ranks and model == "tiny-wan22-i2v" else ranks
            pipes = {model: TextToVideoPipeline.from_pretrained(model, device="cpu", context_parallel=split)}
            pipes[model].pipe.set_progress_bar_config(disable=True)
        stats = RadialStats()
        if "padded_text" in settings:
            latents[name] = run_transformer(pipes[model].pipe.transformer, settings["padded_text"], stats)
        else:
            settings = dict(COMMON, **settings)
            if settings.pop("image", False):
                settings["image"] = first_frame()
            latents[name] = pipes[model]("a boat on a lake", stats=stats, **settings).latents
        layouts[name] = sorted([layout.frames, layout.tokens_per_frame, layout.text_tokens] for layout in stats.layouts)
    return latents, layouts


if __name__ == "__main__":
    from gen.distributed import init_ranks

    ranks = init_ranks()
    latents, layouts = run_scenarios(ranks.world_size)
    if ranks.is_main_process:
        np.savez(sys.argv[1] + ".npz", **latents)
        with open(sys.argv[1] + ".json", "w") as file:
            json.dump(layouts, file)
