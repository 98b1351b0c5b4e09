"""FLUX.1, SD3.5 and Qwen-Image through every face: `gen image` (bad input refused in one line before
loading, a real run and `gen info`), job files and the batch renderer, and back from an output's metadata."""

import json

import numpy as np
import pytest
from PIL import Image

from gen.cli import main
from gen.jobs import ImageJob, job_from_dict, job_from_record
from gen.metadata import read_png_metadata
from gen.errors import GenError
from gen.render import plan_jobs, render

BAD_INPUTS = [
    (["--model", "tiny-flux", "--width", "136"], "--width 136 is not a multiple of 16; nearest valid: 128 or 144"),
    (["--model", "flux-dev", "--height", "1000"], "--height 1000 is not a multiple of 16; nearest valid: 992 or 1008"),
    (["--model", "sd35-large", "--width", "3200"], "--width 3200 is out of range; allowed: 64 to 3072 pixels"),
    (["--model", "flux-dev", "--negative", "blurry"], "a negative prompt on flux-dev needs --true-cfg > 1"),
    (["--model", "flux-schnell", "--guidance", "3.5"], "flux-schnell takes no --guidance"),
    (["--model", "sd35-medium", "--true-cfg", "2"], "--true-cfg is an option of FLUX.1 models"),
    (["--model", "tiny-flux", "--true-cfg", "nan"], "--true-cfg must be between 0 and 50, got nan"),
    (["--model", "qwen-image", "--steps", "1"], "--steps must be at least 2 for qwen-image"),
    (["--model", "qwen-image", "--negative", "fog", "--guidance", "1"], "a negative prompt on qwen-image needs "
                                                                       "--guidance > 1"),
    (["--model", "tiny-sd3", "--train-size", "1000"], "--train-size 1000 is not a multiple of 16"),
    (["--model", "tiny-sd3", "--attention-backend", "xformers"], "--attention-backend xformers is not available for "
                                                                 "tiny-sd3"),
]


@pytest.mark.parametrize("extra, message", BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_bad_image_input_for_transformer_models_is_one_line_before_loading(extra, message, tmp_path, capsys,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["image", "x", "--device", "cpu", "--steps", "2", "--out", "o.png", *extra]
                if "--steps" not in extra else ["image", "x", "--device", "cpu", "--out", "o.png", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]] and "loading" not in err  # nothing loaded
    assert list(tmp_path.iterdir()) == []


def test_style_command_refuses_transformer_models(tmp_path, capsys):
    code = main(["style", "--content", "a.jpg", "--style", "b.jpg", "--model", "flux-dev", "--out",
                 str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "style transfer supports Stable Diffusion 1.x/2.x, SDXL models; --model flux-dev is a " \
                         "FLUX.1 model" in err


def test_image_command_runs_flux_with_true_cfg_and_info_reads_it_back(tmp_path, capsys):
    out = tmp_path / "fox.png"
    assert main(["image", "a red fox", "--model", "tiny-flux", "--width", "144", "--height", "80", "--steps", "2",
                 "--seed", "3", "--negative", "fog", "--true-cfg", "3", "--device", "cpu", "--out", str(out)]) == 0
    assert "(entropy scaling on)" in capsys.readouterr().out
    text, params = read_png_metadata(out)
    assert "CFG scale: 3.0, Distilled CFG Scale: 3.5" in text and "Negative prompt: fog" in text
    # The output's metadata gives back the job that made it (PNG info, "send to tab").
    job = job_from_record(params)
    assert job == ImageJob(prompt="a red fox", model="tiny-flux", negative="fog", width=144, height=80, steps=2,
                           guidance=3.5, true_cfg=3.0, seed=3, entropy_scaling="auto", train_size=128,
                           dtype="fp32", device="cpu")
    assert main(["info", str(out)]) == 0 and '"true_cfg": 3.0' in capsys.readouterr().out


def test_job_files_render_every_transformer_family_as_the_command_does(tmp_path, capsys):
    jobs = [{"kind": "image", "id": "flux", "model": "tiny-flux", "prompt": "a fox", "width": 144, "height": 80,
             "steps": 2, "seed": 1, "negative": "fog", "true_cfg": 2.5},
            {"kind": "image", "id": "sd3", "model": "tiny-sd3", "prompt": "a fox", "width": 208, "height": 112,
             "steps": 2, "seed": 1, "negative": "fog"},
            {"kind": "image", "id": "qwen", "model": "tiny-qwen-image", "prompt": "a fox", "steps": 2, "seed": 1},
            {"kind": "image", "id": "bad", "model": "tiny-flux", "prompt": "a fox", "negative": "fog"}]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(j) for j in jobs[:3]) + "\n")
    summary = render(path, tmp_path / "out")
    assert (summary.done, summary.failed) == (3, 0)
    sizes = {p.stem: Image.open(p).size for p in (tmp_path / "out").glob("*.png")}
    assert sizes == {"flux": (144, 80), "sd3": (208, 112), "qwen": (128, 128)}  # qwen: the training size
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())}
    assert records["flux"]["params"][0]["true_cfg"] == 2.5 and records["sd3"]["params"][0]["family"] == "sd3"
    # The same job from the command line gives the same pixels.
    assert main(["image", "a fox", "--model", "tiny-flux", "--width", "144", "--height", "80", "--steps", "2",
                 "--seed", "1", "--negative", "fog", "--true-cfg", "2.5", "--out", str(tmp_path / "cli.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli.png")), np.asarray(Image.open(tmp_path / "out" / "flux.png")))
    # A bad line is reported by its number and field, and nothing starts.
    path.write_text("\n".join(json.dumps(j) for j in jobs) + "\n")
    _, errors = plan_jobs(path, tmp_path / "out2")
    assert [(e.line, e.message) for e in errors] == [(4, "a negative prompt on tiny-flux needs true_cfg > 1 (its own "
                                                        "guidance is distilled guidance, an input of the model): real "
                                                        "classifier-free guidance, two passes per step")]
    with pytest.raises(GenError, match="1 invalid job"):
        render(path, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_true_cfg_round_trips_in_the_dict_form():
    job = ImageJob(prompt="a fox", model="flux-dev", negative="fog", true_cfg=4.0, width=512, height=1536)
    assert job_from_dict(json.loads(json.dumps(job.to_dict()))) == job
    assert ImageJob.from_dict({"prompt": "x", "true_cfg": " "}, text=True).true_cfg is None  # a blank UI box: off
