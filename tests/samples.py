"""Hostile sample files for tests, made on the fly (nothing binary is committed)."""

import struct
import zlib
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo


def bomb_png(path: Path, side: int = 100_000) -> Path:
    """A valid PNG header claiming side×side pixels (a decompression bomb), with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def png_with_text(path: Path, **chunks: str) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


DEEP = "[" * 200_000 + "]" * 200_000
