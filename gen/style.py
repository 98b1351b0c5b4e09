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

The authors' two implementations (the LDM script `run_styleid.py`, "original", and
their diffusers port `diffusers_implementation/`, "port") differ from each other and
from gen in a few conventions; `CONVENTIONS` names all three, so a run can follow
either implementation exactly. Which layers are injected is a named `LAYER_SETS`
entry or explicit layer names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from gen.attention.kernels import dense_attention
from gen.attention.processors import UNetAttnProcessor, merge_heads, split_heads
from gen.errors import FieldError, GenError

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


@dataclass(frozen=True)
class AdaINRule:
    """How AdaIN measures a channel's spread: the one place the conventions' formulas differ."""

    unbiased: bool = False  # divide by n − 1 (torch.std's default) instead of n
    eps: float = 1e-5
    eps_in_root: bool = True  # √(var + eps); False: √var + eps
    eps_on_style: bool = True  # False: only the content's spread (the divisor) gets eps


GEN_ADAIN = AdaINRule()  # biased variance + 1e-5 under the root, for both images


def channel_stats(latent: torch.Tensor, rule: AdaINRule = GEN_ADAIN, *, style: bool = False,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over H×W of a (…, C, H, W) latent, in float64."""
    flat = latent.flatten(-2).double()
    var = flat.var(-1, unbiased=rule.unbiased)
    eps = rule.eps if rule.eps_on_style or not style else 0.0
    return flat.mean(-1), (var + eps).sqrt() if rule.eps_in_root else var.sqrt() + eps


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          rule: AdaINRule = GEN_ADAIN) -> torch.Tensor:
    """Give each channel of `content` (…, C, H, W) the style's mean and standard deviation."""
    mean, std = channel_stats(content, rule)
    normalised = (content.double() - mean[..., None, None]) / std[..., None, None]
    return (normalised * style_std[..., None, None] + style_mean[..., None, None]).to(content.dtype)


def blended_stats(latents: list[torch.Tensor], weights: list[float], rule: AdaINRule = GEN_ADAIN,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted average of several styles' per-channel statistics (weights sum to 1)."""
    stats = [channel_stats(x, rule, style=True) for x in latents]
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


# ----------------------------------------------------------------------------- conventions


@dataclass(frozen=True)
class Convention:
    """How one implementation of StyleID runs (README, "Conventions", has the sources line by line)."""

    name: str  # also the gen.inversion rule: where the inversion evaluates the UNet, where it ends
    skip_first_step: bool  # generation starts at the second timestep, from the extra level's latent
    inject_from: int  # the first injected generation step (0-based)
    adain: AdaINRule
    sd_layers: str  # the layer set on SD 1.x/2.x
    final_alpha_is_first: bool  # the last step lands on ᾱ_0 whatever the scheduler's set_alpha_to_one


CONVENTIONS: dict[str, Convention] = {
    c.name: c for c in [
        Convention("gen", False, 1, GEN_ADAIN, "paper", False),
        Convention("original", True, 1, AdaINRule(unbiased=True, eps=0.0), "paper", True),
        Convention("port", False, 0, AdaINRule(unbiased=True, eps=1e-4, eps_in_root=False, eps_on_style=False),
                   "port", False),
    ]
}
DEFAULT_CONVENTION = "gen"


def convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise FieldError("convention", f"{{name}} must be one of {', '.join(CONVENTIONS)}, got {name!r}")
    return CONVENTIONS[name]


def check_injection_steps(convention_name: str, steps: int, inject_from: int | None) -> None:
    """The step count and first injected step a convention can run (needs no model)."""
    rules = convention(convention_name)
    if rules.skip_first_step and steps < 2:
        raise FieldError("steps", f"{{name}} must be at least 2 under the {rules.name} convention (it skips the "
                         "first step)")
    if inject_from is None:
        return
    first = 1 if rules.skip_first_step else 0
    if isinstance(inject_from, bool) or not isinstance(inject_from, int) or not first <= inject_from < steps:
        why = f" (the {rules.name} convention never runs step 0)" if first else ""
        raise FieldError("inject_from", f"{{name}} must be a whole step number from {first} to {steps - 1}{why}, "
                         f"got {inject_from!r}")


def check_layer_specs(specs: list[str]) -> None:
    """Each entry names a layer set, a layer or a pattern (layer names have dots); needs no model."""
    if not specs:
        raise FieldError("layers", f"{{name}}: name at least one self-attention layer or a layer set "
                         f"({', '.join(LAYER_SETS)})")
    for spec in specs:
        if spec not in LAYER_SETS and not any(c in spec for c in ".*?["):
            raise FieldError("layers", f"{{name}}: {spec!r} is neither a layer set ({', '.join(LAYER_SETS)}) nor a "
                             "layer name such as up_blocks.2.attentions.0.transformer_blocks.0.attn1")


# ----------------------------------------------------------------------------- layers


# Named sets of injected layers; each resolves on the UNet at hand (see `layer_set`).
LAYER_SETS: dict[str, str] = {
    "paper": "the first transformer block's attn1 of every attention in the two finest decoder levels with "
             "attention (SD 1.x/2.x: LDM output blocks 6-11, the paper's and run_styleid.py's)",
    "port": "the paper set without its first layer (SD 1.x/2.x: output blocks 7-11, the diffusers port's)",
    "all-blocks": "every transformer block's attn1 of those attentions (SDXL: 36 layers)",
    "instantstyle": "every attn1 of up_blocks.0.attentions.1, the block InstantStyle found to carry style (SDXL)",
    "vsp": "every attn1 of the finest decoder level with attention (SDXL: up_blocks.1, Visual Style "
           "Prompting's choice)",
}
SDXL_LAYER_SET = "vsp"  # the default on SDXL's layout, whatever the convention (README: why)


def _decoder_levels_with_attention(unet: torch.nn.Module) -> list[int]:
    return [i for i, block in enumerate(unet.up_blocks) if getattr(block, "attentions", None)]


def finest_level_has_attention(unet: torch.nn.Module) -> bool:
    """True for SD 1.x/2.x's decoder layout; False for SDXL's (no attention at the finest level)."""
    return bool(getattr(unet.up_blocks[-1], "attentions", None))


def _self_attention(block: int, attention: int, transformer: int) -> str:
    return f"up_blocks.{block}.attentions.{attention}.transformer_blocks.{transformer}.attn1"


def _all_blocks(unet: torch.nn.Module, levels: list[int]) -> list[str]:
    return [_self_attention(i, j, k) for i in levels for j, attention in enumerate(unet.up_blocks[i].attentions)
            for k in range(len(attention.transformer_blocks))]


def layer_set(unet: torch.nn.Module, name: str) -> list[str]:
    """The self-attention layer names of a named set (`LAYER_SETS`) on this UNet."""
    if name not in LAYER_SETS:
        raise GenError(f"unknown layer set {name!r}; layer sets: {', '.join(LAYER_SETS)}")
    levels = _decoder_levels_with_attention(unet)
    if name in ("paper", "port"):
        first = [_self_attention(i, j, 0) for i in levels[-2:] for j in range(len(unet.up_blocks[i].attentions))]
        return first if name == "paper" else first[1:]
    if name == "all-blocks":
        return _all_blocks(unet, levels[-2:])
    if name == "vsp":
        return _all_blocks(unet, levels[-1:])
    attentions = getattr(unet.up_blocks[0], "attentions", None) or []
    if len(attentions) < 2:
        raise GenError("layer set 'instantstyle' is up_blocks.0.attentions.1 of SDXL's UNet, which this model "
                       "does not have; use it with SDXL")
    return [_self_attention(0, 1, k) for k in range(len(attentions[1].transformer_blocks))]


def default_layer_set(unet: torch.nn.Module, convention: str = "gen") -> str:
    """The convention's set on SD 1.x/2.x layouts; `SDXL_LAYER_SET` on SDXL's (the authors published none)."""
    return CONVENTIONS[convention].sd_layers if finest_level_has_attention(unet) else SDXL_LAYER_SET


def default_injection_layers(unet: torch.nn.Module, convention: str = "gen") -> list[str]:
    """The decoder self-attention layers injected when none are named, for any SD-family UNet."""
    return layer_set(unet, default_layer_set(unet, convention))


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


def feature_elements(unet: torch.nn.Module, layers: list[str], latent_hw: tuple[int, int]) -> int:
    """Numbers kept per image and step for `layers` (their input hidden states), for memory estimates."""
    return sum(math.prod(feature_shape(unet, layer, latent_hw)) for layer in layers)


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
    first_injected_step: int = 1  # gen does not inject the first generation step (see CONVENTIONS)
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
