"""16-bit PNG and TIFF encoders (``--bit-depth 16``): bytes from float RGB, never through 8 bits.

Pillow writes 16 bits per channel only for greyscale images, so the two files are
encoded here, each in its simplest complete form, with an sRGB ICC profile
(Pillow's built-in ``ImageCms.createProfile("sRGB")``, 588 bytes) and jaxstyle's
metadata in a text field:

- PNG (ISO/IEC 15948): signature, ``IHDR`` (bit depth 16, colour type 2: RGB), ``iCCP``
  (the profile, deflated), one ``tEXt`` chunk per metadata key (as the 8-bit path writes
  them through Pillow), ``IDAT`` (every row with filter type 0, deflated), ``IEND``.
  Samples are big-endian, as PNG requires.
- TIFF 6.0, little-endian: one image file directory and one strip, RGB (photometric 2),
  16 bits a sample, chunky, Adobe deflate (compression 8), the profile in tag 34675
  (``InterColorProfile``), the metadata in ``ImageDescription`` with ``Software``
  ``jaxstyle``.

Pure functions: arrays in, bytes out; :func:`jaxstyle.image.save_image` writes them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from functools import cache

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFLATE_LEVEL = 6  # zlib's default: within a few percent of 9 on photographs, several times faster


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] (values outside clipped) to 16-bit: ``round(65535 x)``."""
    return np.round(np.clip(np.asarray(rgb, np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)


@cache
def srgb_profile() -> bytes:
    """The sRGB ICC profile Pillow builds (LittleCMS's ``cmsCreate_sRGBProfile``), as bytes."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# --------------------------------------------------------------------------- PNG


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """``length, type, data, CRC-32 of type and data`` (big-endian)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(rgb: np.ndarray, text: Mapping[str, str], icc: bytes) -> bytes:
    """A 16-bit RGB PNG of ``rgb`` ``(H, W, 3)`` in [0, 1], with the ICC profile ``icc`` and ``text``
    (Latin-1 keys of 1-79 characters and Latin-1 values) as ``tEXt`` chunks."""
    samples = to_uint16(rgb)
    height, width, _ = samples.shape
    rows = samples.astype(">u2").reshape(height, width * 6 // 2).view(np.uint8).reshape(height, width * 6)
    filtered = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 on every row
    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))]
    chunks.append(png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc, DEFLATE_LEVEL)))
    chunks += [
        png_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")) for key, value in text.items()
    ]
    chunks.append(png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), DEFLATE_LEVEL)))
    chunks.append(png_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


# --------------------------------------------------------------------------- TIFF

SHORT, LONG, ASCII, UNDEFINED = 3, 4, 2, 7  # TIFF field types


def tiff16(rgb: np.ndarray, description: str, icc: bytes) -> bytes:
    """A 16-bit RGB TIFF of ``rgb`` ``(H, W, 3)`` in [0, 1]: one strip, deflated, with the ICC profile
    ``icc``, ``description`` (ASCII) as ``ImageDescription`` and ``Software`` ``jaxstyle``."""
    samples = to_uint16(rgb)
    height, width, _ = samples.shape
    strip = zlib.compress(samples.astype("<u2").tobytes(), DEFLATE_LEVEL)
    # (tag, type, values): values a tuple of numbers, or bytes for ASCII and UNDEFINED.
    entries: list[tuple[int, int, tuple[int, ...] | bytes]] = [
        (256, LONG, (width,)),  # ImageWidth
        (257, LONG, (height,)),  # ImageLength
        (258, SHORT, (16, 16, 16)),  # BitsPerSample
        (259, SHORT, (8,)),  # Compression: Adobe deflate
        (262, SHORT, (2,)),  # PhotometricInterpretation: RGB
        (270, ASCII, description.encode("ascii") + b"\x00"),  # ImageDescription
        (273, LONG, (0,)),  # StripOffsets: filled in below
        (277, SHORT, (3,)),  # SamplesPerPixel
        (278, LONG, (height,)),  # RowsPerStrip
        (279, LONG, (len(strip),)),  # StripByteCounts
        (284, SHORT, (1,)),  # PlanarConfiguration: chunky
        (305, ASCII, b"jaxstyle\x00"),  # Software
        (34675, UNDEFINED, icc),  # InterColorProfile
    ]
    directory_size = 2 + 12 * len(entries) + 4
    offset = 8 + directory_size  # values longer than 4 bytes follow the directory, word-aligned
    fields, extra = [], b""
    for tag, kind, values in entries:
        data = (
            values
            if isinstance(values, bytes)
            else struct.pack(f"<{len(values)}{'H' if kind == SHORT else 'I'}", *values)
        )
        count = len(values)
        if len(data) <= 4:
            fields.append((tag, kind, count, data.ljust(4, b"\x00")))
        else:
            fields.append((tag, kind, count, struct.pack("<I", offset + len(extra))))
            extra += data + b"\x00" * (len(data) % 2)
    strip_offset = offset + len(extra)
    fields = [(t, k, c, struct.pack("<I", strip_offset) if t == 273 else v) for t, k, c, v in fields]
    directory = struct.pack("<H", len(fields)) + b"".join(struct.pack("<HHI", t, k, c) + v for t, k, c, v in fields)
    return b"II*\x00" + struct.pack("<I", 8) + directory + struct.pack("<I", 0) + extra + strip
