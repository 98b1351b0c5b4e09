"""Radial attention processors for video transformers, with dense warm-up.

`RadialState` is shared by the processors of one pipeline: a forward pre-hook on each
transformer records the token layout of the call in progress, and the pipeline's step
callback advances `step`. A processor runs dense (the stock processor, untouched) in the
first `dense_layers` blocks, the first `dense_steps` steps and the last
`dense_final_steps` steps; everywhere else its self-attention is radial.

Wan: self-attention (`attn1`) only; cross-attention and the image-to-video branch keep
the stock processor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from gen.attention.radial import VideoLayout, radial_attention


@dataclass
class RadialState:
    flavour: str = "wan"
    decay: float = 0.2
    granularity: str = "block"
    dense_layers: int = 1
    dense_steps: int = 12
    dense_final_steps: int = 0
    total_steps: int = 0
    step: int = 0
    layout: VideoLayout | None = None
    radial_calls: int = 0  # bookkeeping for tests and benchmarks
    dense_calls: int = 0
    trace: list | None = None  # if a list: (step, block, "dense" | "radial") per self-attention call

    def is_dense(self, block_index: int) -> bool:
        final = self.total_steps and self.step >= self.total_steps - self.dense_final_steps
        return block_index < self.dense_layers or self.step < self.dense_steps or bool(final)

    def record_layout(self, transformer: torch.nn.Module, hidden_states: torch.Tensor, text_tokens: int = 0):
        p_t, p_h, p_w = transformer.config.patch_size
        _, _, frames, height, width = hidden_states.shape
        self.layout = VideoLayout(frames // p_t, (height // p_h) * (width // p_w), text_tokens, self.flavour,
                                  self.decay)


def block_index(layer_name: str) -> int:
    """`blocks.7.attn1` → 7 (the transformer block a layer belongs to)."""
    match = re.search(r"blocks\.(\d+)\.", layer_name)
    return int(match.group(1)) if match else 0


def apply_rotary(hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on (batch, tokens, heads, head_dim) with interleaved pairs."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


class WanRadialProcessor:
    """Wan self-attention with a radial block-sparse kernel; dense calls go to the stock processor."""

    def __init__(self, layer_name: str, state: RadialState, stock):
        self.layer_name = layer_name
        self.block = block_index(layer_name)
        self.state = state
        self.stock = stock

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        state = self.state
        if encoder_hidden_states is not None or attention_mask is not None or state.is_dense(self.block):
            state.dense_calls += 1
            if state.trace is not None:
                state.trace.append((state.step, self.block, "dense"))
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        state.radial_calls += 1
        if state.trace is not None:
            state.trace.append((state.step, self.block, "radial"))
        if attn.fused_projections:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
        if rotary_emb is not None:
            query, key = apply_rotary(query, *rotary_emb), apply_rotary(key, *rotary_emb)
        out = radial_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                               state.layout, state.granularity)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def install_radial(transformer: torch.nn.Module, state: RadialState):
    """Put radial processors on a Wan transformer's self-attention; returns the installation
    (a context manager that restores the stock processors) and the layout hook handle."""
    from gen.attention.installer import install_processors

    handle = transformer.register_forward_pre_hook(
        lambda module, args, kwargs: state.record_layout(module, args[0] if args else kwargs["hidden_states"]),
        with_kwargs=True,
    )
    installation = install_processors(
        transformer, factory=lambda name, module: WanRadialProcessor(name, state, module.processor), kind="self",
    )
    return installation, handle
