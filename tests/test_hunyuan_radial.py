"""Radial attention in HunyuanVideo's joint (video + text) attention, on a tiny random transformer."""

import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel

from gen.attention import attention_layers
from gen.attention.video import RadialState, install_radial


@pytest.fixture(scope="module")
def tiny_hunyuan():
    torch.manual_seed(0)
    return HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=1,
        num_single_layers=2, num_refiner_layers=1, patch_size=2, patch_size_t=1, text_embed_dim=16,
        pooled_projection_dim=8, rope_axes_dim=(4, 6, 6),
    ).eval()


def _inputs(frames, text=12, padded=5):
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(1, text, dtype=torch.long)
    mask[:, text - padded:] = 0  # the prompt is shorter than the text slot: padding at the end
    return dict(hidden_states=torch.randn(1, 4, frames, 20, 30, generator=g), timestep=torch.tensor([500]),
                encoder_hidden_states=torch.randn(1, text, 16, generator=g), encoder_attention_mask=mask,
                pooled_projections=torch.randn(1, 8, generator=g), guidance=torch.tensor([6000.0]))


def _run(model, inputs, state=None):
    with torch.no_grad():
        if state is None:
            return model(**inputs).sample
        installation, hook = install_radial(model, state)
        try:
            with installation:
                return model(**inputs).sample
        finally:
            hook.remove()


def test_only_the_joint_attention_layers_are_replaced(tiny_hunyuan):
    stock = {name: m.processor for name, m in attention_layers(tiny_hunyuan).items()}
    state = RadialState(flavour="hunyuan", dense_layers=0, dense_steps=0)
    installation, hook = install_radial(tiny_hunyuan, state)
    with installation:
        changed = {n for n, m in attention_layers(tiny_hunyuan).items() if m.processor is not stock[n]}
    hook.remove()
    assert changed == {"transformer_blocks.0.attn", "single_transformer_blocks.0.attn",
                       "single_transformer_blocks.1.attn"}
    assert all(m.processor is stock[n] for n, m in attention_layers(tiny_hunyuan).items())


def test_keeping_everything_reproduces_the_stock_model_with_text_padding(tiny_hunyuan):
    inputs = _inputs(frames=2)  # 2 latent frames: the radial mask keeps every video pair
    state = RadialState(flavour="hunyuan", decay=0.95, dense_layers=0, dense_steps=0, granularity="token")
    radial = _run(tiny_hunyuan, inputs, state)
    assert state.radial_calls == 3 and state.layout.text_tokens == 12
    assert torch.allclose(radial, _run(tiny_hunyuan, inputs), atol=1e-5)


def test_flex_kernel_matches_the_boolean_mask_reference(tiny_hunyuan):
    inputs = _inputs(frames=9)  # 9 latent frames × 150 tokens: far frame pairs are dropped
    flex = _run(tiny_hunyuan, inputs, RadialState(flavour="hunyuan", decay=0.95, dense_layers=0, dense_steps=0,
                                                  granularity="token"))
    reference = _run(tiny_hunyuan, inputs, RadialState(flavour="hunyuan", decay=0.95, dense_layers=0,
                                                       dense_steps=0, granularity="token", reference_kernel=True))
    assert torch.allclose(flex, reference, atol=1e-4)
    assert not torch.allclose(flex, _run(tiny_hunyuan, inputs), atol=1e-4)  # the mask does something
