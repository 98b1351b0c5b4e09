"""Style injection (StyleID): inversion, AdaIN, the injected attention, caching, modes and controls."""

import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gen.attention import install_processors
from gen.errors import GenError
from gen.inversion import InversionCache, Trajectory, ddim_invert, ddim_schedule, ddim_step
from gen.tiny_models import build_arch_unet
from gen.style import (InjectionState, StyleInjectionProcessor, adain, channel_stats, default_injection_layers,
                       gamma_to_strength, strength_to_gamma)
from pipelines import StyleTransferPipeline

CONTENT, STYLE, STYLE2 = "assets/coffee.jpg", "assets/brick.jpg", "assets/gravel.jpg"


@pytest.fixture(scope="module")
def style_sd(tiny_sd, tmp_path_factory):
    return StyleTransferPipeline(tiny_sd.model, cache=InversionCache(tmp_path_factory.mktemp("inversions")))


@pytest.fixture(scope="module")
def style_sdxl(tiny_sdxl, tmp_path_factory):
    return StyleTransferPipeline(tiny_sdxl.model, cache=InversionCache(tmp_path_factory.mktemp("inversions")))


@pytest.fixture(scope="module")
def style_sd_v(tmp_path_factory):
    """tiny-sd with a v-prediction scheduler, as SD 2.1 (768) has."""
    from diffusers import DDIMScheduler

    from gen.models import load_pipeline

    model = load_pipeline("tiny-sd", device="cpu")
    model.pipe.scheduler = DDIMScheduler.from_config(model.pipe.scheduler.config, prediction_type="v_prediction")
    return StyleTransferPipeline(model, cache=InversionCache(tmp_path_factory.mktemp("inversions")))


@pytest.fixture
def assets(monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath)


def _content_latent(pipe, size=64):
    from gen.images import cover_resize, load_image

    with torch.inference_mode():
        return pipe._encode([cover_resize(load_image(CONTENT), size, size)])


# ----------------------------------------------------------------------------- DDIM


def test_inversion_then_generation_is_exact_for_an_input_independent_model():
    schedule = ddim_schedule({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                              "set_alpha_to_one": False, "steps_offset": 1}, 20)
    noise = {t: torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
             for t in schedule.timesteps}
    x0 = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    (trajectory,) = ddim_invert(lambda x, t: noise[t].expand_as(x), x0, schedule)
    x = trajectory.final[None]
    for index, t in enumerate(schedule.timesteps):
        assert torch.allclose(x, trajectory.inputs[index - 1][None] if index else x, atol=1e-9)
        x = ddim_step(schedule, index, x, noise[t])
    assert torch.allclose(x, x0, atol=1e-10)


@pytest.mark.parametrize("fixture", ["style_sd", "style_sdxl", "style_sd_v"])
def test_inversion_and_regeneration_reproduce_the_latent(fixture, request, assets, capsys):
    pipe = request.getfixturevalue(fixture)
    z0 = _content_latent(pipe)
    out = pipe(CONTENT, CONTENT, num_inference_steps=50, size=64, injection=False, adain_init=False,
               use_cache=False)
    error = ((out.latents - z0).norm() / z0.norm()).item()
    with capsys.disabled():
        print(f"\n[{fixture}] DDIM inversion + regeneration, 50 steps: relative latent error {error:.4f}")
    assert error < 0.05


