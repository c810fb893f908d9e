"""Image input and output: every kind of file a user may hand over."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image

from jaxstyle.errors import JaxstyleError
from jaxstyle.image import (
    check_output_path,
    load_image,
    output_size,
    parse_size,
    read_metadata,
    resize,
    save_image,
)


@pytest.fixture
def photo(rng) -> np.ndarray:
    return rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)


def test_rgb_png_round_trip(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png")
    assert rgb.dtype == np.float32 and rgb.shape == (40, 60, 3)
    np.testing.assert_array_equal(np.round(rgb * 255).astype(np.uint8), photo)


def test_grayscale_becomes_three_equal_channels(tmp_path, photo):
    Image.fromarray(photo[..., 0]).save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")
    assert rgb.shape == (40, 60, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    np.testing.assert_allclose(rgb[..., 1], photo[..., 0] / 255, atol=1e-7)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :16, 3] = 255  # left half opaque, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    rgb = load_image(tmp_path / "t.png")
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])
    np.testing.assert_allclose(rgb[0, 31], [1, 1, 1])


def test_palette_image(tmp_path, photo):
    Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    rgb = load_image(tmp_path / "p.png")
    assert rgb.shape == (40, 60, 3)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) <= 16


def test_16_bit_grayscale_keeps_its_precision(tmp_path, rng):
    levels = rng.integers(0, 65536, size=(33, 35), dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "16.png")
    rgb = load_image(tmp_path / "16.png")
    np.testing.assert_allclose(rgb[..., 1], levels / 65535, atol=1e-7)


def test_exif_orientation_is_honoured(tmp_path, photo):
    img = Image.fromarray(photo)  # 40 high, 60 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert load_image(tmp_path / "r.jpg").shape == (60, 40, 3)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.jpg", None, "no such file"),
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty file"),
        ("text.jpg", lambda p: p.write_text("this is not a picture\n" * 20), "not an image file"),
        ("folder.png", lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_unusable_files(tmp_path, name, make, message):
    path = tmp_path / name
    if make:
        make(path)
    with pytest.raises(JaxstyleError, match=re.escape(f"{path}: {message}")):
        load_image(path)


def test_truncated_image(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(JaxstyleError, match=r"cut\.jpg: corrupt or truncated image"):
        load_image(tmp_path / "cut.jpg")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")  # 81 Mpx of zeros: a few kB on disk
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(JaxstyleError, match="9000x9000 pixels is more than"):
        load_image(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    ("text", "message"),
    [("0x450", "between 32 and 8192"), ("300x100000", "between 32 and 8192"), ("big", "expected HEIGHTxWIDTH")],
)
def test_absurd_sizes(text, message):
    with pytest.raises(JaxstyleError, match=message):
        parse_size(text)


def test_output_size():
    assert parse_size("300x450") == (300, 450)
    assert output_size((600, 800), None, 400) == (300, 400)
    assert output_size((600, 800), (64, 64), None) == (64, 64)
    with pytest.raises(JaxstyleError, match="max-side 100000"):
        output_size((600, 800), None, 100000)


def test_resize_keeps_float_precision(rng):
    rgb = rng.uniform(0, 1, size=(64, 96, 3)).astype(np.float32)
    small = resize(rgb, (32, 48))
    assert small.shape == (32, 48, 3) and small.dtype == np.float32
    assert abs(float(small.mean()) - float(rgb.mean())) < 0.01
    assert len(np.unique(small)) > 256 * 3  # not quantised to 8 bits


def test_output_path_checks(tmp_path):
    with pytest.raises(JaxstyleError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "out.png")
    with pytest.raises(JaxstyleError, match="unsupported output type"):
        check_output_path(tmp_path / "out.gifx")
    with pytest.raises(JaxstyleError, match="not writable"):
        check_output_path("/proc/out.png")  # a directory nobody, root included, can create files in
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # as an ordinary user, permissions are checked too
            with pytest.raises(JaxstyleError, match="not writable"):
                check_output_path(locked / "out.png")
    finally:
        locked.chmod(0o700)


def test_save_is_atomic_and_keeps_metadata(tmp_path, rng):
    rgb = rng.uniform(0, 1, size=(32, 48, 3))
    path = save_image(tmp_path / "o.png", rgb, {"a": 1, "b": [1, 2]})
    assert read_metadata(path) == {"a": 1, "b": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(path)), np.round(rgb * 255).astype(np.uint8))
