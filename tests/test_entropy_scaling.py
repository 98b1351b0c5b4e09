"""Attention entropy scaling: the formula, identity at the training size, and the scale each layer used."""

import copy
import math

import numpy as np
import pytest
import torch

from gen.attention import attention_layers, entropy_scale_factor, entropy_scaling, is_cross_attention
from gen.attention.entropy import entropy_scaling_active, level_sizes, train_token_count

PROMPT = "a lighthouse on a cliff at dusk"


def test_factor_is_sqrt_log_ratio_and_exactly_one_at_training_size():
    assert entropy_scale_factor(4096, 4096) == 1.0
    assert entropy_scale_factor(1024, 4096) == pytest.approx(math.sqrt(math.log(1024) / math.log(4096)))
    assert entropy_scale_factor(1024, 4096) < 1.0 < entropy_scale_factor(9216, 4096)
    assert entropy_scale_factor(1, 64) == 1.0  # undefined log: left alone


def test_level_sizes_follow_stride_two_convolutions():
    assert level_sizes(9, 17, levels=4) == [(9, 17), (5, 9), (3, 5), (2, 3)]
    assert train_token_count(5 * 9, (9, 17), (8, 8)) == 16
    with pytest.raises(ValueError, match="matches no UNet level"):
        train_token_count(7, (9, 17), (8, 8))


def test_auto_is_active_only_away_from_the_training_size():
    assert not entropy_scaling_active("auto", (64, 64), (64, 64))
    assert entropy_scaling_active("auto", (128, 64), (64, 64))
    assert entropy_scaling_active("on", (64, 64), (64, 64))
    assert not entropy_scaling_active("off", (128, 64), (64, 64))


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_sdxl"])
def test_training_size_is_pixel_identical_to_off(fixture, request):
    pipe = request.getfixturevalue(fixture)
    images = {
        mode: np.asarray(pipe(PROMPT, width=64, height=64, seed=3, entropy_scaling=mode).images[0])
        for mode in ("off", "on", "auto")
    }
    # "on" really runs gen's processors on every self-attention layer; the factor is exactly 1.
    assert np.array_equal(images["on"], images["off"])
    assert np.array_equal(images["auto"], images["off"])


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_sdxl"])
def test_other_sizes_change_the_image(fixture, request):
    pipe = request.getfixturevalue(fixture)
    on = pipe(PROMPT, width=128, height=64, seed=3, entropy_scaling="on")
    off = pipe(PROMPT, width=128, height=64, seed=3, entropy_scaling="off")
    assert on.parameters[0]["entropy_scaling_active"] and not off.parameters[0]["entropy_scaling_active"]
    diff = np.abs(np.asarray(on.images[0], dtype=int) - np.asarray(off.images[0], dtype=int))
    assert diff.max() > 0


def test_odd_latent_sizes_run(tiny_sd):
    # 72x64 px -> a 9x8 latent: levels 9x8, 5x4, 3x2 must all be recognised.
    image = tiny_sd(PROMPT, width=72, height=64, seed=1, entropy_scaling="on").images[0]
    assert image.size == (72, 64)


def _reference_attention(attn, x, context, scale):
    """Attention computed by hand in float64 from the layer's own projections."""
    context = x if context is None else context
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    b, heads = x.shape[0], attn.heads
    q, k, v = (t.view(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, -1, heads * v.shape[-1])
    return attn.to_out[1](attn.to_out[0](out))


def _unet_inputs(pipe, latent_hw):
    g = torch.Generator().manual_seed(0)
    unet = pipe.pipe.unet
    sample = torch.randn(1, 4, *latent_hw, generator=g, dtype=torch.float64)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g, dtype=torch.float64)
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":
        text_dim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, text_dim, generator=g, dtype=torch.float64),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]], dtype=torch.float64),
        }
    return sample, context, kwargs


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_sdxl"])
def test_each_layer_uses_the_formula_scale_against_float64_reference(fixture, request):
    pipe = request.getfixturevalue(fixture)
    unet = copy.deepcopy(pipe.pipe.unet).to(torch.float64)
    width, height = 128, 64  # twice the 64x64 training area: every level has N = 2n
    latent_hw = (height // 8, width // 8)
    captured = []
    hooks = [
        module.register_forward_hook(
            lambda m, args, kwargs, out, name=name: captured.append(
                (name, m, args[0], kwargs.get("encoder_hidden_states"), out)
            ),
            with_kwargs=True,
        )
        for name, module in attention_layers(unet).items()
    ]
    sample, context, kwargs = _unet_inputs(pipe, latent_hw)
    with torch.no_grad(), entropy_scaling(unet, train_size=64) as changed:
        unet(sample, 10, encoder_hidden_states=context, **kwargs)
    for hook in hooks:
        hook.remove()

    self_layers = [c for c in captured if not is_cross_attention(c[0], c[1])]
    cross_layers = [c for c in captured if is_cross_attention(c[0], c[1])]
    assert self_layers and cross_layers
    assert sorted(changed) == sorted({name for name, *_ in self_layers})
    with torch.no_grad():
        for name, attn, x, ctx, out in self_layers:
            tokens = x.shape[1]
            head_dim = attn.to_q.out_features // attn.heads
            expected = head_dim**-0.5 * math.sqrt(math.log(tokens) / math.log(tokens // 2))
            assert torch.allclose(out, _reference_attention(attn, x, None, expected), atol=1e-10, rtol=0), name
            # The plain 1/sqrt(d) must not match, or this check would prove nothing.
            assert not torch.allclose(out, _reference_attention(attn, x, None, head_dim**-0.5), atol=1e-6), name
        for name, attn, x, ctx, out in cross_layers:
            head_dim = attn.to_q.out_features // attn.heads
            assert torch.allclose(out, _reference_attention(attn, x, ctx, head_dim**-0.5), atol=1e-10, rtol=0), name


def test_entropy_scaling_context_restores_stock_processors(tiny_sd):
    unet = tiny_sd.pipe.unet
    before = {name: module.processor for name, module in attention_layers(unet).items()}
    with entropy_scaling(unet, train_size=64):
        assert any(m.processor is not before[n] for n, m in attention_layers(unet).items())
    assert all(m.processor is before[n] for n, m in attention_layers(unet).items())
    assert not unet._forward_pre_hooks