@pytest.mark.parametrize("fixture", ["style_sd", "style_sdxl"])
def test_content_as_its_own_style_at_t1_stays_within_the_inversion_error(fixture, request, assets, capsys):
    pipe = request.getfixturevalue(fixture)
    z0 = _content_latent(pipe)
    recon = pipe(CONTENT, CONTENT, num_inference_steps=50, size=64, injection=False, adain_init=False)
    same = pipe(CONTENT, CONTENT, num_inference_steps=50, size=64, temperature=1.0)
    other = pipe(CONTENT, STYLE, num_inference_steps=50, size=64)
    inversion_error = ((recon.latents - z0).norm() / z0.norm()).item()
    self_style = ((same.latents - recon.latents).norm() / z0.norm()).item()
    real_style = ((other.latents - recon.latents).norm() / z0.norm()).item()
    with capsys.disabled():
        print(f"\n[{fixture}] inversion error {inversion_error:.4f}; content-as-style vs reconstruction "
              f"{self_style:.4f}; a real style vs reconstruction {real_style:.4f}")
    assert self_style <= inversion_error
    assert real_style > 5 * self_style  # the comparison can fail: a real style does move the result


# ----------------------------------------------------------------------------- AdaIN and the attention


def test_adain_gives_the_style_statistics():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 4, 8, 8, generator=g) * 3 + 1
    style = torch.randn(4, 8, 8, generator=g) * 0.5 - 2
    mean, std = channel_stats(style)
    out = adain(content, mean, std)
    out_mean, out_std = channel_stats(out)
    assert torch.allclose(out_mean, mean.expand_as(out_mean), atol=1e-5)
    assert torch.allclose(out_std, std.expand_as(out_std), atol=1e-5)


def test_strength_maps_onto_gamma():
    assert strength_to_gamma(0.0) == 1.0 and strength_to_gamma(0.5) == 0.75
    assert strength_to_gamma(1.0) == pytest.approx(0.3)
    assert strength_to_gamma(0.25) == pytest.approx(0.875)
    with pytest.raises(GenError):
        strength_to_gamma(1.5)


def test_gamma_maps_back_onto_strength():
    for strength in (0.0, 0.1, 0.25, 0.5, 0.6, 0.9, 1.0):
        assert gamma_to_strength(strength_to_gamma(strength)) == pytest.approx(strength)
    assert gamma_to_strength(0.1) == 1.0  # stronger than the slider reaches: its strongest end
    with pytest.raises(GenError):
        gamma_to_strength(-0.1)


def test_default_layers_are_the_papers_for_sd15_and_vsp_for_sdxl(tiny_sdxl):
    sd15 = build_arch_unet("arch-sd15", device="meta")
    assert default_injection_layers(sd15) == [
        f"up_blocks.{i}.attentions.{j}.transformer_blocks.0.attn1" for i in (2, 3) for j in range(3)]
    assert default_injection_layers(tiny_sdxl.pipe.unet) == [  # every block of its finest attention level
        f"up_blocks.1.attentions.{j}.transformer_blocks.0.attn1" for j in range(2)]


