"""Radial attention processors for video transformers, with dense warm-up.

`RadialState` is shared by the processors of one pipeline: a forward pre-hook on each
transformer records the token layout of the call in progress, and the pipeline's step
callback advances `step`. A processor runs dense (the stock processor, untouched) in the
first `dense_layers` blocks, the first `dense_steps` steps and the last
`dense_final_steps` steps; everywhere else its self-attention is radial.

Wan: self-attention (`attn1`) only; cross-attention and the image-to-video branch keep
the stock processor. HunyuanVideo: the joint attention of its double- and single-stream
blocks, whose text tokens follow the video tokens: text rows and columns are dense, and the
prompt's padding (the stock attention mask) hides the padded text keys, per batch row.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import torch

from gen.attention.radial import VideoLayout, radial_attention, reference_radial_attention


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
    reference_kernel: bool = False  # SDPA with the boolean mask instead of FlexAttention (tests only)

    def is_dense(self, block_index: int) -> bool:
        final = self.total_steps and self.step >= self.total_steps - self.dense_final_steps
        return block_index < self.dense_layers or self.step < self.dense_steps or bool(final)

    def attend(self, query, key, value, layout: VideoLayout) -> torch.Tensor:
        kernel = reference_radial_attention if self.reference_kernel else radial_attention
        return kernel(query, key, value, layout, self.granularity)

    def note(self, block: int, kind: str) -> None:
        if kind == "dense":
            self.dense_calls += 1
        else:
            self.radial_calls += 1
        if self.trace is not None:
            self.trace.append((self.step, block, kind))

    def record_layout(self, transformer: torch.nn.Module, hidden_states: torch.Tensor, text_tokens: int = 0):
        config = transformer.config
        if isinstance(config.patch_size, (tuple, list)):
            p_t, p_h, p_w = config.patch_size
        else:
            p_t, p_h, p_w = getattr(config, "patch_size_t", 1), config.patch_size, config.patch_size
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
            state.note(self.block, "dense")
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        state.note(self.block, "radial")
        if attn.fused_projections:
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
        if rotary_emb is not None:
            query, key = apply_rotary(query, *rotary_emb), apply_rotary(key, *rotary_emb)
        out = state.attend(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), state.layout)
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


class HunyuanRadialProcessor:
    """HunyuanVideo joint attention (video tokens, then text tokens) with a radial kernel."""

    def __init__(self, layer_name: str, block: int, state: RadialState, stock):
        self.layer_name, self.block, self.state, self.stock = layer_name, block, state, stock

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        from diffusers.models.embeddings import apply_rotary_emb

        state = self.state
        if encoder_hidden_states is None or state.layout is None or state.is_dense(self.block):
            state.note(self.block, "dense")
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        state.note(self.block, "radial")
        single_stream = attn.add_q_proj is None
        text = encoder_hidden_states.shape[1]
        if single_stream:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)
        query, key, value = (f(hidden_states).unflatten(2, (attn.heads, -1)) for f in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:  # positions of the video tokens only
            video = query.shape[1] - text if single_stream else query.shape[1]
            query = torch.cat([apply_rotary_emb(query[:, :video], image_rotary_emb, sequence_dim=1),
                               query[:, video:]], dim=1)
            key = torch.cat([apply_rotary_emb(key[:, :video], image_rotary_emb, sequence_dim=1), key[:, video:]], dim=1)
        if not single_stream:
            added = [f(encoder_hidden_states).unflatten(2, (attn.heads, -1))
                     for f in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)]
            if attn.norm_added_q is not None:
                added[0] = attn.norm_added_q(added[0])
            if attn.norm_added_k is not None:
                added[1] = attn.norm_added_k(added[1])
            query, key, value = (torch.cat([x, a], dim=1) for x, a in zip((query, key, value), added))

        rows = []
        for b in range(query.shape[0]):  # each prompt has its own padding
            visible = int(attention_mask[b].reshape(-1).sum()) if attention_mask is not None else None
            layout = dataclasses.replace(state.layout, key_limit=visible)
            rows.append(state.attend(query[b:b + 1].transpose(1, 2), key[b:b + 1].transpose(1, 2),
                                     value[b:b + 1].transpose(1, 2), layout))
        out = torch.cat(rows).transpose(1, 2).flatten(2, 3).to(query.dtype)

        out, encoder_out = out[:, :-text], out[:, -text:]
        if getattr(attn, "to_out", None) is not None:
            out = attn.to_out[1](attn.to_out[0](out))
        if getattr(attn, "to_add_out", None) is not None:
            encoder_out = attn.to_add_out(encoder_out)
        return out, encoder_out


def _hunyuan_layers(transformer: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, int]]:
    """The joint-attention layers of a HunyuanVideo transformer with their block index (double-stream
    blocks first, then single-stream); the text token refiner is left alone."""
    layers = {}
    double = len(transformer.transformer_blocks)
    for i, block in enumerate(transformer.transformer_blocks):
        layers[f"transformer_blocks.{i}.attn"] = (block.attn, i)
    for i, block in enumerate(transformer.single_transformer_blocks):
        layers[f"single_transformer_blocks.{i}.attn"] = (block.attn, double + i)
    return layers


def install_radial(transformer: torch.nn.Module, state: RadialState):
    """Put radial processors on a video transformer; returns the installation (a context manager that
    restores the stock processors) and the handle of the hook that records each call's layout."""
    from gen.attention.installer import install_processors

    hunyuan = hasattr(transformer, "single_transformer_blocks")

    def record(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        text = 0
        if hunyuan:
            encoder = args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]
            text = encoder.shape[1]
        state.record_layout(module, hidden, text)

    handle = transformer.register_forward_pre_hook(record, with_kwargs=True)
    if hunyuan:
        layers = _hunyuan_layers(transformer)
        installation = install_processors(
            transformer, layers={name: module for name, (module, _) in layers.items()},
            factory=lambda name, module: HunyuanRadialProcessor(name, layers[name][1], state, module.processor),
        )
    else:
        installation = install_processors(
            transformer, factory=lambda name, module: WanRadialProcessor(name, state, module.processor), kind="self",
        )
    return installation, handle
