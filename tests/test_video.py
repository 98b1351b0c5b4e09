"""Text-to-video with radial attention on the tiny Wan model: warm-up, equivalence, outputs, errors."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from gen.attention.video import RadialStats
from gen.cli import main
from gen.errors import GenError
from gen.tiny_models import tiny_preset_path
from gen.video_io import read_mp4_info, read_mp4_metadata, read_video
from gen.video_models import video_layout, video_preset


def _load(name):
    from pipelines import TextToVideoPipeline

    pipe = TextToVideoPipeline.from_pretrained(name, device="cpu")
    pipe.pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny_wan():
    return _load("tiny-wan")


@pytest.fixture(scope="module")
def tiny_hunyuan():
    return _load("tiny-hunyuan")


def test_dense_warm_up_switches_at_the_right_layer_and_step(tiny_wan):
    trace = []
    tiny_wan("a boat", frames=5, width=64, height=64, num_inference_steps=4, guidance_scale=5.0, seed=1,
             dense_layers=1, dense_steps=2, dense_final_steps=1, stats=RadialStats(trace=trace))
    expected = {(step, block, "dense" if block < 1 or step < 2 or step >= 3 else "radial")
                for step in range(4) for block in range(3)}
    assert set(trace) == expected
    assert len(trace) == 4 * 3 * 2  # classifier-free guidance: two transformer calls per step


@pytest.mark.parametrize("model", ["tiny_wan", "tiny_hunyuan"])
def test_radial_equals_dense_when_the_mask_keeps_everything(model, request):
    # 5 pixel frames → 2 latent frames: every frame pair is within distance 1.
    pipe = request.getfixturevalue(model)
    dense = pipe("a boat", frames=5, width=64, height=64, num_inference_steps=3, seed=2, attention="dense")
    for granularity in ("block", "token"):
        radial = pipe("a boat", frames=5, width=64, height=64, num_inference_steps=3, seed=2,
                      dense_layers=0, dense_steps=0, granularity=granularity)
        assert radial.stats["radial_calls"] > 0
        assert np.array_equal(radial.frames, dense.frames)


@pytest.mark.parametrize("model", ["tiny_wan", "tiny_hunyuan"])
def test_radial_changes_the_video_when_the_mask_drops_frame_pairs(model, request):
    pipe = request.getfixturevalue(model)
    dense = pipe("a boat", frames=17, width=64, height=64, num_inference_steps=2, seed=3, attention="dense")
    radial = pipe("a boat", frames=17, width=64, height=64, num_inference_steps=2, seed=3, dense_layers=0,
                  dense_steps=0, granularity="token")
    assert radial.frames.shape == dense.frames.shape == (17, 64, 64, 3)
    assert 0 < np.abs(radial.frames - dense.frames).max() < 0.5


@pytest.mark.parametrize("kwargs,message", [
    (dict(frames=16), "takes 4k+1 frames; 16 is not one: nearest valid 13 or 17"),
    (dict(width=70), "width 70 is not a multiple of 16; nearest valid: 64 or 80"),
    (dict(height=8), "height 8 is out of range"),
    (dict(attention="sparse"), "attention must be one of radial, dense"),
    (dict(granularity="pixel"), "mask granularity must be one of"),
    (dict(decay=0), "decay must be > 0"),
    (dict(dense_steps=-1), "dense_steps must be >= 0"),
])
def test_bad_video_settings(tiny_wan, kwargs, message):
    with pytest.raises(GenError, match=re.escape(message)):
        tiny_wan("a boat", num_inference_steps=1, **kwargs)


def test_video_command_writes_browser_mp4_sidecar_and_frames(tmp_path, capsys):
    out = tmp_path / "v.mp4"
    assert main(["video", "a boat", "--model", "tiny-wan", "--frames", "17", "--width", "64", "--height", "48",
                 "--steps", "2", "--seed", "5", "--png-frames", "--device", "cpu", "--out", str(out)]) == 0
    info = read_mp4_info(out)
    assert (info["frames"], info["width"], info["height"]) == (17, 64, 48) and info["codec"].startswith("h264")
    params = json.loads((tmp_path / "v.json").read_text())
    assert params["frames"] == 17 and params["seed"] == 5 and params["attention"] == "radial"
    frames = sorted((tmp_path / "v_frames").iterdir())
    assert len(frames) == 17 and Image.open(frames[0]).size == (64, 48)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert '"latent_frames": 5' in capsys.readouterr().out
    assert main(["video", "x", "--frames", "5", "--width", "64", "--height", "48", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"kind": "image"}')
    assert main(["info", str(tmp_path / "other.json")]) == 2
    assert "is not a gen video sidecar" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "lost.mp4")]) == 2
    assert "lost.mp4 has no parameter sidecar (lost.json not found)" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--frames", "80"], "takes 4k+1 frames; 80 is not one: nearest valid 77 or 81"),
    (["--width", "830"], "width 830 is not a multiple of 16; nearest valid: 816 or 832"),
    (["--out", "v.gif"], "must end in .mp4"),
    (["--decay", "-1"], "--decay must be > 0"),
    (["--model", "wan9"], "unknown video model 'wan9'"),
])
def test_bad_video_command_input(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code = main(["video", "x", "--model", "tiny-wan", "--frames", "17", "--width", "64", "--height", "64",
                 "--out", "v.mp4", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_mask_command_reports_layout_density_and_draws(tmp_path, capsys):
    png = tmp_path / "mask.png"
    assert main(["mask", "--model", "wan2.1-1.3b", "--frames", "81", "--width", "832", "--height", "480",
                 "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "21 latent frames x 1560 per frame (30x52) = 32760 video" in out
    assert "kept-block density (video x video): 33.8 %" in out and "saved" in out
    assert Image.open(png).size[0] >= 512
    assert main(["mask", "--model", "hunyuan-video", "--frames", "117", "--width", "1280", "--height", "768"]) == 0
    assert "256 text" in capsys.readouterr().out
    assert main(["mask", "--frames", "80"]) == 2
    assert "nearest valid 77 or 81" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    """A LoRA for tiny-wan's attention projections, made with peft and saved as diffusers does."""
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = _load("tiny-wan").pipe.transformer
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                       init_lora_weights=False))
    folder = tmp_path_factory.mktemp("lora")
    WanPipeline.save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(transformer),
                                  safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