def _reference(attn, h_content, h_current, h_style, gamma, temperature):
    """StyleID attention by hand, float64, from the layer's own projections."""
    heads = attn.heads

    def split(x):
        return x.view(x.shape[0], -1, heads, x.shape[-1] // heads).transpose(1, 2)

    q = gamma * split(attn.to_q(h_content)) + (1 - gamma) * split(attn.to_q(h_current))
    k, v = split(attn.to_k(h_style)), split(attn.to_v(h_style))
    weights = torch.softmax(temperature * (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(h_current.shape[0], -1, heads * v.shape[-1])
    return attn.to_out[0](out)


@pytest.mark.parametrize("mode", ["recompute", "cache"])
def test_injected_layer_matches_float64_reference(tiny_sd, mode):
    unet = copy.deepcopy(tiny_sd.pipe.unet).to(torch.float64)
    layer = default_injection_layers(unet)[-1]
    attn = unet.get_submodule(layer)
    gamma, temperature = 0.6, 1.7
    state = InjectionState(gamma=gamma, temperature=temperature, styles=[("style:0", 1.0)])
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)  # content, style, current
    context = torch.zeros(1, 77, 32, dtype=torch.float64)
    seen = {}
    attn.register_forward_hook(lambda m, a, o: seen.update(h=a[0], out=o))
    with torch.no_grad(), install_processors(unet, factory=lambda n, m: StyleInjectionProcessor(n, state),
                                             layers={layer: attn}):
        state.step = 3
        if mode == "cache":
            state.roles, state.capture = ["content:0", "style:0"], True
            unet(rows[:2], 500, encoder_hidden_states=context.expand(2, -1, -1))
            stored = seen["h"]
            state.roles, state.capture, state.inject = ["gen:0"], False, True
            unet(rows[2:], 500, encoder_hidden_states=context)
            h_content, h_style, h_current, out = stored[:1], stored[1:2], seen["h"], seen["out"]
        else:
            state.roles, state.inject = ["content:0", "style:0", "gen:0"], True
            unet(rows, 500, encoder_hidden_states=context.expand(3, -1, -1))
            h_content, h_style, h_current, out = seen["h"][:1], seen["h"][1:2], seen["h"][2:], seen["out"][2:]
        expected = _reference(attn, h_content, h_current, h_style, gamma, temperature)
        assert torch.allclose(out, expected, atol=1e-10, rtol=0)
        plain = _reference(attn, h_current, h_current, h_current, 1.0, 1.0)
        assert not torch.allclose(out, plain, atol=1e-4)


# ----------------------------------------------------------------------------- caching and modes


def _count_unet_calls(pipe):
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    return calls, handle


def test_cache_hit_skips_inversion_and_gives_identical_output(tiny_sd, tmp_path, assets):
    pipe = StyleTransferPipeline(tiny_sd.model, cache=InversionCache(tmp_path))
    calls, handle = _count_unet_calls(pipe)
    try:
        first = pipe(CONTENT, STYLE, num_inference_steps=12, size=64, memory="recompute")
        cold = len(calls)
        calls.clear()
        second = pipe(CONTENT, STYLE, num_inference_steps=12, size=64, memory="recompute")
        warm = len(calls)
    finally:
        handle.remove()
    assert cold == 24 and warm == 12  # inversion (12 calls, batch 2) is skipped; generation stays
    assert second.stats["cache_hits"] == 2 and len(list(tmp_path.glob("*.safetensors"))) == 2
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))


def test_new_content_with_cached_style_takes_at_most_2n_unet_calls(tiny_sd, tmp_path, assets):
    pipe = StyleTransferPipeline(tiny_sd.model, cache=InversionCache(tmp_path))
    pipe("assets/chelsea.jpg", STYLE, num_inference_steps=10, size=64)  # caches the style
    calls, handle = _count_unet_calls(pipe)
    try:
        out = pipe(CONTENT, STYLE, num_inference_steps=10, size=64, memory="cache")
    finally:
        handle.remove()
    assert out.stats["cache_hits"] == 1 and len(calls) <= 20


def test_low_memory_and_feature_cache_modes_give_the_same_image(style_sd, assets, capsys):
    cached = style_sd(CONTENT, STYLE, num_inference_steps=20, size=64, memory="cache")
    recomputed = style_sd(CONTENT, STYLE, num_inference_steps=20, size=64, memory="recompute")
    assert cached.stats["feature_bytes"] > 0 and recomputed.stats["feature_bytes"] == 0
    diff = np.abs(np.asarray(cached.images[0], int) - np.asarray(recomputed.images[0], int))
    latent_diff = (cached.latents - recomputed.latents).abs().max().item()
    with capsys.disabled():
        print(f"\n[modes] max pixel difference {diff.max()}, max latent difference {latent_diff:.2e}")
    assert diff.max() <= 1 and latent_diff < 1e-4  # batched vs single-row float rounding only


def test_blending_with_weight_one_on_one_style_equals_that_style(style_sd, assets):
    alone = style_sd(CONTENT, STYLE, num_inference_steps=10, size=64)
    blended = style_sd(CONTENT, [(STYLE, 1.0), (STYLE2, 0.0)], num_inference_steps=10, size=64)
    mixed = style_sd(CONTENT, [(STYLE, 1.0), (STYLE2, 1.0)], num_inference_steps=10, size=64)
    assert torch.equal(alone.latents, blended.latents)
    assert not torch.equal(alone.latents, mixed.latents)


