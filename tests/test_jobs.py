"""Typed jobs: the dict form, type checks, errors named per face, Python use, and outputs of 0.1 read back."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gen.cli import build_parser, flag_name, main
from gen.errors import FieldError, GenError, user_message
from gen.jobs import (JOB_TYPES, ImageJob, StyleJob, VideoJob, job_from_dict, job_from_record, plan_job, run_job)
from gen.metadata import read_png_metadata
from gen.render import render
from gen.video_io import read_sidecar

ROOT = Path(__file__).resolve().parent.parent
LEGACY = ROOT / "tests" / "data" / "legacy"  # written by gen 0.1.0 (before typed jobs)

JOBS = [
    ImageJob(prompt="--help", negative="-blurry", width=128, height=64, steps=3, seed=7, batch=2, guidance=6.5),
    StyleJob(content=("a.jpg",), style=("b.jpg", "c.jpg:0.3"), strength=0.8, layers=("up_blocks.*",), size=96),
    VideoJob(prompt="-h", frames=5, width=64, height=48, decay=0.5, lora=("x.safetensors:0.7",), png_frames=True),
]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.kind)
def test_the_dict_form_round_trips_through_json(job):
    data = json.loads(json.dumps(job.to_dict()))
    assert data["kind"] == job.kind and job_from_dict(data) == job
    assert set(data) == {"kind"} | {f.name for f in dataclasses.fields(job)}


def test_text_values_are_parsed_as_the_field_types():
    job = ImageJob.from_dict({"prompt": "a cat", "width": " 128 ", "steps": "", "guidance": "6.5", "batch": "2"},
                             text=True)
    assert (job.width, job.steps, job.guidance, job.batch) == (128, None, 6.5, 2)
    style = StyleJob.from_dict({"content": "a.png", "style": "b.png|c.png:0.5", "preserve_color": "true",
                                "no_cache": "0"}, text=True)
    assert style.style == ("b.png", "c.png:0.5") and style.preserve_color is True and style.no_cache is False
    # JSON numbers given as strings are read as the command line would read them; lists may be one string
    assert ImageJob.from_dict({"prompt": "x", "seed": "7"}).seed == 7
    assert StyleJob.from_dict({"content": "a.png", "style": "b.png"}).content == ("a.png",)
    assert ImageJob(prompt="x", seed=7.0).seed == 7  # an integral float (UI number fields) is a whole number


@pytest.mark.parametrize("data,message", [
    ({"prompt": "x", "width": "wide"}, "width must be a whole number, got 'wide'"),
    ({"prompt": "x", "width": 128.5}, "width must be a whole number, got 128.5"),
    ({"prompt": "x", "steps": True}, "steps must be a number, got True"),
    ({"prompt": "x", "guidance": "lots"}, "guidance must be a number, got 'lots'"),
    ({"prompt": 5}, "prompt must be text, got 5"),
    ({"prompt": "x", "negative": ["a"]}, "negative must be text"),
    ({"prompt": "x", "entropy_scaling": "maybe"}, None),  # a type-correct value: refused by check(), below
    ({"prompt": "x", "colour": "red"}, "unknown field 'colour' for an image job; its fields: prompt, model"),
    ({"width": 64}, "missing prompt (required for an image job)"),
    ({"kind": "video", "prompt": "x"}, "kind 'video' given to an image job"),
])
def test_wrong_types_unknown_and_missing_fields_are_refused_by_name(data, message):
    if message is None:
        with pytest.raises(FieldError, match="entropy_scaling must be one of auto, on, off"):
            ImageJob.from_dict(data).check()
        return
    with pytest.raises(GenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ImageJob.from_dict(data)


def test_style_bools_in_json_must_be_booleans_and_kinds_must_exist():
    with pytest.raises(FieldError, match="preserve_color must be true or false, got 'yes'"):
        StyleJob.from_dict({"content": "a", "style": "b", "preserve_color": "yes"})
    with pytest.raises(GenError, match="kind must be one of image, style, video, got 'painting'"):
        job_from_dict({"kind": "painting"})


def test_one_message_three_faces():
    """A field's error is written once; the command line, job files and the UI each name the field."""
    from app.ui import label_of

    with pytest.raises(FieldError) as error:
        ImageJob(prompt="x", width=100).check()
    assert str(error.value) == "width 100 is not a multiple of 8; nearest valid: 96 or 104"
    assert user_message(error.value, flag_name) == "--width 100 is not a multiple of 8; nearest valid: 96 or 104"
    assert user_message(error.value, label_of) == "Width 100 is not a multiple of 8; nearest valid: 96 or 104"
    with pytest.raises(FieldError) as error:
        VideoJob(prompt="x", dense_final_steps=-1).check()
    assert user_message(error.value, flag_name) == "--dense-final-steps must be >= 0, got -1"


