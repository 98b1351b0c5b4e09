"""The `gen` command line: a real run, reproducibility, metadata, and every bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gen.cli import main
from gen.metadata import read_png_metadata


def run_gen(*args, env=None):
    return subprocess.run([sys.executable, "-m", "gen", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_image_command_writes_pngs_with_parameters_and_info_reads_them(tmp_path):
    out = tmp_path / "fox.png"
    proc = run_gen("image", "a red fox", "--model", "tiny-sd", "--width", "128", "--height", "64", "--steps", "3",
                   "--seed", "7", "--guidance", "6", "--negative", "blurry", "--batch", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["fox-7.png", "fox-8.png"]
    assert Image.open(tmp_path / "fox-8.png").size == (128, 64)
    assert "image 1/2" in proc.stderr  # the per-step progress bar

    info = run_gen("info", str(tmp_path / "fox-8.png"))
    assert info.returncode == 0
    assert info.stdout.startswith("a red fox\nNegative prompt: blurry\nSteps: 3, Sampler: DDIM, CFG scale: 6.0, Seed: 8")
    assert '"entropy_scaling_active": true' in info.stdout


def test_same_command_and_seed_give_the_same_pixels_and_batch_images_match_their_seed(tmp_path, capsys):
    common = ["image", "a boat", "--model", "tiny-sdxl", "--width", "64", "--height", "96", "--steps", "2"]
    assert main(common + ["--seed", "41", "--batch", "2", "--out", str(tmp_path / "a.png")]) == 0
    assert main(common + ["--seed", "42", "--out", str(tmp_path / "b.png")]) == 0
    assert main(common + ["--seed", "42", "--out", str(tmp_path / "c.png")]) == 0
    b, c = np.asarray(Image.open(tmp_path / "b.png")), np.asarray(Image.open(tmp_path / "c.png"))
    assert np.array_equal(b, c)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a-42.png")), b)
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "a-41.png")), b)


BAD_INPUTS = [
    (["--width", "100"], "width 100 is not a multiple of 8; nearest valid: 96 or 104"),
    (["--height", "70"], "height 70 is not a multiple of 8; nearest valid: 64 or 72"),
    (["--width", "0"], "width 0 is out of range; allowed: 64 to 4096"),
    (["--height", "100000"], "height 100000 is out of range"),
    (["--steps", "0"], "steps must be between 1 and 500, got 0"),
    (["--steps", "-3"], "steps must be between 1 and 500, got -3"),
    (["--guidance", "-1"], "guidance must be between 0 and 50"),
    (["--batch", "0"], "batch must be between 1 and 1000"),
    (["--seed", "-5"], "seed must be between 0 and 4294967295"),
    (["--model", "sd-nonexistent"], "unknown model 'sd-nonexistent'"),
    (["--out", "picture.jpg"], "must end in .png"),
    (["--train-size", "30"], "--train-size 30 is out of range"),
    (["--width", "abc"], "argument --width: invalid int value: 'abc'"),
    (["--entropy-scaling", "maybe"], "argument --entropy-scaling: invalid choice: 'maybe'"),
    (["--attention-backend", "xformers"], "attention backend 'xformers' needs a CUDA device"),
]


@pytest.mark.parametrize("extra,message", BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["image", "x", "--model", "tiny-sd", "--device", "cpu", "--steps", "1", "--out", "o.png", *extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.strip().splitlines()[-1].startswith("gen image: error:") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_values_that_start_with_a_dash_follow_the_shell_conventions(tmp_path, capsys):
    """`--` ends the flags (a prompt may then start with '-'); `--flag=-value` gives a flag such a value."""
    assert main(["image", "--steps", "1", "--negative=-blurry", "--out", str(tmp_path / "a.png"), "--", "--help"]) == 0
    params = read_png_metadata(tmp_path / "a.png")[1]
    assert (params["prompt"], params["negative_prompt"]) == ("--help", "-blurry")
    with pytest.raises(SystemExit) as refused:  # without '=' the value reads as a flag: refused, nothing runs
        main(["image", "x", "--negative", "-blurry", "--out", str(tmp_path / "b.png")])
    assert refused.value.code == 2 and "argument --negative: expected one argument" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()


def test_existing_output_is_not_overwritten_unless_asked(tmp_path, capsys):
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    argv = ["image", "x", "--steps", "1", "--out", str(out)]
    assert main(argv) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(argv + ["--overwrite"]) == 0
    assert Image.open(out).size == (64, 64)


def test_unwritable_output_path(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["image", "x", "--steps", "1", "--out", str(tmp_path / "afile" / "o.png")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_uncached_hub_model_offline_is_one_clear_line(tmp_path):
    proc = run_gen("image", "x", "--model", "stabilityai/stable-diffusion-xl-base-1.0", "--out",
                   str(tmp_path / "o.png"))
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gen image: error: model 'stabilityai/stable-diffusion-xl-base-1.0'")
    assert "is not in the Hugging Face cache" in last and "tiny-sd" in last
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_info_on_a_file_without_parameters(tmp_path, capsys):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    assert main(["info", str(plain)]) == 2
    assert "carries no generation parameters" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["app", "--model", "tiny-wan"], "tiny-wan is a video model; pass it as --video-model"),
    (["app", "--video-model", "wan9"], "unknown video model 'wan9'; video presets: wan2.1-1.3b"),
    (["app", "--port", "0"], "--port must be between 1 and 65535, got 0"),
])
def test_bad_app_arguments_are_refused_before_serving(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
