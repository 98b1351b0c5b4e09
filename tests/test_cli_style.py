"""`gen style` and `gen cache` on the command line."""

import io

import pytest
from PIL import Image

from gen.cli import main

ASSETS = "assets"


@pytest.fixture
def here(monkeypatch, request, tmp_path):
    monkeypatch.chdir(request.config.rootpath)
    return tmp_path


def test_style_command_writes_one_png_per_content_with_parameters(here, capsys):
    out = here / "st.png"
    code = main(["style", "--content", f"{ASSETS}/coffee.jpg", "--content", f"{ASSETS}/chelsea.jpg",
                 "--style", f"{ASSETS}/brick.jpg", "--style", f"{ASSETS}/gravel.jpg:0.3", "--steps", "4",
                 "--size", "96", "--preserve-color", "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in here.iterdir()) == ["st-chelsea.png", "st-coffee.png"]
    assert Image.open(here / "st-coffee.png").size == (96, 64)
    capsys.readouterr()
    assert main(["info", str(here / "st-chelsea.png")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("style transfer: chelsea.jpg\nSteps: 4")
    assert 'Styles: "brick.jpg (1), gravel.jpg (0.3)"' in text and '"preserve_color": true' in text


def _truncated_png(path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[:100])
    return str(path)


BAD = [
    (["--gamma", "1.5"], "--gamma must be between 0 and 1"),
    (["--strength", "2"], "--strength must be between 0 and 1"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--temperature", "-1"], "--temperature must be > 0"),
    (["--steps", "0"], "steps must be between 1 and 500"),
    (["--size", "70"], "--size 70 is not a multiple of 8"),
    (["--mask", f"{ASSETS}/brick.jpg"], "mask is 256x256 but the content image is 256x171"),
    (["--layers", "up_blocks.7.attentions.0.transformer_blocks.0.attn1"], "unknown attention layer"),
    (["--layers", "down_blocks.0.attentions.0.transformer_blocks.0.attn2"], "is a cross-attention layer"),
    (["--style", f"{ASSETS}/missing.png"], "style image 'assets/missing.png' does not exist"),
    (["--style", f"{ASSETS}/gravel.jpg:-1"], "style weight must be >= 0"),
    (["--gamma", "0.5", "--strength", "0.5"], "not allowed with argument"),
    (["--out", "x.jpg"], "must end in .png"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_style_input_is_one_line_exit_2_and_writes_nothing(here, capsys, extra, message):
    argv = ["style", "--content", f"{ASSETS}/coffee.jpg", "--style", f"{ASSETS}/brick.jpg", "--steps", "2",
            "--device", "cpu", "--out", str(here / "o.png"), *extra]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.strip().splitlines()[-1].startswith("gen style: error:") and "Traceback" not in err
    assert list(here.iterdir()) == []


def test_corrupt_and_truncated_inputs(here, capsys):
    (here / "notes.png").write_text("hello")
    truncated = _truncated_png(here / "cut.png")
    for bad, message in ((str(here / "notes.png"), "is not an image file"), (truncated, "cannot be read")):
        assert main(["style", "--content", bad, "--style", f"{ASSETS}/brick.jpg", "--out",
                     str(here / "o.png")]) == 2
        assert message in capsys.readouterr().err
    assert not (here / "o.png").exists()


def test_all_zero_style_weights_are_rejected(here, capsys):
    code = main(["style", "--content", f"{ASSETS}/coffee.jpg", "--style", f"{ASSETS}/brick.jpg:0",
                 "--out", str(here / "o.png")])
    assert code == 2 and "at least one style needs a weight > 0" in capsys.readouterr().err


def test_cache_info_and_clear(here, capsys):
    assert main(["style", "--content", f"{ASSETS}/coffee.jpg", "--style", f"{ASSETS}/brick.jpg", "--steps", "2",
                 "--size", "64", "--device", "cpu", "--out", str(here / "o.png")]) == 0
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    info = capsys.readouterr().out
    assert "inversions:" in info and "entries" in info
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    from gen.inversion import default_inversion_cache

    assert default_inversion_cache().entries() == []
