"""The processor installer on the UNet path and on the dispatcher-based transformer path."""

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.attention_processor import AttnProcessor2_0

from gen.attention import UNetAttnProcessor, attention_layers, install_processors, select_layers
from gen.errors import GenError


def _unet_forward(unet):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(sample, 10, encoder_hidden_states=context).sample


class CountingProcessor:
    """Delegates to a real processor and records which layers called it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, attn, *args, **kwargs):
        self.calls.append(attn)
        return self.inner(attn, *args, **kwargs)


def test_selection_by_kind_and_pattern(tiny_sd):
    unet = tiny_sd.pipe.unet
    everything = attention_layers(unet)
    selfs = select_layers(unet, "self")
    crosses = select_layers(unet, "cross")
    assert set(selfs) | set(crosses) == set(everything) and not set(selfs) & set(crosses)
    assert all(name.endswith("attn1") for name in selfs) and all(name.endswith("attn2") for name in crosses)
    up = select_layers(unet, "self", include=["up_blocks.*"], exclude=["up_blocks.2.*"])
    assert up and all(n.startswith("up_blocks.") and not n.startswith("up_blocks.2.") for n in up)


def test_pattern_matching_nothing_is_an_error(tiny_sd):
    with pytest.raises(GenError, match="matches no attention layer"):
        select_layers(tiny_sd.pipe.unet, "self", include=["upblocks.*"])


def test_installer_restores_the_stock_processors_exactly(tiny_sd):
    unet = tiny_sd.pipe.unet
    originals = {name: module.processor for name, module in attention_layers(unet).items()}
    stock = _unet_forward(unet)
    counter = CountingProcessor(AttnProcessor2_0())
    with install_processors(unet, counter, kind="self", include=["down_blocks.*"]) as installed:
        assert installed.layer_names and all(n.startswith("down_blocks.") for n in installed.layer_names)
        _unet_forward(unet)
        assert len(counter.calls) == len(installed.layer_names)
    assert {n: m.processor for n, m in attention_layers(unet).items()} == originals
    assert all(m.processor is originals[n] for n, m in attention_layers(unet).items())
    assert torch.equal(_unet_forward(unet), stock)


def test_gen_base_processor_is_bit_identical_to_attn_processor_2_0(tiny_sd):
    unet = tiny_sd.pipe.unet
    stock = _unet_forward(unet)
    with install_processors(unet, UNetAttnProcessor()):
        assert torch.equal(_unet_forward(unet), stock)


class ModuleProcessor(torch.nn.Module):
    """A processor with weights, like IP-Adapter's: diffusers registers it as a submodule."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, attn, hidden_states, *args, **kwargs):
        return AttnProcessor2_0()(attn, hidden_states, *args, **kwargs)


def test_weighted_processors_come_back_as_registered_submodules(tiny_sd):
    name, layer = next(iter(select_layers(tiny_sd.pipe.unet, "cross").items()))
    original_processor = layer.processor
    weighted = ModuleProcessor()
    layer.set_processor(weighted)
    try:
        with install_processors(tiny_sd.pipe.unet, UNetAttnProcessor(), layers={name: layer}):
            assert "processor" not in layer._modules
        assert layer.processor is weighted and layer._modules["processor"] is weighted
    finally:
        layer.set_processor(original_processor)


@pytest.fixture(scope="module")
def tiny_wan():
    torch.manual_seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    ).eval()


def _wan_forward(model):
    g = torch.Generator().manual_seed(0)
    video = torch.randn(1, 4, 3, 8, 8, generator=g)
    text = torch.randn(1, 7, 16, generator=g)
    with torch.no_grad():
        return model(video, torch.tensor([500]), text).sample


def test_installer_on_dispatcher_transformer(tiny_wan):
    originals = {name: m.processor for name, m in attention_layers(tiny_wan).items()}
    assert set(originals) == {f"blocks.{i}.attn{j}" for i in range(2) for j in (1, 2)}
    stock = _wan_forward(tiny_wan)
    inner = next(iter(originals.values()))
    counter = CountingProcessor(inner)
    with install_processors(tiny_wan, counter, kind="self") as installed:
        assert sorted(installed.layer_names) == ["blocks.0.attn1", "blocks.1.attn1"]
        assert torch.equal(_wan_forward(tiny_wan), stock)
        assert len(counter.calls) == 2 and all(not a.is_cross_attention for a in counter.calls)
    assert all(m.processor is originals[n] for n, m in attention_layers(tiny_wan).items())


def test_factory_gives_each_layer_its_own_processor(tiny_sd):
    made = {}

    def factory(name, module):
        made[name] = UNetAttnProcessor()
        return made[name]

    with install_processors(tiny_sd.pipe.unet, factory=factory, kind="cross"):
        assert all(m.processor is made[n] for n, m in select_layers(tiny_sd.pipe.unet, "cross").items())
    with pytest.raises(TypeError):
        install_processors(tiny_sd.pipe.unet)
