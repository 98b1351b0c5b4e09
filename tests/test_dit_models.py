"""FLUX.1, SD3.5 and Qwen-Image as text-to-image models: presets, the family rules checked before
loading, offline tiny models through from_pretrained, from_pipe, odd grid sizes, metadata."""

import json

import numpy as np
import pytest
import torch

from gen.errors import GenError
from gen.metadata import a1111_parameters, png_text_chunks, read_png_metadata
from gen.models import PRESETS, check_image_settings, load_pipeline, resolve_model
from gen.tiny_models import (QWEN_TEMPLATE_PREFIX, arch_transformer_config, build_arch_transformer,
                             build_qwen_tokenizer, build_tiny_flux, tiny_preset_path)

PROMPT = "a red fox in the snow"


def test_dit_presets_declare_training_sizes_and_model_card_defaults():
    facts = {n: (PRESETS[n].family, PRESETS[n].train_size, PRESETS[n].steps, PRESETS[n].guidance_kind)
             for n in ("flux-dev", "flux-schnell", "sd35-medium", "sd35-large", "qwen-image")}
    assert facts == {"flux-dev": ("flux", 1024, 50, "distilled"), "flux-schnell": ("flux", 1024, 4, "none"),
                     "sd35-medium": ("sd3", 1024, 40, "cfg"), "sd35-large": ("sd3", 1024, 28, "cfg"),
                     "qwen-image": ("qwen-image", 1328, 50, "true-cfg")}
    assert PRESETS["flux-schnell"].text_tokens == 256 and PRESETS["sd35-large"].max_side == 3072
    assert PRESETS["qwen-image"].location == "Qwen/Qwen-Image"


@pytest.mark.parametrize("model, settings, message", [
    ("flux-dev", dict(width=1000), "width 1000 is not a multiple of 16; nearest valid: 992 or 1008"),
    ("qwen-image", dict(height=1330), "height 1330 is not a multiple of 16; nearest valid: 1328 or 1344"),
    ("sd35-large", dict(width=3200), "width 3200 is out of range; allowed: 64 to 3072 pixels"),
    ("flux-schnell", dict(guidance=3.5), "flux-schnell takes no guidance .*; leave it unset, got 3.5"),
    ("flux-dev", dict(negative_prompt="blurry"), "a negative prompt on flux-dev needs true_cfg > 1 .*distilled"),
    ("flux-dev", dict(negative_prompt="blurry", true_cfg=1.0), "needs true_cfg > 1"),
    ("sd35-medium", dict(true_cfg=4.0), "true_cfg is an option of FLUX.1 models; sd35-medium's guidance is already "
                                        "classifier-free guidance"),
    ("qwen-image", dict(true_cfg=4.0), "set guidance instead"),
    ("qwen-image", dict(negative_prompt="blurry", guidance=1.0), "a negative prompt on qwen-image needs guidance > 1"),
    ("sd35-large", dict(negative_prompt="blurry", guidance=0.5), "needs guidance > 1"),
    ("qwen-image", dict(steps=1), "steps must be at least 2 for qwen-image"),
    ("flux-dev", dict(true_cfg=float("nan")), "true_cfg must be between 0 and 50"),
    ("flux-dev", dict(guidance=float("inf")), "guidance must be between 0 and 50"),
    ("sd35-large", dict(attention_backend="xformers"), "attention_backend xformers is not available for sd35-large"),
])
def test_bad_settings_are_refused_before_loading(model, settings, message):
    with pytest.raises(GenError, match=message):
        check_image_settings(resolve_model(model), **settings)


def test_good_settings_pass():
    check_image_settings(resolve_model("flux-dev"), 1536, 640, 3.5, "blurry", true_cfg=2.0)
    check_image_settings(resolve_model("flux-schnell"), 512, 512, 0.0, steps=4)
    check_image_settings(resolve_model("sd35-large"), 3072, 1024, 3.5, "blurry")
    check_image_settings(resolve_model("qwen-image"), 1664, 928, 4.0, "blurry", steps=2)
    check_image_settings(resolve_model("org/some-flux-finetune"), 1000, 1000)  # family known once loaded


def test_style_transfer_refuses_transformer_models_before_loading():
    from pipelines import StyleTransferPipeline

    with pytest.raises(GenError, match="style transfer supports Stable Diffusion 1.x/2.x, SDXL models; model flux-dev "
                                       "is a FLUX.1 model"):
        StyleTransferPipeline.from_pretrained("flux-dev", device="cpu")


def test_qwen_tokenizer_gives_the_template_prefix_the_34_tokens_the_pipeline_drops():
    tokenizer = build_qwen_tokenizer()
    assert len(tokenizer(QWEN_TEMPLATE_PREFIX).input_ids) == 34
    ids = tokenizer(QWEN_TEMPLATE_PREFIX + "a red fox").input_ids
    assert tokenizer.convert_ids_to_tokens(ids)[:4] == ["<|im_start|>", "system", "Ċ", "Describe"]
    assert tokenizer.decode(ids) == QWEN_TEMPLATE_PREFIX + "a red fox"  # any text, byte by byte at worst


