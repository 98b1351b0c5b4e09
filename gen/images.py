"""Reading user images safely and fitting them to the size a model works at.

Any mode PIL reads comes out as 8-bit RGB: EXIF orientation applied, transparency
flattened onto white, 16-bit and CMYK converted. Corrupt, truncated and oversized
("decompression bomb") files are refused with a `GenError` that names the file.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gen.errors import GenError

MAX_INPUT_PIXELS = 64 * 2**20  # 64 megapixels: above that, refuse rather than exhaust memory


def load_image(source: str | Path | Image.Image, label: str = "image") -> Image.Image:
    """An RGB image from a path or a PIL image, with orientation and transparency handled."""
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source) or source)
    path = Path(source)
    if not path.is_file():
        raise GenError(f"{label} {str(path)!r} does not exist or is not a file")
    previous_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                oriented = ImageOps.exif_transpose(image) or image
                return to_rgb(oriented)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise GenError(
            f"{label} {path.name} is too large (over {MAX_INPUT_PIXELS // 2**20} megapixels); downscale it first"
        ) from None
    except UnidentifiedImageError:
        raise GenError(f"{label} {path.name} is not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise GenError(f"{label} {path.name} cannot be read (corrupt or truncated?): {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode; transparent areas become white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def image_digest(image: Image.Image) -> str:
    """A content hash of the pixels (not the file), so re-encoded copies hit the same cache entry."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.size}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def fit_size(width: int, height: int, size: int, multiple: int = 8, minimum: int = 64) -> tuple[int, int]:
    """The output size for an image of width×height: longer side `size`, aspect kept, multiples of 8."""
    scale = size / max(width, height)
    fit = lambda v: max(minimum, int(round(v * scale / multiple)) * multiple)  # noqa: E731
    return fit(width), fit(height)


def cover_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width×height, then centre-crop: fills the frame without distortion."""
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def load_mask(source: str | Path | Image.Image, expected_size: tuple[int, int]) -> Image.Image:
    """A grayscale mask (white = stylise) that must have the content image's size."""
    mask = source if isinstance(source, Image.Image) else load_image(source, "mask")
    if mask.size != tuple(expected_size):
        raise GenError(
            f"mask is {mask.size[0]}x{mask.size[1]} but the content image is "
            f"{expected_size[0]}x{expected_size[1]}; the mask must have the content image's size"
        )
    return mask.convert("L")


def preserve_color(stylised: Image.Image, content: Image.Image) -> Image.Image:
    """Keep the content's colours: the stylised image's lightness with the content's a*/b* (CIELAB)."""
    import cv2

    content = content.resize(stylised.size, Image.Resampling.LANCZOS) if content.size != stylised.size else content
    out_lab = cv2.cvtColor(np.asarray(stylised.convert("RGB")), cv2.COLOR_RGB2LAB)
    content_lab = cv2.cvtColor(np.asarray(content.convert("RGB")), cv2.COLOR_RGB2LAB)
    out_lab[..., 1:] = content_lab[..., 1:]
    return Image.fromarray(cv2.cvtColor(out_lab, cv2.COLOR_LAB2RGB))


def composite(stylised: Image.Image, content: Image.Image, mask: Image.Image) -> Image.Image:
    """Stylised where the mask is white, content where it is black, blended in between."""
    mask = mask.resize(stylised.size, Image.Resampling.BILINEAR) if mask.size != stylised.size else mask
    return Image.composite(stylised.convert("RGB"), content.convert("RGB"), mask.convert("L"))


def mask_from_strokes(layers: list[np.ndarray], size: tuple[int, int]) -> Image.Image | None:
    """A mask (white = stylise) from painted layers (H×W×4 RGBA arrays): painted pixels are white.

    What a brush leaves is the layer's alpha; several layers are united (per-pixel maximum).
    The result is scaled to `size` (width, height), the content image's size, since an editor
    canvas may differ from it. None when nothing was painted.
    """
    arrays = [np.asarray(layer) for layer in layers if layer is not None]
    painted = [array[..., 3] for array in arrays if array.ndim == 3 and array.shape[-1] == 4]
    if not painted or not any(alpha.any() for alpha in painted):
        return None
    shape = painted[0].shape
    if any(alpha.shape != shape for alpha in painted):
        raise GenError("painted mask layers differ in size; clear the mask and paint it again")
    alpha = np.maximum.reduce(painted).astype(np.uint8)
    mask = Image.fromarray(alpha, "L")
    return mask if mask.size == tuple(size) else mask.resize(tuple(size), Image.Resampling.BILINEAR)
