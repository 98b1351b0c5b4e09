"""Style injection (StyleID, CVPR 2024): the method's math and its attention processor.

In chosen decoder self-attention layers, at generation step t:

    q = γ·q_content(t) + (1−γ)·q_current,   K, V = K_style(t), V_style(t),
    out = softmax(T · q Kᵀ / √d) V

where q_content and K_style, V_style are the layer's projections of the content's and
the style's hidden states at the same timestep of their DDIM inversions. Generation
starts from the content's inverted latent after AdaIN to the style's statistics.

Features are kept as the layer's *input* hidden states (one tensor per image, layer
and step) rather than q, k and v: the projections are recomputed on use, which
costs two small matmuls and stores a third of what the reference code keeps.
The processor reads features either from a `FeatureStore` (filled during inversion)
or from other rows of the same batched UNet call (the low-memory mode).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from gen.attention.kernels import dense_attention
from gen.attention.processors import UNetAttnProcessor, merge_heads, split_heads
from gen.errors import GenError

DEFAULT_GAMMA = 0.75
DEFAULT_TEMPERATURE = 1.5
STRONG_GAMMA = 0.3  # the paper's "stronger style" setting


# ----------------------------------------------------------------------------- math


def strength_to_gamma(strength: float) -> float:
    """Map a 0–1 "style strength" onto query preservation γ.

    0 → γ 1 (content queries only), 0.5 → γ 0.75 (the paper's default),
    1 → γ 0.3 (the paper's "stronger style"); linear in between.
    """
    if not 0.0 <= strength <= 1.0:
        raise GenError(f"style strength must be between 0 and 1, got {strength}")
    if strength <= 0.5:
        return 1.0 - (1.0 - DEFAULT_GAMMA) * strength / 0.5
    return DEFAULT_GAMMA - (DEFAULT_GAMMA - STRONG_GAMMA) * (strength - 0.5) / 0.5


def gamma_to_strength(gamma: float) -> float:
    """The inverse of `strength_to_gamma` for γ in [0.3, 1] (below 0.3: strength 1, the strongest)."""
    if not 0.0 <= gamma <= 1.0:
        raise GenError(f"gamma must be between 0 and 1, got {gamma}")
    if gamma >= DEFAULT_GAMMA:
        return 0.5 * (1.0 - gamma) / (1.0 - DEFAULT_GAMMA)
    return min(1.0, 0.5 + 0.5 * (DEFAULT_GAMMA - gamma) / (DEFAULT_GAMMA - STRONG_GAMMA))


def channel_stats(latent: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over H×W of a (…, C, H, W) latent."""
    flat = latent.flatten(-2).double()
    return flat.mean(-1), (flat.var(-1, unbiased=False) + eps).sqrt()


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """Give each channel of `content` (…, C, H, W) the style's mean and standard deviation."""
    mean, std = channel_stats(content)
    normalised = (content.double() - mean[..., None, None]) / std[..., None, None]
    return (normalised * style_std[..., None, None] + style_mean[..., None, None]).to(content.dtype)


def blended_stats(latents: list[torch.Tensor], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted average of several styles' per-channel statistics (weights sum to 1)."""
    stats = [channel_stats(x) for x in latents]
    mean = sum(w * m for w, (m, _) in zip(weights, stats))
    std = sum(w * s for w, (_, s) in zip(weights, stats))
    return mean, std


def normalise_weights(weights: list[float]) -> list[float]:
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise GenError(f"style weights must be ≥ 0 with at least one > 0, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def injected_attention(
    q_content: torch.Tensor,
    q_current: torch.Tensor,
    styles: list[tuple[torch.Tensor, torch.Tensor, float]],
    gamma: float,
    temperature: float,
    backend: str = "sdpa",
) -> torch.Tensor:
    """StyleID attention for (batch, heads, tokens, head_dim) queries and per-style (K, V, weight).

    Several styles blend as the weighted sum of their attention outputs (weights sum to 1),
    so weight 1 on one style is exactly that style alone.
    """
    query = gamma * q_content + (1.0 - gamma) * q_current
    scale = query.shape[-1] ** -0.5 * temperature
    out = None
    for key, value, weight in styles:
        part = dense_attention(query, key.expand(query.shape[0], -1, -1, -1),
                               value.expand(query.shape[0], -1, -1, -1), scale=scale, backend=backend)
        out = part * weight if out is None else out + part * weight
    return out


# ----------------------------------------------------------------------------- layers


def default_injection_layers(unet: torch.nn.Module) -> list[str]:
    """The decoder self-attention layers StyleID injects into, for any SD-family UNet.

    Rule: the first transformer block's `attn1` of every attention module in the two finest
    decoder levels that have attention. For SD 1.x/2.x this is exactly the paper's LDM
    output_blocks 6–11 (`up_blocks.2` and `up_blocks.3`, attentions 0–2); for SDXL it is
    `up_blocks.0` and `up_blocks.1` (its finest decoder level has no attention).
    """
    with_attention = [i for i, block in enumerate(unet.up_blocks) if getattr(block, "attentions", None)]
    layers = []
    for i in with_attention[-2:]:
        for j in range(len(unet.up_blocks[i].attentions)):
            layers.append(f"up_blocks.{i}.attentions.{j}.transformer_blocks.0.attn1")
    return layers


def feature_shape(unet: torch.nn.Module, layer: str, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(tokens, channels) of a layer's hidden states for a latent of latent_hw (for memory estimates)."""
    from gen.attention.entropy import level_sizes

    levels = len(unet.config.block_out_channels)
    match = re.match(r"(up|down)_blocks\.(\d+)\.", layer)
    if match:
        index = int(match.group(2))
        level = levels - 1 - index if match.group(1) == "up" else index
    else:
        level = levels - 1
    h, w = level_sizes(*latent_hw, levels=levels)[max(0, min(level, levels - 1))]
    channels = unet.get_submodule(layer).to_q.in_features
    return h * w, channels


# ----------------------------------------------------------------------------- state and processor


class FeatureStore:
    """Hidden states of the injected layers, by (role, layer, step index)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str, int], torch.Tensor] = {}

    def put(self, role: str, layer: str, step: int, hidden: torch.Tensor) -> None:
        self._data[(role, layer, step)] = hidden.detach()

    def get(self, role: str, layer: str, step: int) -> torch.Tensor:
        try:
            return self._data[(role, layer, step)]
        except KeyError:
            raise RuntimeError(f"no stored features for {role} in {layer} at step {step}") from None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._data.values())

    def clear(self) -> None:
        self._data.clear()


@dataclass
class InjectionState:
    """What the injection processors need to know about the UNet call in progress.

    `roles` names each batch row: "content:i" and "style:j" rows are run normally (and
    are the feature source in the low-memory mode); "gen:i" rows are being stylised,
    with content i's queries. Rows are only injected when `inject` is set.
    """

    gamma: float = DEFAULT_GAMMA
    temperature: float = DEFAULT_TEMPERATURE
    styles: list[tuple[str, float]] = field(default_factory=list)  # (role, weight)
    roles: list[str] | None = None
    step: int = 0
    inject: bool = False
    capture: bool = False
    first_injected_step: int = 1  # StyleID does not inject the first generation step
    store: FeatureStore = field(default_factory=FeatureStore)


class StyleInjectionProcessor(UNetAttnProcessor):
    """Self-attention with StyleID's key/value substitution and query preservation."""

    def __init__(self, layer: str, state: InjectionState, backend: str = "sdpa"):
        super().__init__(backend)
        self.layer = layer
        self.state = state

    def core(self, attn, hidden_states, encoder_hidden_states, attention_mask):
        state = self.state
        if state.roles is None or encoder_hidden_states is not None:
            return super().core(attn, hidden_states, encoder_hidden_states, attention_mask)
        roles = state.roles
        if len(roles) != hidden_states.shape[0]:
            raise RuntimeError(f"{self.layer}: batch of {hidden_states.shape[0]} rows but {len(roles)} roles")
        if state.capture and state.step >= state.first_injected_step:  # earlier steps are never read
            for row, role in enumerate(roles):
                if not role.startswith("gen:"):
                    state.store.put(role, self.layer, state.step, hidden_states[row])
        gen_rows = [row for row, role in enumerate(roles) if role.startswith("gen:")]
        if not gen_rows or not state.inject:
            return super().core(attn, hidden_states, encoder_hidden_states, attention_mask)

        def features(role: str) -> torch.Tensor:
            return hidden_states[roles.index(role)] if role in roles else state.store.get(role, self.layer, state.step)

        out = torch.empty(hidden_states.shape[0], hidden_states.shape[1], attn.to_q.out_features,
                          dtype=hidden_states.dtype, device=hidden_states.device)
        plain_rows = [row for row in range(len(roles)) if row not in gen_rows]
        if plain_rows:
            mask = attention_mask[plain_rows] if attention_mask is not None else None
            out[plain_rows] = super().core(attn, hidden_states[plain_rows], None, mask)

        current = hidden_states[gen_rows]
        content = torch.stack([features("content:" + roles[row].split(":", 1)[1]) for row in gen_rows])
        styles = []
        for role, weight in state.styles:
            style = features(role)[None]
            styles.append((self._heads(attn, attn.to_k(style), attn.norm_k),
                           self._heads(attn, attn.to_v(style), None), weight))
        result = injected_attention(
            self._heads(attn, attn.to_q(content), attn.norm_q),
            self._heads(attn, attn.to_q(current), attn.norm_q),
            styles, state.gamma, state.temperature, self.backend,
        )
        out[gen_rows] = merge_heads(result).to(out.dtype)
        return out

    @staticmethod
    def _heads(attn, x, norm):
        x = split_heads(x, attn.heads)
        return norm(x) if norm is not None else x