@pytest.mark.parametrize("fixture, classes", [
    ("tiny_flux", ("FluxPipeline", "FluxTransformer2DModel", "T5Tokenizer")),
    ("tiny_sd3", ("StableDiffusion3Pipeline", "SD3Transformer2DModel", "T5Tokenizer")),
    ("tiny_qwen_image", ("QwenImagePipeline", "QwenImageTransformer2DModel", "Qwen2Tokenizer")),
])
def test_tiny_dit_presets_are_saved_and_loaded_through_from_pretrained(fixture, classes, request):
    pipe = request.getfixturevalue(fixture)
    folder = tiny_preset_path(pipe.model.preset.name)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == classes[0] == type(pipe.pipe).__name__
    assert index["transformer"] == ["diffusers", classes[1]]
    assert classes[2] in {entry[1] for key, entry in index.items() if key.startswith("tokenizer")}
    assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))  # safetensors only
    assert pipe.model.preset.train_size == 128 and pipe.model.preset.is_random


def test_local_schnell_shaped_folder_gets_its_rules_from_its_config(tmp_path):
    folder = tmp_path / "schnell-like"
    build_tiny_flux(guidance_embeds=False).save_pretrained(folder, safe_serialization=True)
    preset = resolve_model(str(folder))  # nothing loaded yet
    assert (preset.family, preset.guidance_kind, preset.steps, preset.guidance, preset.text_tokens) == (
        "flux", "none", 4, 0.0, 256)
    with pytest.raises(GenError, match="takes no guidance"):
        check_image_settings(preset, guidance=2.0)
    model = load_pipeline(str(folder), device="cpu", train_size=128)
    assert model.preset.guidance_kind == "none" and model.preset.train_size == 128
    from pipelines import TextToImagePipeline

    out = TextToImagePipeline(model)(PROMPT, width=144, height=80, num_inference_steps=2, seed=1)
    assert out.images[0].size == (144, 80) and out.parameters[0]["guidance_kind"] == "none"


def test_from_pipe_reuses_a_loaded_diffusers_pipeline(tiny_flux):
    from diffusers import DiffusionPipeline

    from pipelines import TextToImagePipeline

    stock = DiffusionPipeline.from_pretrained(tiny_preset_path("tiny-flux"), local_files_only=True)
    wrapped = TextToImagePipeline.from_pipe(stock)
    assert wrapped.pipe is stock and wrapped.model.preset.name == "tiny-flux"  # a preset's folder: its defaults
    a = wrapped(PROMPT, width=144, height=80, num_inference_steps=2, seed=5)
    b = tiny_flux(PROMPT, width=144, height=80, num_inference_steps=2, seed=5)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))


def test_odd_grid_sizes_are_deterministic_per_seed(tiny_sd3):
    # 208x112 px -> a 13x7 token grid: odd in both directions (position embedding crops, RoPE positions).
    run = lambda seed: tiny_sd3(PROMPT, negative_prompt="blurry", width=208, height=112, num_inference_steps=2,
                                seed=seed, entropy_scaling="on")
    a, b, c = run(4), run(4), run(5)
    assert a.images[0].size == (208, 112) and a.parameters[0]["entropy_scaling_active"]
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


def test_flux_true_cfg_runs_the_negative_prompt_and_metadata_round_trips(tiny_flux, tmp_path):
    plain = tiny_flux(PROMPT, width=144, height=80, num_inference_steps=2, seed=2)
    out = tiny_flux(PROMPT, negative_prompt="blurry", true_cfg=3.0, width=144, height=80, num_inference_steps=2,
                    seed=2)
    assert not np.array_equal(np.asarray(out.images[0]), np.asarray(plain.images[0]))
    params = out.parameters[0]
    assert (params["family"], params["guidance_kind"], params["true_cfg"], params["guidance"]) == (
        "flux", "distilled", 3.0, 3.5)
    path = tmp_path / "fox.png"
    out.images[0].save(path, pnginfo=png_text_chunks(params))
    text, loaded = read_png_metadata(path)
    assert loaded == json.loads(json.dumps(params, allow_nan=False))
    assert "CFG scale: 3.0, Distilled CFG Scale: 3.5" in text and "Negative prompt: blurry" in text
    assert "CFG scale: 1, Distilled CFG Scale: 3.5" in a1111_parameters(plain.parameters[0])


def test_architecture_transformers_have_the_real_sizes():
    # Built on the meta device: the real configurations, no memory. Parameter counts as published.
    billions = {name: sum(p.numel() for p in build_arch_transformer(name, device="meta").parameters()) / 1e9
                for name in ("arch-flux-dev", "arch-sd35-large", "arch-qwen-image")}
    assert billions == pytest.approx({"arch-flux-dev": 11.9, "arch-sd35-large": 8.06, "arch-qwen-image": 20.4}, abs=0.05)
    _, reduced = arch_transformer_config("arch-flux-dev", depth=1)
    assert (reduced["num_layers"], reduced["num_single_layers"], reduced["num_attention_heads"]) == (1, 2, 24)
    _, medium = arch_transformer_config("arch-sd35-medium", depth=2)
    assert medium["dual_attention_layers"] == (0, 1)
    with pytest.raises(GenError, match="not an architecture transformer"):
        arch_transformer_config("arch-flux-pro")


def test_every_denoiser_dtype_is_named():
    from gen.loading import dtype_name

    assert dtype_name(torch.float64) == "fp64"
