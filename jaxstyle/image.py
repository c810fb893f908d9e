"""Reading, resizing and writing images; the shell around the numerical core.

Images in memory are float32 RGB arrays of shape ``(H, W, 3)`` with values in [0, 1].
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from jaxstyle import encode16
from jaxstyle.config import MAX_SIDE, MIN_SIDE  # declared with the settings they bound
from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.files import atomic_output, check_writable

if TYPE_CHECKING:
    from jaxstyle.config import Settings

MAX_INPUT_PIXELS = 1 << 26  # 67 Mpx: larger files are refused before decoding (bombs).
METADATA_KEY = "jaxstyle"
WRITABLE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
BIT_DEPTHS = (8, 16)
DEEP_FORMATS = ("PNG", "TIFF")  # the formats written with 16 bits a channel (jaxstyle.encode16)


def to_rgb01(img: Image.Image) -> np.ndarray:
    """Any Pillow mode to float32 RGB in [0, 1].

    16-bit and 32-bit integer grey images are scaled by 65535 (PNG stores 16 bits);
    transparent images are composited over white, as a viewer shows them.
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(img, dtype=np.float64) / 65535.0
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2).astype(np.float32)
    if img.mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float64), 0, 1)
        return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 RGB in [0, 1], honouring its EXIF orientation.

    Every way a file can be unusable becomes a one-line :class:`JaxstyleError`.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise JaxstyleError(f"{path}: no such file")
        if path.is_dir():
            raise JaxstyleError(f"{path}: is a directory, not an image")
        if path.stat().st_size == 0:
            raise JaxstyleError(f"{path}: empty file")
    except (OSError, ValueError) as e:  # a name too long to look up, a NUL byte
        raise JaxstyleError(f"{path}: cannot read ({one_line(e)})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_INPUT_PIXELS:
                    raise JaxstyleError(
                        f"{path}: {w}x{h} pixels is more than the {MAX_INPUT_PIXELS // 10**6} Mpx jaxstyle reads "
                        "(a decompression bomb, or a photo to shrink first)"
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb01(img)
    except JaxstyleError:
        raise
    except UnidentifiedImageError:
        raise JaxstyleError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise JaxstyleError(f"{path}: refused as a decompression bomb ({e})") from None
    except PermissionError:
        raise JaxstyleError(f"{path}: permission denied") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise JaxstyleError(f"{path}: corrupt or truncated image ({' '.join(str(e).split())})") from None


def check_size(height: int, width: int, what: str = "size") -> tuple[int, int]:
    """Return ``(height, width)`` if both lie in [MIN_SIDE, MAX_SIDE], else raise."""
    for side in (height, width):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise JaxstyleError(f"{what} {height}x{width}: each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")
    return height, width


def parse_size(text: str) -> tuple[int, int]:
    """``"300x450"`` -> ``(300, 450)`` (height x width), checked."""
    try:
        h, w = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise JaxstyleError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 300x450") from None
    return check_size(h, w)


def output_size(content_hw: tuple[int, int], settings: Settings) -> tuple[int, int]:
    """The ``(height, width)`` to optimise at, from the settings' one size form (every command's size).

    For content of height ``h`` and width ``w``:

    - ``size``: as given, the only form that may change the content's aspect;
    - ``max_side`` ``m``: ``(round(h·m/L), round(w·m/L))``, ``L = max(h, w)``;
    - ``pixels`` ``P``: the content's aspect at about ``P`` pixels, as pastiche's
      ``load_image``: ``h' = round(sqrt(P·h/w))``, then ``w' = round(h'·w/h)``. The width
      follows the rounded height, so it is within half a pixel of the content's aspect;
      ``h'·w'`` is within about ``w' + h'/2`` of ``P``. A 3:2 (width:height) landscape
      at ``P = 135000`` gets exactly ``300x450``.

    (Python's ``round``: halves to even.) Each side must lie in [MIN_SIDE, MAX_SIDE].
    """
    if settings.size is not None:
        return check_size(*settings.size)
    h, w = content_hw
    if settings.max_side is not None:
        scale = settings.max_side / max(h, w)
        side_h, side_w = max(1, round(h * scale)), max(1, round(w * scale))
        return check_size(side_h, side_w, what=f"--max-side {settings.max_side} gives size")
    pixels = settings.pixels  # the settings give one of the three forms (jaxstyle.config.validate)
    side_h = max(1, round(math.sqrt(pixels * h / w)))
    side_w = max(1, round(side_h * w / h))
    return check_size(side_h, side_w, what=f"--pixels {pixels} gives size")


def keeps_aspect(content_hw: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether ``size`` has the content's aspect up to a rounding pixel: one of its sides within
    one pixel of what the content's aspect gives it from the other side."""
    (h, w), (size_h, size_w) = content_hw, size
    return abs(size_w - size_h * w / h) <= 1 or abs(size_h - size_w * h / w) <= 1


def aspect_text(height: int, width: int) -> str:
    """An aspect as width:height in lowest terms (``3:2``, ``16:9``), or ``1.33:1`` where those exceed 32."""
    g = math.gcd(height, width)
    if max(height, width) // g <= 32:
        return f"{width // g}:{height // g}"
    return f"{width / height:.3g}:1" if width >= height else f"1:{height / width:.3g}"


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float RGB to ``(height, width)`` with Pillow's antialiased bicubic filter.

    Each channel is resized as a 32-bit float image, so no precision is lost to 8 bits.
    """
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb.astype(np.float32)
    channels = [
        np.asarray(Image.fromarray(rgb[..., c].astype(np.float32), mode="F").resize((w, h), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] (values outside clipped) to 8-bit."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def check_output_path(path: str | os.PathLike, bit_depth: int = 8) -> Path:
    """Fail early, before any work, if ``path`` cannot be written as an image of ``bit_depth`` bits a channel."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise JaxstyleError(f"{path}: unsupported output type; use one of {', '.join(WRITABLE_SUFFIXES)}")
    if bit_depth not in BIT_DEPTHS:
        raise JaxstyleError(f"{path}: a bit depth of {bit_depth}; use 8 or 16")
    if bit_depth == 16 and WRITABLE_SUFFIXES[path.suffix.lower()] not in DEEP_FORMATS:
        raise JaxstyleError(f"{path}: --bit-depth 16 writes PNG or TIFF; name the output .png, .tif or .tiff")
    return check_writable(path)


def save_image(path: str | os.PathLike, rgb: np.ndarray, metadata: Mapping | None = None, bit_depth: int = 8) -> Path:
    """Write RGB in [0, 1] atomically: to a temporary file beside ``path``, then rename.

    ``metadata`` is stored as JSON in the PNG text chunk ``jaxstyle`` (8-bit: PNG only).
    With ``bit_depth`` 16, a PNG or TIFF of ``round(65535 x)`` straight from the floats,
    with an sRGB ICC profile and the metadata (TIFF: in ``ImageDescription``); see
    :mod:`jaxstyle.encode16`.
    """
    path = check_output_path(path, bit_depth)
    fmt = WRITABLE_SUFFIXES[path.suffix.lower()]
    if bit_depth == 16:
        text = json.dumps(metadata if metadata is not None else {}, sort_keys=True)
        if fmt == "PNG":
            data = encode16.png16(rgb, {METADATA_KEY: text, "Software": "jaxstyle"}, encode16.srgb_profile())
        else:
            data = encode16.tiff16(rgb, text, encode16.srgb_profile())
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
        return path
    image = Image.fromarray(to_uint8(rgb), mode="RGB")
    kwargs: dict = {}
    if fmt == "PNG" and metadata is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(METADATA_KEY, json.dumps(metadata, sort_keys=True))
        info.add_text("Software", "jaxstyle")
        kwargs["pnginfo"] = info
    with atomic_output(path) as tmp:
        image.save(tmp, format=fmt, **kwargs)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The settings jaxstyle stored in a PNG it wrote, or in a 16-bit TIFF (its ``ImageDescription``)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            text = img.text.get(METADATA_KEY) if hasattr(img, "text") else None
            tags = getattr(img, "tag_v2", None)
            if text is None and tags is not None and tags.get(305) == "jaxstyle":  # Software
                text = tags.get(270)  # ImageDescription
    except (OSError, UnidentifiedImageError) as e:
        raise JaxstyleError(f"{path}: cannot read ({e})") from None
    if text is None:
        raise JaxstyleError(f"{path}: holds no jaxstyle metadata")
    return json.loads(text)
