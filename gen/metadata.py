"""Generation parameters stored inside output PNGs.

Two text chunks: `parameters`, in the AUTOMATIC1111 format that other tools show and
parse, and `gen`, a JSON object with every setting, which gen reads back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gen.errors import GenError
from gen.jsonio import dumps, loads

PARAMETERS_KEY = "parameters"
JSON_KEY = "gen"

# diffusers scheduler class -> the sampler name A1111 users know.
SAMPLER_NAMES = {
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "FlowMatchEulerDiscreteScheduler": "Euler",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "LMSDiscreteScheduler": "LMS",
    "UniPCMultistepScheduler": "UniPC",
    "HeunDiscreteScheduler": "Heun",
}

# JSON key -> A1111 label, in the order A1111 writes them.
_A1111_FIELDS = [
    ("steps", "Steps"),
    ("sampler", "Sampler"),
    ("guidance", "CFG scale"),
    ("distilled_guidance", "Distilled CFG Scale"),
    ("seed", "Seed"),
    ("size", "Size"),
    ("model", "Model"),
    ("entropy_scaling", "Entropy scaling"),
    ("styles", "Styles"),
    ("gamma", "Gamma"),
    ("temperature", "Temperature"),
    ("convention", "StyleID convention"),
    ("inject_from", "Inject from step"),
    ("layer_set", "Layer set"),
    ("memory", "Memory mode"),
    ("train_size", "Train size"),
    ("attention_backend", "Attention backend"),
    ("dtype", "Dtype"),
    ("gen_version", "Version"),
]


def _a1111_value(value: Any) -> str:
    text = str(value)
    # A1111 quotes values that contain its separators.
    return json.dumps(text) if any(c in text for c in ',:"\n') else text


def a1111_parameters(params: dict[str, Any]) -> str:
    """The A1111 `parameters` text: prompt, negative prompt, then `Key: value` pairs."""
    fields = dict(params)
    if "width" in fields and "height" in fields:
        fields["size"] = f"{fields['width']}x{fields['height']}"
    if "scheduler" in fields:
        fields["sampler"] = SAMPLER_NAMES.get(fields["scheduler"], fields["scheduler"])
    if fields.get("guidance_kind") in ("distilled", "none"):  # FLUX.1, as Forge writes it: CFG scale 1 = no CFG
        fields["distilled_guidance"] = fields.get("guidance") if fields["guidance_kind"] == "distilled" else None
        fields["guidance"] = fields.get("true_cfg") or 1
    lines = [str(fields.get("prompt", ""))]
    if fields.get("negative_prompt"):
        lines.append(f"Negative prompt: {fields['negative_prompt']}")
    pairs = [f"{label}: {_a1111_value(fields[key])}" for key, label in _A1111_FIELDS if fields.get(key) is not None]
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def png_text_chunks(params: dict[str, Any]):
    """A PngInfo carrying both chunks, for `Image.save(..., pnginfo=...)`."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PARAMETERS_KEY, a1111_parameters(params))
    info.add_itxt(JSON_KEY, dumps(params, sort_keys=True))
    return info


def read_png_metadata(path: str | Path) -> tuple[str | None, dict[str, Any] | None]:
    """(A1111 parameters text, gen JSON) of an image; either may be None if absent."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise GenError(f"{str(path)!r} does not exist or is not a file")
    try:
        with Image.open(path) as image:
            # Text chunks before the pixels are read without decoding them; only if ours are not
            # there (a tool that writes text after the image data) are the pixels read too.
            text = {key: value for key, value in image.info.items() if isinstance(value, str)}
            if PARAMETERS_KEY not in text and JSON_KEY not in text and hasattr(image, "text"):
                text = dict(image.text)
    except Image.DecompressionBombError:
        raise GenError(f"{path.name} is too large to read (it claims more than {2 * Image.MAX_IMAGE_PIXELS:,} "
                       "pixels: a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise GenError(f"cannot read {path.name} as an image: {exc}") from None
    params = loads(text[JSON_KEY], f"{path.name}: its gen metadata chunk") if JSON_KEY in text else None
    if params is not None and not isinstance(params, dict):
        raise GenError(f"{path.name}: its gen metadata chunk is not a JSON object")
    return text.get(PARAMETERS_KEY), params
