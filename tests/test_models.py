"""Presets, loading through from_pretrained, and the offline errors."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from gen.errors import GenError, ModelNotAvailable
from gen.loading import choose_device, choose_dtype
from gen.models import PRESETS, load_pipeline, resolve_model
from gen.tiny_models import build_arch_unet, tiny_preset_path


def test_tiny_preset_is_saved_once_and_loaded_through_from_pretrained(tiny_sd):
    folder = tiny_preset_path("tiny-sd")
    assert (folder / "model_index.json").is_file()
    weights = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = dict(tiny_sd.pipe.unet.state_dict())
    assert weights.keys() == loaded.keys()
    assert all(torch.equal(weights[k], loaded[k]) for k in weights)
    stamp = os.stat(folder / "model_index.json").st_mtime_ns
    assert tiny_preset_path("tiny-sd") == folder
    assert os.stat(folder / "model_index.json").st_mtime_ns == stamp  # not rebuilt


def test_tiny_presets_are_deterministic(tmp_path):
    from gen.tiny_models import build_tiny_sd

    a, b = build_tiny_sd().unet.state_dict(), build_tiny_sd().unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_local_folder_gets_family_and_training_size_from_its_config(tiny_sd):
    folder = str(tiny_preset_path("tiny-sdxl"))
    model = load_pipeline(folder)
    assert model.preset.family == "sdxl" and model.preset.train_size == 64
    assert type(model.pipe).__name__ == "StableDiffusionXLPipeline"
    assert load_pipeline(folder, train_size=128).preset.train_size == 128


def test_presets_declare_training_sizes():
    assert {n: PRESETS[n].train_size for n in ("sd15", "sd21", "sd21-base", "sdxl", "tiny-sd", "tiny-sdxl")} == {
        "sd15": 512, "sd21": 768, "sd21-base": 512, "sdxl": 1024, "tiny-sd": 64, "tiny-sdxl": 64}
    assert PRESETS["sd21"].prediction_type == "v_prediction"


def test_unknown_names_and_bad_folders_are_rejected(tmp_path):
    with pytest.raises(GenError, match="unknown model 'nonsense'.*presets: sd15"):
        resolve_model("nonsense")
    with pytest.raises(GenError, match="no model_index.json"):
        resolve_model(str(tmp_path))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not really")
    with pytest.raises(GenError, match="pickled checkpoints are not loaded"):
        resolve_model(str(ckpt))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(GenError, match="is a WanPipeline"):
        resolve_model(str(tmp_path))


def test_hub_model_not_cached_while_offline_names_model_cache_and_alternatives():
    with pytest.raises(ModelNotAvailable) as info:
        load_pipeline("sd15")
    message = str(info.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert os.environ["HF_HOME"] in message  # the cache location
    assert "tiny-sd" in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message


def test_device_and_dtype_choice():
    assert choose_device("cpu").type == "cpu"
    assert choose_dtype("cpu") == torch.float32
    assert choose_dtype("cuda") == torch.float16
    assert choose_dtype("cpu", "bf16") == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(GenError, match="CUDA is not available"):
            choose_device("cuda")
    with pytest.raises(GenError, match="invalid device"):
        choose_device("gpu0")


def test_architecture_preset_has_the_real_sd15_unet_shape():
    unet = build_arch_unet("arch-sd15", device="meta")
    params = sum(p.numel() for p in unet.parameters())
    assert params == 859_520_964  # SD 1.5's UNet parameter count
    assert unet.config.cross_attention_dim == 768 and unet.config.block_out_channels == (320, 640, 1280, 1280)


def test_cached_pipelines_are_listed_from_the_hub_cache_folder(tmp_path, monkeypatch):
    from gen import loading

    hub = tmp_path / "hub"
    for repo, cls in (("models--someone--my-sd", "StableDiffusionPipeline"),
                      ("models--Wan-AI--Wan2.1-T2V-1.3B-Diffusers", "WanPipeline")):
        snapshot = hub / repo / "snapshots" / "abc123"
        snapshot.mkdir(parents=True)
        (snapshot / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    (hub / "models--broken--repo" / "snapshots" / "x").mkdir(parents=True)  # no index: not listed
    monkeypatch.setattr(loading, "hub_cache_dir", lambda: str(hub))
    assert loading.cached_pipelines() == {"someone/my-sd": "StableDiffusionPipeline",
                                         "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": "WanPipeline"}