def test_lora_changes_the_video_and_scale_zero_does_not(lora_file):
    def run(*loras):
        pipe = _load("tiny-wan")
        pipe.load_loras(list(loras))
        return pipe("a boat", frames=5, width=64, height=64, num_inference_steps=2, seed=4, dense_layers=0,
                    dense_steps=0)

    base, with_lora, zero = run(), run((str(lora_file), 1.0)), run((str(lora_file), 0.0))
    assert not np.array_equal(base.frames, with_lora.frames)
    assert np.array_equal(base.frames, zero.frames)
    assert with_lora.parameters["loras"] == [["pytorch_lora_weights.safetensors", 1.0]]


def test_lora_input_errors(tmp_path, capsys, lora_file):
    pickled = tmp_path / "style.bin"
    pickled.write_bytes(b"x")
    for spec, message in ((str(pickled), "only .safetensors files are loaded"),
                          (str(tmp_path / "none.safetensors") + ":0.5", "does not exist")):
        code = main(["video", "x", "--frames", "5", "--width", "64", "--height", "64", "--lora", spec,
                     "--out", str(tmp_path / "v.mp4")])
        assert code == 2 and message in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    from safetensors.torch import save_file
    import torch

    save_file({"unrelated.weight": torch.zeros(2, 2)}, str(junk))
    code = main(["video", "x", "--frames", "5", "--width", "64", "--height", "64", "--steps", "1", "--lora",
                 str(junk), "--device", "cpu", "--out", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "junk.safetensors" in err and "Traceback" not in err
    assert not (tmp_path / "v.mp4").exists()


def test_wan22_two_transformers_both_run_radial():
    """Wan2.2 A14B switches from a high-noise to a low-noise transformer mid-way; both get processors."""
    import copy

    from diffusers import WanPipeline

    from gen.video_models import VIDEO_PRESETS
    from pipelines import TextToVideoPipeline

    base = _load("tiny-wan")
    pipe = WanPipeline(tokenizer=base.pipe.tokenizer, text_encoder=base.pipe.text_encoder, vae=base.pipe.vae,
                       scheduler=base.pipe.scheduler, transformer=base.pipe.transformer,
                       transformer_2=copy.deepcopy(base.pipe.transformer), boundary_ratio=0.5)
    pipe.set_progress_bar_config(disable=True)
    video = TextToVideoPipeline(pipe, VIDEO_PRESETS["tiny-wan"], base.device, base.dtype)
    seen = []
    hooks = [t.register_forward_pre_hook(lambda m, a, i=i: seen.append(i)) for i, t in enumerate(video.transformers())]
    trace = []
    video("a boat", frames=5, width=64, height=64, num_inference_steps=4, guidance_scale=1.0, seed=1,
          dense_layers=0, dense_steps=0, stats=RadialStats(trace=trace))
    for hook in hooks:
        hook.remove()
    assert set(seen) == {0, 1}  # both experts ran
    assert len(trace) == 4 * 3 and {kind for *_, kind in trace} == {"radial"}


def test_a_local_diffusers_folder_runs_like_the_preset_it_holds(tmp_path, capsys):
    folder = tiny_preset_path("tiny-wan")  # a saved WanPipeline folder, as a user's fine-tune would be
    derived, preset = video_preset(str(folder)), video_preset("tiny-wan")
    assert (derived.source, derived.flavour, derived.repo_id) == ("local", "wan", str(folder))
    assert (derived.spatial_ratio, derived.temporal_ratio, derived.patch) == (8, 4, (1, 2, 2))
    assert video_layout(derived, 17, 64, 48) == video_layout(preset, 17, 64, 48)
    hunyuan = video_preset(str(tiny_preset_path("tiny-hunyuan")))
    assert (hunyuan.flavour, hunyuan.patch, hunyuan.dense_layers) == ("hunyuan", (1, 2, 2), 0)
    settings = ["--frames", "5", "--width", "64", "--height", "48", "--steps", "2", "--guidance", "5",
                "--dense-layers", "1", "--dense-steps", "1", "--decay", "0.2", "--seed", "3", "--device", "cpu"]
    assert main(["video", "waves", "--model", "tiny-wan", *settings, "--out", str(tmp_path / "a.mp4")]) == 0
    assert main(["video", "waves", "--model", str(folder), *settings, "--out", str(tmp_path / "b.mp4")]) == 0
    frames = [np.stack(read_video(tmp_path / name, 5)) for name in ("a.mp4", "b.mp4")]
    assert np.array_equal(*frames)  # the same video; the files differ in the parameters they carry (model name)
    assert json.loads((tmp_path / "b.json").read_text())["model"] == read_mp4_metadata(tmp_path / "b.mp4")["model"] \
        == str(folder)


def test_video_models_that_are_not_wan_or_hunyuan_or_not_here_are_refused(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["video", "x", "--model", str(tiny_preset_path("tiny-sd")), "--frames", "5"]) == 2
    assert "is a StableDiffusionPipeline; video supports WanPipeline, WanImageToVideoPipeline" in capsys.readouterr().err
    assert main(["mask", "--model", "someone/wan-finetune"]) == 2
    err = capsys.readouterr().err
    assert "model_index.json is not in the Hugging Face cache" in err and "HF_HUB_OFFLINE is set" in err