def test_every_job_field_has_its_flag_on_the_command_line():
    """Flag dests are job fields, named by `flag_name`: the command line and job files take the same settings."""
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for kind, job_type in JOB_TYPES.items():
        actions = {a.dest: a for a in commands[kind]._actions if a.dest != "help"}
        assert set(actions) == {f.name for f in dataclasses.fields(job_type)}, kind
        for name, action in actions.items():
            assert (action.option_strings or [name])[-1] == flag_name(name), name


def test_a_job_built_in_python_gives_the_pixels_of_the_same_command(tmp_path, capsys):
    job = ImageJob(prompt="-a fox", negative="-blurry", width=64, height=64, steps=2, seed=11)
    records = run_job(job.replace(out=str(tmp_path / "python.png")))
    assert records[0]["params"]["prompt"] == "-a fox" and records[0]["params"]["negative_prompt"] == "-blurry"
    assert main(["image", "--width", "64", "--height", "64", "--steps", "2", "--seed", "11", "--negative=-blurry",
                 "--out", str(tmp_path / "cli.png"), "--", "-a fox"]) == 0
    rendered = render([job], tmp_path / "batch")
    assert rendered.done == 1
    pixels = [np.asarray(Image.open(p)) for p in (tmp_path / "python.png", tmp_path / "cli.png",
                                                   tmp_path / "batch" / "job-1.png")]
    assert np.array_equal(pixels[0], pixels[1]) and np.array_equal(pixels[0], pixels[2])


def test_render_takes_jobs_by_id_and_refuses_what_it_controls(tmp_path):
    with pytest.raises(GenError, match="1 invalid job"):
        render({"fox": ImageJob(prompt="x", steps=1, out="elsewhere.png")}, tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()
    summary = render({"fox": ImageJob(prompt="x", steps=1, seed=3, width=64, height=64)}, tmp_path / "out")
    assert summary.done == 1 and (tmp_path / "out" / "fox.png").exists()
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    assert job_from_dict(record["job"]) == ImageJob(prompt="x", steps=1, seed=3, width=64, height=64)


def test_planning_fixes_seed_and_outputs_without_loading(tmp_path):
    plan = plan_job(ImageJob(prompt="x", batch=3, out=str(tmp_path / "a.png")))
    assert plan.outputs == [tmp_path / f"a-{plan.job.seed + i}.png" for i in range(3)]
    assert plan.inputs["seeds"] == [plan.job.seed + i for i in range(3)]
    video = plan_job(VideoJob(prompt="x", out=str(tmp_path / "v.mp4")))
    assert (video.job.frames, video.job.width, video.job.height) == (17, 64, 64)  # the model's defaults, filled


# ----------------------------------------------------------------------------- outputs of gen 0.1.0


def test_pngs_and_sidecars_of_0_1_read_back_as_jobs(capsys):
    assert main(["info", str(LEGACY / "image.png")]) == 0
    assert capsys.readouterr().out.startswith("a red fox\nNegative prompt: blurry\nSteps: 2")
    image = job_from_record(read_png_metadata(LEGACY / "image.png")[1])
    assert image == ImageJob(prompt="a red fox", negative="blurry", model="tiny-sd", width=64, height=64, steps=2,
                             guidance=7.5, seed=5, entropy_scaling="auto", train_size=64, device="cpu", dtype="fp32")
    style = job_from_record(read_png_metadata(LEGACY / "style.png")[1])
    assert (style.content, style.style, style.steps, style.size, style.gamma) == (
        ("coffee.jpg",), ("brick.jpg:1",), 2, 64, 0.75)
    video = job_from_record(read_sidecar(LEGACY / "video.json"))
    assert (video.prompt, video.frames, video.width, video.height, video.seed, video.fps) == ("waves", 5, 32, 32, 3, 16)


def test_a_0_1_image_is_reproduced_from_its_metadata(tmp_path):
    job = job_from_record(read_png_metadata(LEGACY / "image.png")[1])
    run_job(job.replace(out=str(tmp_path / "again.png")))
    old, new = (np.asarray(Image.open(p), dtype=int) for p in (LEGACY / "image.png", tmp_path / "again.png"))
    assert np.abs(old - new).max() <= 1  # the same pixels (one level allowed for another CPU's float rounding)


def test_a_render_folder_of_0_1_resumes_without_redoing_anything(tmp_path):
    shutil.copytree(LEGACY / "render", tmp_path / "render")
    for name in ("coffee.jpg", "brick.jpg"):
        shutil.copy(ROOT / "assets" / name, tmp_path / name)
    shutil.copy(LEGACY / "jobs.jsonl", tmp_path / "jobs.jsonl")
    before = (tmp_path / "render" / "manifest.jsonl").read_text()
    summary = render(tmp_path / "jobs.jsonl", tmp_path / "render")
    assert (summary.done, summary.skipped, summary.failed) == (0, 2, 0)
    assert (tmp_path / "render" / "manifest.jsonl").read_text() == before
