"""PNG metadata round trip and atomic, non-clobbering output writing."""

import pytest
from PIL import Image

from gen.errors import GenError
from gen.metadata import a1111_parameters, png_text_chunks, read_png_metadata
from gen.outputs import atomic_write, batch_output_paths, check_output_paths

PARAMS = {
    "kind": "image", "prompt": "a fox, in snow: at dawn", "negative_prompt": "blurry", "width": 128, "height": 64,
    "steps": 4, "guidance": 7.5, "seed": 7, "model": "tiny-sd", "scheduler": "DDIMScheduler",
    "entropy_scaling": "auto", "entropy_scaling_active": True, "train_size": 64, "unicode": "ключ ✓",
}


def test_png_metadata_round_trip(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=png_text_chunks(PARAMS))
    text, params = read_png_metadata(path)
    assert params == PARAMS
    assert text == a1111_parameters(PARAMS)


def test_a1111_text_format():
    text = a1111_parameters(PARAMS)
    prompt, negative, settings = text.split("\n")
    assert prompt == "a fox, in snow: at dawn" and negative == "Negative prompt: blurry"
    assert settings.startswith("Steps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 7, Size: 128x64, Model: tiny-sd")


def test_reading_a_non_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(GenError, match="cannot read bad.png as an image"):
        read_png_metadata(bad)
    with pytest.raises(GenError, match="does not exist"):
        read_png_metadata(tmp_path / "missing.png")


def test_batch_names_carry_the_seed(tmp_path):
    assert batch_output_paths(tmp_path / "o.png", [7]) == [tmp_path / "o.png"]
    assert batch_output_paths(tmp_path / "o.png", [7, 8]) == [tmp_path / "o-7.png", tmp_path / "o-8.png"]


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "sub" / "x.png"

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_atomic_write_never_clobbers_without_overwrite(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"precious")
    with pytest.raises(GenError, match="already exists"):
        atomic_write(target, lambda tmp: tmp.write_bytes(b"new"))
    assert target.read_bytes() == b"precious" and sorted(tmp_path.iterdir()) == [target]
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new"), overwrite=True)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()  # not mkstemp's private 0600


def test_output_checks(tmp_path, monkeypatch):
    (tmp_path / "exists.png").write_bytes(b"x")
    with pytest.raises(GenError, match="already exists; pass --overwrite"):
        check_output_paths([tmp_path / "exists.png"], overwrite=False)
    check_output_paths([tmp_path / "exists.png"], overwrite=True)
    with pytest.raises(GenError, match="must end in .png"):
        check_output_paths([tmp_path / "out.jpg"], overwrite=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(GenError, match="is not a folder"):
        check_output_paths([tmp_path / "file" / "out.png"], overwrite=False)
    monkeypatch.setattr("os.access", lambda path, mode: False)  # simulate a read-only folder
    with pytest.raises(GenError, match="permission denied"):
        check_output_paths([tmp_path / "new" / "out.png"], overwrite=False)


def _current_umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
