"""Radial attention on every Wan and HunyuanVideo pipeline kind, on the tiny presets: image-to-video (Wan2.1
with a CLIP image encoder, Wan2.2 with two experts and a last frame, Wan2.2-TI2V-5B), video-to-video,
HunyuanVideo-I2V, HunyuanVideo 1.5 text- and image-to-video; and on stock diffusers pipelines.

Five pixel frames are two latent frames, where the radial mask keeps everything: radial attention must then
equal dense attention exactly, with no compiled kernel needed (the kernel itself is tested in test_radial.py).
"""

import dataclasses
import json
import re

import numpy as np
import pytest
from PIL import Image

from gen.attention import attention_layers
from gen.attention.radial import VideoLayout
from gen.attention.video import HOOK_NAME, RadialStats, radial_attention
from gen.errors import GenError
from gen.tiny_models import tiny_preset_path
from gen.video_models import VIDEO_PRESETS, check_video_inputs, preset_from_configs, video_layout, video_preset

FAST = dict(frames=5, num_inference_steps=2, guidance_scale=1.0, seed=3)


def picture(seed: int, size=(90, 60), mode="RGB") -> Image.Image:
    image = Image.fromarray((np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype(np.uint8))
    return image.convert(mode)


def clip(seed: int, frames=7) -> list[np.ndarray]:
    return [np.asarray(picture(seed + i)) for i in range(frames)]


_LOADED = {}


def load(name):
    """One loaded pipeline per tiny preset for the whole module (each is built once, then from_pretrained)."""
    from pipelines import TextToVideoPipeline

    if name not in _LOADED:
        pipe = TextToVideoPipeline.from_pretrained(name, device="cpu")
        pipe.pipe.set_progress_bar_config(disable=True)
        _LOADED[name] = pipe
    return _LOADED[name]


# (preset, inputs A, inputs B): B differs from A in its image or video; None for text-to-video
KINDS = {
    "wan-i2v": ("tiny-wan-i2v", dict(image=picture(1)), dict(image=picture(2))),
    "wan22-i2v-last-frame": ("tiny-wan22-i2v", dict(image=picture(1), last_image=picture(3)),
                             dict(image=picture(1), last_image=picture(4))),
    "wan-ti2v-image": ("tiny-wan-ti2v", dict(image=picture(1, mode="RGBA")), dict(image=picture(2))),
    "wan-ti2v-text": ("tiny-wan-ti2v", {}, None),
    "wan-v2v": ("tiny-wan", dict(video=clip(10), strength=0.5, num_inference_steps=4),  # runs the last 2 of 4
                dict(video=clip(20), strength=0.5, num_inference_steps=4)),
    "hunyuan-i2v": ("tiny-hunyuan-i2v", dict(image=picture(1)), dict(image=picture(2))),
    "hunyuan15-t2v": ("tiny-hunyuan15", {}, None),
    "hunyuan15-i2v": ("tiny-hunyuan15-i2v", dict(image=picture(1, size=(64, 64))), dict(image=picture(2, (64, 64)))),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_radial_on_every_pipeline_kind(kind):
    name, inputs, other = KINDS[kind]
    pipe = load(name)
    stats = RadialStats(trace=[])
    radial = pipe("a boat", dense_layers=1, dense_steps=1, stats=stats, **{**FAST, **inputs})
    trace = stats.trace
    p = radial.parameters
    blocks = 3 if name.startswith("tiny-wan") else 2 if "15" in name else 3
    steps = 2
    # dense warm-up switches at the right layer and step (the step read from the pipeline, also for 1.5)
    assert set(trace) == {(s, b, "dense" if b < 1 or s < 1 else "radial") for s in range(steps) for b in range(blocks)}
    assert len(trace) == steps * blocks
    # the layout the processors saw is the one `gen mask` computes for this preset
    expected = video_layout(pipe.preset, 5, p["width"], p["height"], p["decay"])
    assert stats.layouts == {dataclasses.replace(expected, text_tokens=stats.layouts.copy().pop().text_tokens)}
    # where the mask keeps everything (2 latent frames), radial equals dense; same inputs and seed, same video
    dense = pipe("a boat", attention="dense", **{**FAST, **inputs})
    assert radial.stats["radial_calls"] > 0 and dense.stats["radial_calls"] == 0
    if name.startswith("tiny-wan"):
        assert np.array_equal(radial.frames, dense.frames)
    else:  # the stock processor hides the text padding through the dispatcher, gen through SDPA's mask
        assert np.allclose(radial.frames, dense.frames, atol=1e-5)
    assert np.array_equal(pipe("a boat", attention="dense", **{**FAST, **inputs}).frames, dense.frames)
    assert radial.frames.shape == (5, p["height"], p["width"], 3)
    assert p["mode"] == {"wan-v2v": "video-to-video", "wan22-i2v-last-frame": "first-last-frame-to-video"}.get(
        kind, "image-to-video" if inputs else "text-to-video")
    if other is not None:  # a different image (or video) gives a different video
        changed = pipe("a boat", dense_layers=1, dense_steps=1, **{**FAST, **other})
        assert not np.array_equal(changed.frames, radial.frames)


@pytest.mark.parametrize("name", ["tiny-hunyuan", "tiny-hunyuan-i2v", "tiny-hunyuan15"])
def test_text_tokens_the_processors_see_match_the_presets(name):
    """HunyuanVideo: the prompt (256); -I2V joins 576 / 4 image tokens and the cropped prompt (396); 1.5 image,
    ByT5 and MLLM tokens (1985)."""
    pipe, stats = load(name), RadialStats()
    inputs = dict(image=picture(1)) if pipe.preset.image == "required" else {}
    pipe("a boat", dense_layers=0, dense_steps=0, frames=5, num_inference_steps=1, guidance_scale=1.0, stats=stats,
         **inputs)
    assert {layout.text_tokens for layout in stats.layouts} == {pipe.preset.text_tokens}


def test_wan22_both_experts_run_radial():
    pipe = load("tiny-wan22-i2v")
    calls = {0: 0, 1: 0}
    hooks = [t.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, t in enumerate(pipe.transformers())]
    try:
        out = pipe("a boat", dense_layers=0, dense_steps=0, image=picture(1), **FAST)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls[0] > 0 and calls[1] > 0 and out.stats["dense_calls"] == 0


@pytest.mark.parametrize("name", ["tiny-wan-i2v", "tiny-wan22-i2v", "tiny-hunyuan-i2v", "tiny-hunyuan15-i2v"])
def test_radial_processors_sit_on_self_attention_only(name):
    stock_pipe = load(name).pipe
    transformers = [t for t in (stock_pipe.transformer, getattr(stock_pipe, "transformer_2", None)) if t is not None]
    stock = [{n: m.processor for n, m in attention_layers(t).items()} for t in transformers]
    with radial_attention(stock_pipe, dense_layers=0, dense_steps=0) as radial:
        changed = [{n for n, m in attention_layers(t).items() if m.processor is not stock[i][n]}
                   for i, t in enumerate(transformers)]
        installed = radial.layer_names
    for transformer, names in zip(transformers, changed):
        if name.startswith("tiny-wan"):
            assert names == {f"blocks.{i}.attn1" for i in range(len(transformer.blocks))}
        else:
            assert names == {n for n in attention_layers(transformer) if "refiner" not in n and n.endswith(".attn")}
    if name == "tiny-wan-i2v":  # the image-context branch (CLIP features via add_k_proj) keeps the stock processor
        assert transformers[0].blocks[0].attn2.add_k_proj is not None and "blocks.0.attn2" not in changed[0]
    assert len(installed) == sum(len(names) for names in changed)
    for i, transformer in enumerate(transformers):
        assert all(m.processor is stock[i][n] for n, m in attention_layers(transformer).items())


def test_stock_pipeline_context_keeps_callbacks_and_restores_everything():
    import torch

    pipe = load("tiny-wan-i2v").pipe
    image = picture(1).resize((64, 64))
    call = dict(image=image, prompt="a boat", height=64, width=64, num_frames=5, num_inference_steps=2,
                guidance_scale=1.0, output_type="np")
    before = pipe(**call, generator=torch.Generator().manual_seed(0)).frames[0]
    seen, trace = [], []

    def callback(p, index, timestep, kwargs):
        seen.append(index)
        return kwargs

    with radial_attention(pipe, dense_layers=1, dense_steps=1, stats=RadialStats(trace=trace)) as radial:
        inside = pipe(**call, generator=torch.Generator().manual_seed(0), callback_on_step_end=callback).frames[0]
        assert pipe.transformer._diffusers_hook.get_hook(HOOK_NAME) is not None
    after = pipe(**call, generator=torch.Generator().manual_seed(0)).frames[0]
    assert seen == [0, 1]  # the user's step callback is the user's
    assert {(s, b) for s, b, kind in trace if kind == "radial"} == {(1, 1), (1, 2)}
    assert radial.stats.radial_calls == 2
    assert np.array_equal(before, inside) and np.array_equal(before, after)
    assert pipe.transformer._diffusers_hook.get_hook(HOOK_NAME) is None
    with pytest.raises(ValueError, match="already installed"):
        with radial_attention(pipe), radial_attention(pipe):
            pass
    assert pipe.transformer._diffusers_hook.get_hook(HOOK_NAME) is None


def test_video_to_video_counts_the_steps_it_runs():
    """strength 0.5 of 6 steps runs the last 3: warm-up and final dense steps count from the first step run."""
    from diffusers import WanVideoToVideoPipeline

    stock = WanVideoToVideoPipeline.from_pipe(load("tiny-wan").pipe)
    stock.set_progress_bar_config(disable=True)
    frames = [Image.fromarray(f).resize((64, 64)) for f in clip(10, frames=5)]
    trace = []
    with radial_attention(stock, dense_layers=0, dense_steps=1, dense_final_steps=1, stats=RadialStats(trace=trace)):
        stock(video=frames, prompt="a boat", height=64, width=64, num_inference_steps=6, strength=0.5,
              guidance_scale=1.0, output_type="np")
    assert {(s, kind) for s, _, kind in trace} == {(0, "dense"), (1, "radial"), (2, "dense")}


def test_from_pipe_reuses_the_loaded_components():
    from pipelines import TextToVideoPipeline

    loaded = load("tiny-wan")
    wrapped = TextToVideoPipeline.from_pipe(loaded.pipe)
    assert wrapped.pipe is loaded.pipe and wrapped.transformers()[0] is loaded.transformers()[0]
    assert (wrapped.preset.source, wrapped.preset.flavour, wrapped.preset.video) == ("pipe", "wan", "optional")
    settings = dict(FAST, width=64, height=64, dense_layers=0, dense_steps=0, decay=0.2)
    assert np.array_equal(wrapped("waves", **settings).frames, loaded("waves", **settings).frames)


def test_hunyuan15_guidance_goes_through_a_guider_that_is_put_back():
    pipe = load("tiny-hunyuan15")
    guider = pipe.pipe.guider
    out = pipe("a boat", frames=5, num_inference_steps=1, guidance_scale=3.0, seed=1)
    assert pipe.pipe.guider is guider and out.parameters["guidance"] == 3.0


# ----------------------------------------------------------------------------- layouts and presets


def test_ti2v_5b_layout_at_its_default_size_is_the_hand_computed_one():
    preset = VIDEO_PRESETS["wan2.2-ti2v-5b"]
    # 121 frames → 1 + 120 / 4 = 31 latent frames; 16× VAE then 2×2 patches: (704 / 32) × (1280 / 32) = 22 × 40
    assert video_layout(preset, preset.frames, preset.width, preset.height) == VideoLayout(31, 22 * 40, 0, "wan", 0.8)
    assert preset.size_multiple == 32 and video_layout(VIDEO_PRESETS["wan2.1-1.3b"], 121, 1280, 704).tokens_per_frame \
        == 44 * 80


@pytest.mark.parametrize("name", ["tiny-wan-i2v", "tiny-wan22-i2v", "tiny-wan-ti2v", "tiny-hunyuan-i2v",
                                  "tiny-hunyuan15", "tiny-hunyuan15-i2v"])
def test_a_saved_folder_gives_its_preset_facts(name):
    """Local folders (and hub ids) are read like the presets: layout facts and inputs from their configs."""
    derived, preset = video_preset(str(tiny_preset_path(name))), VIDEO_PRESETS[name]
    facts = ("flavour", "pipeline", "image", "last_image", "video", "bucket", "spatial_ratio", "temporal_ratio",
             "patch", "text_tokens", "extra_frames")
    assert {f: getattr(derived, f) for f in facts} == {f: getattr(preset, f) for f in facts}
    assert derived.source == "local"


def test_hunyuan_i2v_33ch_generates_four_more_frames_and_drops_them():
    preset = preset_from_configs("hy-33ch", None, "local", "HunyuanVideoImageToVideoPipeline", {},
                                 {"spatial_compression_ratio": 8, "temporal_compression_ratio": 4},
                                 {"patch_size": 2, "patch_size_t": 1, "image_condition_type": "latent_concat"})
    assert (preset.extra_frames, preset.text_tokens) == (4, 576 // 2 + 252)
    assert video_layout(preset, 129, 1280, 720).frames == 1 + (129 + 4 - 1) // 4


def test_mask_command_knows_every_preset(capsys):
    from gen.cli import main

    for name, preset in VIDEO_PRESETS.items():
        assert main(["mask", "--model", name, "--frames", "33"]) == 0, name
        out = capsys.readouterr().out
        layout = video_layout(preset, 33, preset.width, preset.height)
        assert f"= {layout.video_tokens} video" in out and (f"+ {layout.text_tokens} text" in out) == bool(
            layout.text_tokens)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name,given,message", [
    ("hunyuan-video", dict(image=True), "hunyuan-video takes no image; models that do: wan2.1-i2v-480p"),
    ("wan2.1-i2v-480p", {}, "wan2.1-i2v-480p needs a first-frame image (image)"),
    ("wan2.1-flf2v-720p", dict(image=True), "needs a last-frame image (last_image)"),
    ("wan2.1-i2v-480p", dict(image=True, last_image=True), "takes no last_image; models that do: wan2.1-flf2v-720p"),
    ("wan2.2-i2v-a14b", dict(last_image=True), "last_image needs a first image too"),
    ("wan2.2-a14b", dict(video=True), "wan2.2-a14b takes no video; models that do: wan2.1-1.3b"),
    ("wan2.2-ti2v-5b", dict(image=True, video=True), "video and an input image cannot both be given"),
    ("wan2.1-1.3b", dict(strength=0.5), "strength applies to video-to-video only"),
    ("wan2.1-1.3b", dict(video=True, strength=1.5), "strength must be > 0 and <= 1, got 1.5"),
    ("wan2.1-1.3b", dict(video=True, strength=float("nan")), "strength must be > 0 and <= 1, got nan"),
    ("wan2.1-1.3b", dict(video=True, strength=0.01, steps=50), "strength 0.01 with 50 steps runs no denoising step"),
    ("hunyuan-video-1.5-i2v", dict(image=True, size_given=True), "takes its output size from the input image"),
])
def test_inputs_a_model_cannot_take_are_refused(name, given, message):
    with pytest.raises(GenError, match=re.escape(message)):
        check_video_inputs(VIDEO_PRESETS[name], **given)


def test_unreadable_inputs_and_short_videos_are_refused_before_generating(tmp_path):
    from gen.video_io import write_mp4

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    short = tmp_path / "short.mp4"
    write_mp4(short, np.stack(clip(30, frames=3)).astype(np.float32) / 255)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    pipe = load("tiny-wan")
    for inputs, message in ((dict(video=str(short)), "short.mp4 has 3 frames; 5 are needed"),
                            (dict(video=str(junk)), "junk.mp4 cannot be read as a video"),
                            (dict(video=str(tmp_path / "none.mp4")), "does not exist"),
                            (dict(video=clip(1, frames=2)), "the input video has 2 frames; 5 are needed")):
        with pytest.raises(GenError, match=re.escape(message)):
            pipe("a boat", **FAST, **inputs)
    with pytest.raises(GenError, match=re.escape("image broken.png is not an image file PIL can read")):
        load("tiny-wan-i2v")("a boat", image=str(broken), **FAST)


@pytest.mark.parametrize("name,defaults", [("tiny-wan", (0.2, 1, 12)), ("tiny-wan22-i2v", (0.8, 1, 11)),
                                           ("tiny-wan-ti2v", (0.8, 1, 11)), ("tiny-hunyuan-i2v", (0.95, 0, 12)),
                                           ("tiny-hunyuan15", (0.95, 0, 12))])
def test_stock_pipelines_get_their_family_defaults(name, defaults):
    with radial_attention(load(name).pipe) as radial:
        assert (radial.config.decay, radial.config.dense_layers, radial.config.dense_steps) == defaults


# ----------------------------------------------------------------------------- command line and job files


@pytest.fixture(scope="module")
def input_files(tmp_path_factory):
    from gen.video_io import write_mp4

    folder = tmp_path_factory.mktemp("inputs")
    picture(1).save(folder / "first.png")
    picture(2, mode="RGBA").save(folder / "last.png")
    write_mp4(folder / "in.mp4", np.stack(clip(40, frames=9)).astype(np.float32) / 255)
    (folder / "broken.png").write_bytes(b"\x89PNG not an image")
    write_mp4(folder / "short.mp4", np.stack(clip(50, frames=3)).astype(np.float32) / 255)
    return folder


def test_image_to_video_command_records_its_input(input_files, tmp_path, capsys):
    from gen.cli import main
    from gen.video_io import file_sha256

    out = tmp_path / "i2v.mp4"
    assert main(["video", "a boat", "--model", "tiny-wan22-i2v", "--image", str(input_files / "first.png"),
                 "--last-image", str(input_files / "last.png"), "--frames", "5", "--steps", "2", "--guidance", "1",
                 "--seed", "2", "--out", str(out)]) == 0
    params = json.loads(out.with_suffix(".json").read_text())
    assert (params["mode"], params["image"], params["last_image"], params["video"]) == (
        "first-last-frame-to-video", "first.png", "last.png", None)
    assert params["input_sha256"] == {"image": file_sha256(input_files / "first.png"),
                                      "last_image": file_sha256(input_files / "last.png")}
    capsys.readouterr()
    assert main(["info", str(out)]) == 0 and '"last_image": "last.png"' in capsys.readouterr().out


def test_job_files_take_inputs_relative_to_the_file(input_files, tmp_path):
    """image, video and strength in a job file; relative paths are relative to the job file's folder."""
    from gen.render import render
    from gen.video_io import read_mp4_info

    jobs = input_files / "jobs.jsonl"
    common = dict(kind="video", prompt="waves", frames=5, steps=2, guidance=1.0, seed=4)
    jobs.write_text("\n".join(json.dumps(dict(common, **job)) for job in [
        dict(id="from-image", model="tiny-wan-ti2v", image="first.png"),
        dict(id="from-video", model="tiny-wan", video="in.mp4", strength=0.5, steps=4),
    ]) + "\n")
    summary = render(str(jobs), tmp_path / "renders")
    assert (summary.done, summary.failed) == (2, 0)
    image_job = json.loads((tmp_path / "renders" / "from-image.json").read_text())
    video_job = json.loads((tmp_path / "renders" / "from-video.json").read_text())
    assert (image_job["mode"], image_job["image"]) == ("image-to-video", "first.png")
    assert (video_job["mode"], video_job["video"], video_job["strength"]) == ("video-to-video", "in.mp4", 0.5)
    assert read_mp4_info(tmp_path / "renders" / "from-video.mp4")["frames"] == 5


@pytest.mark.parametrize("extra,message", [
    (["--model", "tiny-hunyuan", "--image", "first.png"], "tiny-hunyuan takes no --image; models that do:"),
    (["--model", "tiny-wan-i2v"], "tiny-wan-i2v needs a first-frame image (--image)"),
    (["--model", "tiny-wan-i2v", "--image", "broken.png"], "--image broken.png is not an image file PIL can read"),
    (["--model", "tiny-wan-i2v", "--image", "missing.png"], "--image 'missing.png' does not exist"),
    (["--model", "tiny-wan-i2v", "--image", "first.png", "--last-image", "last.png"], "takes no --last-image"),
    (["--model", "tiny-wan", "--video", "short.mp4"], "--video short.mp4 has 3 frames; 5 are needed"),
    (["--model", "tiny-wan", "--video", "broken.png"], "--video broken.png cannot be read as a video"),
    (["--model", "tiny-wan", "--strength", "0.5"], "--strength applies to video-to-video only"),
    (["--model", "tiny-wan", "--video", "in.mp4", "--strength", "2"], "--strength must be > 0 and <= 1, got 2.0"),
    (["--model", "tiny-wan-i2v", "--image", "first.png", "--frames", "6"], "takes 4k+1 frames; 6 is not one"),
    (["--model", "tiny-wan-ti2v", "--image", "first.png", "--width", "48"], "--width 48 is not a multiple of 32"),
    (["--model", "tiny-hunyuan15-i2v", "--image", "first.png", "--height", "48"],
     "takes its output size from the input image's aspect ratio"),
])
def test_bad_video_inputs_exit_2_and_write_nothing(input_files, tmp_path, monkeypatch, capsys, extra, message):
    from gen.cli import main

    work = tmp_path / "work"
    work.mkdir()
    for name in ("first.png", "last.png", "in.mp4", "broken.png", "short.mp4"):
        (work / name).write_bytes((input_files / name).read_bytes())
    before = sorted(p.name for p in work.iterdir())
    monkeypatch.chdir(work)
    code = main(["video", "x", "--frames", "5", "--steps", "1", "--out", "v.mp4", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in work.iterdir()) == before
