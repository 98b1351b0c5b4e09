"""The base attention processor for the UNet `Attention` path.

`UNetAttnProcessor` does exactly what diffusers' `AttnProcessor2_0` does, split
into three overridable steps so that each method changes only its own part:

* `project`: hidden states -> q, k, v (batch, heads, tokens, head_dim)
* `attend`: q, k, v -> attention output, through `kernels.dense_attention`
* `softmax_scale`: the scale handed to the kernel (None = kernel default 1/√d)

With nothing overridden its output is bit-identical to `AttnProcessor2_0`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gen.attention.installer import attention_layers, install_processors
from gen.attention.kernels import dense_attention
from gen.errors import BackendUnavailable


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, heads·head_dim) -> (batch, heads, tokens, head_dim)."""
    return x.view(x.shape[0], -1, heads, x.shape[-1] // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, head_dim) -> (batch, tokens, heads·head_dim)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


class UNetAttnProcessor:
    """`AttnProcessor2_0` with a selectable dense kernel and overridable steps."""

    def __init__(self, backend: str = "sdpa"):
        self.backend = backend

    def softmax_scale(self, attn, query: torch.Tensor, key: torch.Tensor) -> float | None:
        return None

    def project(self, attn, hidden_states, encoder_hidden_states):
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        query, key, value = (split_heads(x, attn.heads) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        return query, key, value

    def attend(self, attn, query, key, value, attention_mask):
        return dense_attention(
            query,
            key,
            value,
            scale=self.softmax_scale(attn, query, key),
            attn_mask=attention_mask,
            backend=self.backend,
        )

    def core(self, attn, hidden_states, encoder_hidden_states, attention_mask) -> torch.Tensor:
        """(batch, tokens, channels) in -> attention output (batch, tokens, heads·head_dim), before to_out."""
        query, key, value = self.project(attn, hidden_states, encoder_hidden_states)
        out = self.attend(attn, query, key, value, attention_mask)
        return merge_heads(out).to(query.dtype)

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)

        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        hidden_states = self.core(attn, hidden_states, encoder_hidden_states, attention_mask)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextmanager
def dense_backend(unet: torch.nn.Module, backend: str = "sdpa") -> Iterator[None]:
    """Run every attention layer of a UNet on `backend` inside the block (sdpa: stock, untouched)."""
    if backend == "sdpa":
        yield
        return
    with install_processors(unet, UNetAttnProcessor(backend)):
        yield


def check_dispatcher_backend(transformer: torch.nn.Module, backend: str) -> None:
    """Refuse a backend other than sdpa for a transformer whose processors do not go through diffusers'
    dispatcher (SD3's call torch SDPA directly), before any image is started."""
    if backend == "sdpa":
        return
    if not all(hasattr(m.processor, "_attention_backend") for m in attention_layers(transformer).values()):
        raise BackendUnavailable(
            f"attention backend {backend!r} is not available for {type(transformer).__name__}: its attention "
            "processors call torch's SDPA directly, not diffusers' dispatcher; use --attention-backend sdpa")


@contextmanager
def dispatcher_backend(transformer: torch.nn.Module, backend: str = "sdpa") -> Iterator[None]:
    """Run a diffusers transformer's attention on dispatcher backend `backend` inside the block (sdpa:
    the processors' own choice, untouched); each processor's previous choice is put back afterwards.

    Not `transformer.set_attention_backend`: besides this model's processors it sets diffusers'
    process-wide active backend, which every other model's processors then use too (and which it
    never puts back). Here only this transformer's processors change; diffusers' own requirement
    check for the backend still runs.
    """
    if backend == "sdpa":
        yield
        return
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    check_dispatcher_backend(transformer, backend)
    name = AttentionBackendName(backend)
    _check_attention_backend_requirements(name)
    processors = [m.processor for m in attention_layers(transformer).values()]
    before = [(p, p.__dict__.get("_attention_backend", _UNSET)) for p in processors]
    for processor in processors:
        processor._attention_backend = name
    try:
        yield
    finally:
        for processor, value in before:
            if value is _UNSET:
                processor.__dict__.pop("_attention_backend", None)  # back to the class default
            else:
                processor._attention_backend = value


_UNSET = object()
