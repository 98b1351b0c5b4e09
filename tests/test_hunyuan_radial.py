"""Radial attention in the joint (video + text) attention of HunyuanVideo and HunyuanVideo 1.5, on tiny
random transformers called directly."""

import pytest
import torch
from diffusers import HunyuanVideo15Transformer3DModel, HunyuanVideoTransformer3DModel

from gen.attention import attention_layers
from gen.attention.video import RadialConfig, install_radial

RADIAL = dict(decay=0.95, dense_layers=0, dense_steps=0, granularity="token")


def _seeded(model_class, **config):
    torch.manual_seed(0)
    return model_class(**config).eval()


@pytest.fixture(scope="module")
def tiny_hunyuan():
    return _seeded(HunyuanVideoTransformer3DModel, in_channels=4, out_channels=4, num_attention_heads=2,
                   attention_head_dim=16, num_layers=1, num_single_layers=2, num_refiner_layers=1, patch_size=2,
                   patch_size_t=1, text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(4, 6, 6))


@pytest.fixture(scope="module")
def tiny_hunyuan15():
    return _seeded(HunyuanVideo15Transformer3DModel, in_channels=9, out_channels=4, num_attention_heads=2,
                   attention_head_dim=16, num_layers=2, num_refiner_layers=1, patch_size=1, patch_size_t=1,
                   text_embed_dim=16, text_embed_2_dim=16, image_embed_dim=16, rope_axes_dim=(4, 6, 6),
                   target_size=64, task_type="i2v")


def _inputs(frames, text=12, padded=5):
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(1, text, dtype=torch.long)
    mask[:, text - padded:] = 0  # the prompt is shorter than the text slot: padding at the end
    return dict(hidden_states=torch.randn(1, 4, frames, 20, 30, generator=g), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, text, 16, generator=g), encoder_attention_mask=mask,
                pooled_projections=torch.randn(1, 8, generator=g), guidance=torch.tensor([6000.0]))


def _inputs15(frames):
    """Image (4), ByT5 (4, 2 padded) and MLLM (4, 1 padded) tokens: 12 text tokens, as `_inputs` has, at patch 1
    on 10 × 15 latents: the same 150 tokens per frame (one compiled kernel shape for both models)."""
    g = torch.Generator().manual_seed(1)
    return dict(hidden_states=torch.randn(1, 9, frames, 10, 15, generator=g), timestep=torch.tensor([500.0]),
                encoder_hidden_states=torch.randn(1, 4, 16, generator=g), encoder_attention_mask=torch.tensor([[1, 1, 1, 0]]),
                encoder_hidden_states_2=torch.randn(1, 4, 16, generator=g),
                encoder_attention_mask_2=torch.tensor([[1, 1, 0, 0]]), image_embeds=torch.randn(1, 4, 16, generator=g))


def _run(model, inputs, config=None):
    with torch.no_grad():
        if config is None:
            return model(**inputs).sample, None
        with install_radial(model, config) as radial:
            return model(**inputs).sample, radial.stats


@pytest.mark.parametrize("model,expected", [
    ("tiny_hunyuan", {"transformer_blocks.0.attn", "single_transformer_blocks.0.attn", "single_transformer_blocks.1.attn"}),
    ("tiny_hunyuan15", {"transformer_blocks.0.attn", "transformer_blocks.1.attn"}),
])
def test_only_the_joint_attention_layers_are_replaced(model, expected, request):
    """The text token refiner's self-attention keeps the stock processor."""
    model = request.getfixturevalue(model)
    stock = {name: m.processor for name, m in attention_layers(model).items()}
    assert any("refiner" in name for name in stock)
    with install_radial(model, RadialConfig(**RADIAL)):
        changed = {n for n, m in attention_layers(model).items() if m.processor is not stock[n]}
    assert changed == expected
    assert all(m.processor is stock[n] for n, m in attention_layers(model).items())


@pytest.mark.parametrize("model,inputs,text,calls", [("tiny_hunyuan", _inputs, 12, 3), ("tiny_hunyuan15", _inputs15, 12, 2)])
def test_keeping_everything_reproduces_the_stock_model_with_text_padding(model, inputs, text, calls, request):
    model = request.getfixturevalue(model)
    batch = inputs(frames=2)  # 2 latent frames: the radial mask keeps every video pair
    radial, stats = _run(model, batch, RadialConfig(**RADIAL))
    assert stats.radial_calls == calls and {layout.text_tokens for layout in stats.layouts} == {text}
    assert torch.allclose(radial, _run(model, batch)[0], atol=1e-5)


@pytest.mark.parametrize("model,inputs", [("tiny_hunyuan", _inputs), ("tiny_hunyuan15", _inputs15)])
def test_flex_kernel_matches_the_boolean_mask_reference(model, inputs, request):
    model = request.getfixturevalue(model)
    batch = inputs(frames=9)  # 9 latent frames × 150 tokens: far frame pairs are dropped
    flex, _ = _run(model, batch, RadialConfig(**RADIAL))
    reference, _ = _run(model, batch, RadialConfig(**RADIAL, kernel="reference"))
    assert torch.allclose(flex, reference, atol=1e-4)
    assert not torch.allclose(flex, _run(model, batch)[0], atol=1e-4)  # the mask does something


def test_rows_with_different_padding_get_their_own_key_limit(tiny_hunyuan):
    """A batch of two prompts padded differently equals the two prompts run one by one."""
    one, two = _inputs(frames=2, padded=5), _inputs(frames=2, padded=2)
    both = {k: torch.cat([one[k], two[k]]) for k in one}
    config = RadialConfig(**RADIAL)
    batched, _ = _run(tiny_hunyuan, both, config)
    assert torch.allclose(batched, torch.cat([_run(tiny_hunyuan, one, config)[0], _run(tiny_hunyuan, two, config)[0]]),
                          atol=1e-5)
