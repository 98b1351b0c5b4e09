"""Attention entropy scaling: any-size generation without retraining (NeurIPS 2023).

In self-attention, the softmax scale 1/√d becomes (1/√d)·√(ln N / ln n), with N the
layer's token count at the requested size and n the same layer's token count at
the model's training size. This keeps the attention entropy close to what the model
saw in training. The factor goes into the kernel's `scale` argument, so it costs
nothing; at the training size it is exactly 1 and the stock kernel call is made.

    with entropy_scaling(pipe.unet, train_size=512):              # SD 1.x/2.x, SDXL
        image = pipe(prompt, width=256, height=256).images[0]
    with entropy_scaling(pipe.transformer, train_size=1024):      # Flux.1, SD3/3.5, Qwen-Image
        image = pipe(prompt, width=512, height=1536).images[0]

On a UNet, N and n are the query (= key) token counts of a self-attention layer's level.
On a diffusion transformer, text and image tokens share one softmax (MM-DiT joint attention,
Flux's single-stream blocks), so N is the key count of the attention call, text keys
included, and n is that count at the training size: the same text keys plus the image
tokens of the training size, n = N − I + I₀. Attention over the image alone (SD3.5's
second attention) gets n = I₀. Layers that attend to another sequence (cross-attention)
are left untouched.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gen.attention.installer import install_processors, select_layers
from gen.attention.processors import UNetAttnProcessor
from gen.attention.scale_gates import scaled_softmax
from gen.errors import GenError

EntropyMode = str  # "auto" | "on" | "off"
ENTROPY_MODES = ("auto", "on", "off")


def entropy_scale_factor(tokens: int, train_tokens: int) -> float:
    """√(ln N / ln n); exactly 1.0 when N == n, and 1.0 where the log is undefined (≤ 1 token)."""
    if tokens == train_tokens or tokens <= 1 or train_tokens <= 1:
        return 1.0
    return math.sqrt(math.log(tokens) / math.log(train_tokens))


def level_sizes(height: int, width: int, levels: int = 8) -> list[tuple[int, int]]:
    """Latent (h, w) at each UNet resolution level: a stride-2, padding-1 conv gives ⌈x/2⌉."""
    sizes = [(height, width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def train_token_count(tokens: int, latent_hw: tuple[int, int], train_latent_hw: tuple[int, int]) -> int:
    """The token count, at the training size, of the UNet level that has `tokens` tokens now."""
    now = level_sizes(*latent_hw)
    train = level_sizes(*train_latent_hw)
    for (h, w), (th, tw) in zip(now, train):
        if h * w == tokens:
            return th * tw
    raise ValueError(
        f"an attention layer has {tokens} tokens, which matches no UNet level of a "
        f"{latent_hw[0]}x{latent_hw[1]} latent ({[h * w for h, w in now]})"
    )


@functools.lru_cache(maxsize=1024)
def layer_entropy_factor(tokens: int, latent_hw: tuple[int, int], train_latent_hw: tuple[int, int]) -> float:
    """The factor for a layer with `tokens` tokens in a UNet run on a `latent_hw` latent (cached:
    it is asked for by every self-attention layer at every step)."""
    return entropy_scale_factor(tokens, train_token_count(tokens, latent_hw, train_latent_hw))


def entropy_scaling_active(mode: EntropyMode, size: tuple[int, int], train_size: tuple[int, int]) -> bool:
    """`auto` applies the method only away from the training size; `on` always; `off` never."""
    if mode not in ENTROPY_MODES:
        raise ValueError(f"entropy scaling mode must be one of {ENTROPY_MODES}, got {mode!r}")
    return mode == "on" or (mode == "auto" and tuple(size) != tuple(train_size))


class LatentSize:
    """The latent (h, w) of the UNet call in progress, recorded by a forward pre-hook."""

    def __init__(self) -> None:
        self.hw: tuple[int, int] | None = None

    def hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.hw = (int(sample.shape[-2]), int(sample.shape[-1]))


class EntropyScalingProcessor(UNetAttnProcessor):
    """Self-attention with the softmax scale multiplied by √(ln N / ln n)."""

    def __init__(self, latent: LatentSize, train_latent_hw: tuple[int, int], backend: str = "sdpa"):
        super().__init__(backend)
        self.latent = latent
        self.train_latent_hw = train_latent_hw

    def softmax_scale(self, attn, query, key):
        if self.latent.hw is None:
            raise RuntimeError("EntropyScalingProcessor used outside a UNet forward call")
        factor = layer_entropy_factor(query.shape[-2], self.latent.hw, self.train_latent_hw)
        if factor == 1.0:
            return None  # the kernel default, bit-identical to the stock processor
        return query.shape[-1] ** -0.5 * factor


def joint_entropy_factor(keys: int, image_tokens: int, train_image_tokens: int) -> float:
    """The factor of a transformer attention call with `keys` keys, `image_tokens` of them the image's:
    at the training size its text keys stay and its image keys number `train_image_tokens`."""
    if keys < image_tokens:  # not an attention over the image's own tokens
        return 1.0
    return entropy_scale_factor(keys, keys - image_tokens + train_image_tokens)


# Flux and Qwen-Image pipelines pack 2×2 patches of the VAE latent into one token before the
# transformer (its input is (batch, tokens, channels)); SD3 patches a (batch, channels, h, w) latent
# inside the transformer by its config's patch_size.
PACKED_PATCH = 2


def image_token_count(hidden_states: torch.Tensor, patch_size: int) -> int:
    """The image tokens of a transformer call from its latent input (packed or not)."""
    if hidden_states.ndim == 4:
        return (hidden_states.shape[-2] // patch_size) * (hidden_states.shape[-1] // patch_size)
    return int(hidden_states.shape[1])


def train_image_token_count(train_wh: tuple[int, int], vae_scale_factor: int, patch: int) -> int:
    """The image tokens at the training size (pixels), with `patch` latent pixels per token side."""
    side = vae_scale_factor * patch
    return (train_wh[1] // side) * (train_wh[0] // side)


class ImageTokens:
    """The image token counts (now and at the training size) of the transformer call in progress,
    recorded by a forward pre-hook; kept per thread, like the published scale."""

    def __init__(self, train_wh: tuple[int, int], vae_scale_factor: int):
        self.train_wh, self.vae_scale_factor = train_wh, vae_scale_factor
        self._local = threading.local()

    def hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        patch = int(module.config.patch_size) if hidden.ndim == 4 else PACKED_PATCH
        self._local.counts = (image_token_count(hidden, patch),
                              train_image_token_count(self.train_wh, self.vae_scale_factor, patch))

    def factor(self, keys: int) -> float:
        counts = getattr(self._local, "counts", None)
        if counts is None:
            raise RuntimeError("entropy scaling: an attention layer ran outside its transformer's forward call")
        return joint_entropy_factor(keys, *counts)


def is_unet(model: torch.nn.Module) -> bool:
    from diffusers import UNet2DConditionModel

    return isinstance(model, UNet2DConditionModel)


@contextmanager
def entropy_scaling(
    model: torch.nn.Module,
    train_size: int | tuple[int, int],
    vae_scale_factor: int = 8,
    backend: str = "sdpa",
) -> Iterator[list[str]]:
    """Apply entropy scaling to every self-attention layer of `model` (a UNet or a diffusion
    transformer) inside the block.

    `train_size` is in pixels, (width, height) or one int for square. Yields the names of the
    layers it changed. Cross-attention is left untouched. `backend` picks gen's kernel on a UNet;
    on a transformer the kernel is whichever diffusers' dispatcher uses (`set_attention_backend`).
    """
    train_w, train_h = (train_size, train_size) if isinstance(train_size, int) else train_size
    if not is_unet(model):
        with _transformer_entropy_scaling(model, (train_w, train_h), vae_scale_factor, backend) as names:
            yield names
        return
    train_latent_hw = (train_h // vae_scale_factor, train_w // vae_scale_factor)
    latent = LatentSize()
    handle = model.register_forward_pre_hook(latent.hook, with_kwargs=True)
    try:
        with install_processors(
            model, EntropyScalingProcessor(latent, train_latent_hw, backend), kind="self"
        ) as installed:
            yield installed.layer_names
    finally:
        handle.remove()


@contextmanager
def _transformer_entropy_scaling(transformer, train_wh, vae_scale_factor, backend) -> Iterator[list[str]]:
    if backend != "sdpa":
        raise GenError(f"attention backend {backend!r}: on a transformer the kernel is diffusers' dispatcher's; "
                       "choose it with transformer.set_attention_backend(...)")
    tokens = ImageTokens(train_wh, vae_scale_factor)
    handle = transformer.register_forward_pre_hook(tokens.hook, with_kwargs=True)
    try:
        with scaled_softmax(transformer, tokens.factor, select_layers(transformer, "self")) as names:
            yield names
    finally:
        handle.remove()
