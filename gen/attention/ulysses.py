"""Ulysses context parallelism around gen's attention ops, on diffusers' own machinery.

diffusers shards a transformer's sequence across ranks with a per-model `_cp_plan` (split the
hidden states before the first block and the rotary embedding, gather after `proj_out`) and, in its
stock processors, wraps the attention op in an all-to-all (`dispatch_attention_fn(…, parallel_config=…)`).
gen's radial processors swap only the attention op, so they wrap it the same way, with diffusers'
all-to-all helper: each rank gives its sequence shard of every head and gets the whole sequence of
1/N of the heads, runs the op on the whole sequence (a radial mask is a function of the whole
layout, so it applies unchanged), and a second all-to-all returns to sequence shards.

HunyuanVideo's text tokens join the video tokens inside attention. diffusers 0.42 has no `_cp_plan`
for it; gen's (`HUNYUAN_CP_PLAN`) shards the video tokens only and keeps the text tokens whole on
every rank (as xDiT does for the reference implementation): around attention each rank takes its
1/N of the heads of the text tokens locally, so the sequence it attends over is the global one
(all video tokens, then the text tokens: the order the radial layout and the padding mask expect),
and the text tokens' output is gathered over heads afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

AttentionOp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _hunyuan_cp_plan() -> dict:
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    rotary = ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)  # (video tokens, dim) cos, sin
    return {
        "rope": {0: rotary, 1: rotary},
        "transformer_blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def cp_plan_for(transformer: torch.nn.Module) -> dict:
    """The sharding plan of a video transformer: diffusers' own where it has one (Wan), else gen's (HunyuanVideo
    and 1.5: video tokens sharded from the first block on, text tokens whole on every rank)."""
    plan = getattr(transformer, "_cp_plan", None)
    return plan if plan is not None else _hunyuan_cp_plan()


def ulysses_group(parallel_config) -> tuple[object, int, int]:
    """(process group, degree, this rank's place in it) of a diffusers ParallelConfig's Ulysses mesh."""
    import torch.distributed as dist

    config = parallel_config.context_parallel_config
    group = config._ulysses_mesh.get_group()
    return group, config.ulysses_degree, dist.get_rank(group)


def ulysses_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, op: AttentionOp,
                      parallel_config, text_tokens: int = 0) -> torch.Tensor:
    """`op` over the whole sequence for 1/N of the heads, on (batch, tokens, heads, head_dim) sequence shards.

    The last `text_tokens` tokens (HunyuanVideo) are the same on every rank: they are not exchanged, each
    rank takes its heads of them and appends them after the gathered video tokens; their output is gathered
    over heads. Returns (batch, local tokens, heads, head_dim), as the inputs.
    """
    import torch.distributed as dist
    from diffusers.models.attention_dispatch import _all_to_all_dim_exchange

    group, degree, rank = ulysses_group(parallel_config)
    local_video = query.shape[1] - text_tokens

    def whole_sequence(x: torch.Tensor) -> torch.Tensor:
        video = _all_to_all_dim_exchange(x[:, :local_video].contiguous(), 2, 1, group)
        if not text_tokens:
            return video
        text = x[:, local_video:].unflatten(2, (degree, -1))[:, :, rank]
        return torch.cat([video, text], dim=1)

    out = op(whole_sequence(query), whole_sequence(key), whole_sequence(value))
    video_tokens = out.shape[1] - text_tokens
    video = _all_to_all_dim_exchange(out[:, :video_tokens].contiguous(), 1, 2, group)
    if not text_tokens:
        return video
    heads = [torch.empty_like(out[:, video_tokens:]) for _ in range(degree)]
    dist.all_gather(heads, out[:, video_tokens:].contiguous(), group=group)
    return torch.cat([video, torch.cat(heads, dim=2)], dim=1)


def global_tokens(local_tokens: int, text_tokens: int, parallel_config) -> int:
    """Tokens of the whole joint sequence from one rank's shard (video tokens sharded, text tokens whole)."""
    return (local_tokens - text_tokens) * parallel_config.context_parallel_config.ulysses_degree + text_tokens


def head_divisors(heads: int) -> list[int]:
    """Context-parallel degrees a model with `heads` attention heads can use (Ulysses splits the heads)."""
    return [n for n in range(2, heads + 1) if heads % n == 0]