def test_several_contents_in_one_batch_match_single_runs(style_sd, assets):
    batch = style_sd([CONTENT, "assets/chelsea.jpg"], STYLE, num_inference_steps=10, size=64, memory="recompute")
    single = style_sd("assets/chelsea.jpg", STYLE, num_inference_steps=10, size=64, memory="recompute")
    assert len(batch.images) == 2
    assert (batch.latents[1] - single.latents[0]).abs().max().item() < 1e-4


def test_sdxl_runs_with_blend_mask_and_colour(style_sdxl, assets):
    mask = Image.new("L", Image.open(CONTENT).size, 0)
    mask.paste(255, (0, 0, mask.width // 2, mask.height))
    out = style_sdxl(CONTENT, [(STYLE, 0.7), (STYLE2, 0.3)], num_inference_steps=8, size=96, mask=mask,
                     preserve_colors=True, strength=1.0)
    assert out.images[0].size == (96, 64)
    assert out.parameters[0]["gamma"] == pytest.approx(0.3) and out.parameters[0]["style_weights"] == [0.7, 0.3]


def test_mask_keeps_the_content_outside(style_sd, assets):
    from gen.images import cover_resize, load_image

    mask = Image.new("L", Image.open(CONTENT).size, 0)
    mask.paste(255, (0, 0, mask.width // 2, mask.height))
    out = style_sd(CONTENT, STYLE, num_inference_steps=8, size=96, mask=mask)
    content = np.asarray(cover_resize(load_image(CONTENT), 96, 64))
    result = np.asarray(out.images[0])
    assert np.array_equal(result[:, 60:], content[:, 60:])
    assert not np.array_equal(result[:, :40], content[:, :40])


BAD = [
    (dict(gamma=1.2), "gamma (query preservation) must be between 0 and 1"),
    (dict(gamma=-0.1), "gamma (query preservation) must be between 0 and 1"),
    (dict(temperature=0.0), "temperature must be a positive number"),
    (dict(temperature=float("nan")), "temperature must be a positive number"),
    (dict(layers=[]), "layers: name at least one self-attention layer or a layer set"),
    (dict(layers=["up_blocks.9.attn1"]), "unknown attention layer 'up_blocks.9.attn1'"),
    (dict(layers=["up_blocks.1.attentions.0.transformer_blocks.0.attn2"]), "is a cross-attention layer"),
    (dict(mask=Image.new("L", (10, 10))), "the mask must have the content image's size"),
    (dict(gamma=0.5, strength=0.5), "either gamma or strength"),
    (dict(memory="tiny"), "memory mode must be one of"),
]


@pytest.mark.parametrize("kwargs,message", BAD, ids=[m for _, m in BAD])
def test_bad_settings_are_specific_errors(style_sd, assets, kwargs, message):
    with pytest.raises(GenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        style_sd(CONTENT, STYLE, num_inference_steps=2, size=64, **kwargs)


def test_trajectory_round_trips_through_the_cache(tmp_path):
    cache = InversionCache(tmp_path, max_bytes=10_000)
    trajectory = Trajectory((9, 5, 1), torch.randn(3, 4, 8, 8), torch.randn(4, 8, 8))
    cache.put("abc123", trajectory)
    loaded = cache.get("abc123")
    assert loaded.timesteps == (9, 5, 1) and torch.equal(loaded.inputs, trajectory.inputs)
    for i in range(5):  # 5 more entries of ~3.7 kB each: the cap keeps only the newest two
        cache.put(f"k{i}", trajectory)
    assert len(cache.entries()) == 2 and cache.get("abc123") is None
    (tmp_path / "broken.safetensors").write_bytes(b"junk")
    assert cache.get("broken") is None and not (tmp_path / "broken.safetensors").exists()
    with pytest.raises(ValueError):
        cache.get("../etc/passwd")
