"""Reading user images of any mode safely, sizes, colour preservation and masks."""

import io

import numpy as np
import pytest
from PIL import Image

from gen.errors import GenError
from gen.images import (composite, cover_resize, fit_size, image_digest, load_image, load_mask, mask_from_strokes,
                        preserve_color)


def _save(tmp_path, image, name, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    source = Image.new("RGB", (20, 10), (200, 40, 10))
    image = source.convert(mode) if mode != "I;16" else Image.fromarray(np.full((10, 20), 50000, np.uint16))
    suffix = ".tiff" if mode in ("CMYK", "I;16") else ".png"
    loaded = load_image(_save(tmp_path, image, "img" + suffix))
    assert loaded.mode == "RGB" and loaded.size == (20, 10)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    array = np.linspace(0, 65535, 200, dtype=np.uint16).reshape(10, 20)
    loaded = np.asarray(load_image(_save(tmp_path, Image.fromarray(array), "deep.png")))
    assert loaded.min() == 0 and loaded.max() == 255 and len(np.unique(loaded)) > 100


def test_transparency_becomes_white(tmp_path):
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_image(_save(tmp_path, clear, "clear.png")))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed
    loaded = load_image(_save(tmp_path, image, "rotated.jpg", exif=exif.tobytes()))
    assert loaded.size == (10, 30)


def test_corrupt_truncated_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(GenError, match="text.png is not an image file"):
        load_image(tmp_path / "text.png", "style image")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(GenError, match="cut.png cannot be read"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(GenError, match="does not exist"):
        load_image(tmp_path / "missing.png", "content image")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("gen.images.MAX_INPUT_PIXELS", 1000)
    path = _save(tmp_path, Image.new("L", (40, 40)), "big.png")  # 1600 pixels
    with pytest.raises(GenError, match="too large"):
        load_image(path)


def test_sizes():
    assert fit_size(600, 400, 512) == (512, 344)
    assert fit_size(400, 600, 512) == (344, 512)
    assert cover_resize(Image.new("RGB", (300, 100)), 64, 64).size == (64, 64)


def test_digest_depends_on_pixels_not_encoding(tmp_path):
    image = Image.new("RGB", (8, 8), (9, 9, 9))
    png, bmp = _save(tmp_path, image, "a.png"), _save(tmp_path, image, "a.bmp")
    assert image_digest(load_image(png)) == image_digest(load_image(bmp))
    assert image_digest(image) != image_digest(Image.new("RGB", (8, 8), (9, 9, 10)))


def test_preserve_color_keeps_content_chroma_and_stylised_lightness():
    content = Image.new("RGB", (16, 16), (200, 30, 30))
    stylised = Image.new("RGB", (16, 16), (40, 40, 160))
    out = np.asarray(preserve_color(stylised, content)).astype(int)
    red = np.asarray(content).astype(int)
    assert out[..., 0].mean() > out[..., 2].mean()  # reddish now
    lightness = lambda a: 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]  # noqa: E731
    assert abs(lightness(out).mean() - lightness(np.asarray(stylised).astype(int)).mean()) < \
        abs(lightness(red).mean() - lightness(np.asarray(stylised).astype(int)).mean())


def test_mask_size_must_match_and_composite_respects_it():
    with pytest.raises(GenError, match="mask is 10x10 but the content image is 20x10"):
        load_mask(Image.new("L", (10, 10)), (20, 10))
    mask = Image.new("L", (4, 2), 0)
    mask.paste(255, (0, 0, 2, 2))
    out = np.asarray(composite(Image.new("RGB", (4, 2), (255, 0, 0)), Image.new("RGB", (4, 2), (0, 0, 255)), mask))
    assert out[:, :2].tolist() == [[[255, 0, 0]] * 2] * 2 and out[:, 2:].tolist() == [[[0, 0, 255]] * 2] * 2


def test_painted_layers_become_a_mask_of_the_content_size():
    first, second = np.zeros((40, 60, 4), np.uint8), np.zeros((40, 60, 4), np.uint8)
    first[:, :30] = (255, 61, 127, 255)  # a brush stroke: colour with full alpha
    second[:10, 30:] = (255, 61, 127, 128)  # a half-transparent stroke on another layer
    mask = mask_from_strokes([first, second], (60, 40))
    values = np.asarray(mask)
    assert mask.mode == "L" and mask.size == (60, 40)
    assert (values[:, :30] == 255).all() and (values[:10, 30:] == 128).all() and (values[10:, 30:] == 0).all()
    scaled = np.asarray(mask_from_strokes([first], (120, 80)))  # the editor canvas was half the content's size
    assert scaled.shape == (80, 120) and scaled[:, :58].min() == 255 and scaled[:, 62:].max() == 0
    assert mask_from_strokes([np.zeros((40, 60, 4), np.uint8)], (60, 40)) is None  # nothing painted
    assert mask_from_strokes([], (60, 40)) is None
    with pytest.raises(GenError, match="differ in size"):
        mask_from_strokes([first, np.full((20, 20, 4), 255, np.uint8)], (60, 40))
