"""Image input and output: every kind of file a user may hand over."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from jaxstyle.config import PRESETS, resolve
from jaxstyle.errors import JaxstyleError
from jaxstyle.image import (
    aspect_text,
    check_output_path,
    keeps_aspect,
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
    assert output_size((600, 800), resolve(max_side=400)) == (300, 400)
    assert output_size((600, 800), resolve(size=(64, 64))) == (64, 64)
    with pytest.raises(JaxstyleError, match="--max-side 256 gives size 1x256: each side must be between 32 and 8192"):
        output_size((40, 8000), resolve(max_side=256))


# Height x width of a 200x400 (width x height) portrait, the photo of issue 20.
PORTRAIT = (400, 200)


def within_a_rounding_pixel(content_hw: tuple[int, int], size: tuple[int, int]) -> bool:
    """One side of ``size`` within a pixel of what the content's aspect gives it from the other."""
    (h, w), (size_h, size_w) = content_hw, size
    return abs(size_w - size_h * w / h) <= 1 or abs(size_h - size_w * h / w) <= 1


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("content", [PORTRAIT, (200, 400), (1080, 1920), (1920, 1080), (333, 500), (768, 1024)])
def test_every_presets_size_keeps_the_contents_aspect(preset, content):
    # The one size function of stylize, sweep (through jaxstyle.pipeline.read_inputs) and video.
    size = output_size(content, PRESETS[preset])
    assert within_a_rounding_pixel(content, size), size


def test_a_portrait_stays_a_portrait_and_a_landscape_of_300x450s_aspect_gets_exactly_300x450():
    assert output_size(PORTRAIT, PRESETS["paper"]) == (520, 260)  # 135,200 pixels: the area of 300x450, at 1:2
    assert output_size(PORTRAIT, PRESETS["gatys"]) == output_size(PORTRAIT, PRESETS["crowsonkb"]) == (512, 256)
    for landscape in [(200, 300), (300, 450), (400, 600), (2000, 3000), (333, 500)]:
        assert output_size(landscape, PRESETS["paper"]) == (300, 450), landscape


def test_pixels_round_the_height_and_take_the_width_from_it():
    # h' = round(sqrt(P h / w)), w' = round(h' w / h); Python's round takes halves to even.
    assert output_size((768, 1024), resolve(pixels=135000)) == (318, 424)  # sqrt(101250) = 318.2
    assert output_size((1080, 1920), resolve(pixels=135000)) == (276, 491)  # 275.6; 276 * 16 / 9 = 490.7
    assert output_size((120, 60), resolve(pixels=4000)) == (89, 44)  # 89.4; 89 / 2 = 44.5, to even
    assert output_size((32, 32), resolve(pixels=32 * 32)) == (32, 32)


@pytest.mark.parametrize(
    ("content", "pixels", "message"),
    [
        ((32, 8192), 135000, "--pixels 135000 gives size 23x5888: each side must be between 32 and 8192 pixels"),
        ((100, 200), 8192**2, "--pixels 67108864 gives size 5793x11586: each side must be between 32 and 8192"),
        ((48, 64), 1000, "pixels must be between 1024 and 67108864, not 1000"),
        ((48, 64), 0, "pixels must be between 1024 and 67108864, not 0"),
        ((48, 64), -135000, "pixels must be between 1024 and 67108864, not -135000"),
        ((48, 64), 10**30, f"pixels must be between 1024 and 67108864, not {10**30}"),
        ((48, 64), 1.5e5, "pixels must be a whole number, not 150000.0"),
        ((48, 64), True, "pixels must be a whole number, not True"),
    ],
)
def test_absurd_pixels_are_one_line_errors(content, pixels, message):
    with pytest.raises(JaxstyleError) as error:
        output_size(content, resolve(pixels=pixels))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_only_a_change_beyond_a_rounding_pixel_changes_the_aspect():
    assert keeps_aspect(PORTRAIT, (520, 260)) and not keeps_aspect(PORTRAIT, (300, 450))
    assert keeps_aspect((333, 500), (300, 450)) and keeps_aspect((1080, 1920), (276, 491))
    assert keeps_aspect((60, 80), (48, 64)) and keeps_aspect((60, 80), (48, 65))  # 64 + 1
    assert not keeps_aspect((60, 80), (48, 66)) and not keeps_aspect((768, 1024), (150, 225))
    assert [aspect_text(*hw) for hw in (PORTRAIT, (300, 450), (1080, 1920), (768, 1024), (500, 500))] == [
        "1:2",
        "3:2",
        "16:9",
        "4:3",
        "1:1",
    ]
    assert aspect_text(333, 500) == "1.5:1" and aspect_text(500, 333) == "1:1.5"  # 500:333 has no small terms


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


# --------------------------------------------------------------------------- 16-bit output (--bit-depth 16)


def read16(path) -> np.ndarray:
    """A 16-bit RGB file as OpenCV (libpng, libtiff) reads it: an independent decoder."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr is not None and bgr.dtype == np.uint16 and bgr.shape[2] == 3, path
    return bgr[..., ::-1]


def sixteen_bit_values(rng) -> np.ndarray:
    """Float RGB whose 16-bit values cover every low byte: 8 bits on the way would lose them."""
    levels = rng.permutation(65536)[: 24 * 40 * 3].reshape(24, 40, 3)
    levels[0, :3] = [[0, 1, 255], [256, 257, 65534], [65535, 32768, 12345]]
    return levels / 65535.0


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_16_bit_output_keeps_every_level_an_srgb_profile_and_the_metadata(tmp_path, rng, suffix):
    from PIL import ImageCms

    from jaxstyle.encode16 import srgb_profile

    rgb = sixteen_bit_values(rng)
    path = save_image(tmp_path / f"o{suffix}", rgb, {"settings": {"color": "post"}, "n": [1, 2]}, bit_depth=16)
    read = read16(path)
    np.testing.assert_array_equal(read, np.round(rgb * 65535).astype(np.uint16))
    assert (read % 257 != 0).mean() > 0.99  # levels no 8-bit value gives (v * 257)
    assert len(np.unique(read)) == read.size > 256  # distinct levels, more than 8 bits hold
    assert read_metadata(path) == {"settings": {"color": "post"}, "n": [1, 2]}
    with Image.open(path) as img:
        img.verify()  # chunk CRCs, the TIFF directory
    with Image.open(path) as img:
        assert img.info["icc_profile"] == srgb_profile()
        profile = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
        assert ImageCms.getProfileDescription(profile).strip() == "sRGB built-in"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"o{suffix}"]


def test_16_bit_output_rounds_and_clips_the_floats(tmp_path):
    rgb = np.array([[[-0.5, 0.0, 1 / 131070], [0.5, 1.0, 7.0]]])  # 1/131070: half a level, rounds to even
    read = read16(save_image(tmp_path / "o.png", rgb, bit_depth=16))
    np.testing.assert_array_equal(read, [[[0, 0, 0], [32768, 65535, 65535]]])


def test_16_bit_output_is_png_or_tiff(tmp_path):
    with pytest.raises(JaxstyleError, match=r"--bit-depth 16 writes PNG or TIFF"):
        check_output_path(tmp_path / "o.jpg", bit_depth=16)
    with pytest.raises(JaxstyleError, match="bit depth of 12"):
        save_image(tmp_path / "o.png", np.zeros((4, 4, 3)), bit_depth=12)
    assert list(tmp_path.iterdir()) == []


def test_16_bit_stylize_and_sweep_from_the_command_line(tmp_path, rng, tiny_cli):
    from jaxstyle.cli import main

    from .test_bad_input import assert_one_line_error, run_cli

    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    inputs = [str(tmp_path / "c.png"), str(tmp_path / "s.png")]
    common = ["--size", "48x64", "--steps", "3", *tiny_cli, "-q"]
    assert main(["stylize", *inputs, "-o", str(tmp_path / "o8.png"), *common]) == 0
    assert main(["stylize", *inputs, "-o", str(tmp_path / "o16.tif"), *common, "--bit-depth", "16"]) == 0
    deep, shallow = read16(tmp_path / "o16.tif").astype(np.int64), np.asarray(Image.open(tmp_path / "o8.png"))
    assert np.abs(np.round(deep / 257) - shallow).max() <= 1  # the same run, rounded once to each depth
    assert (deep % 257 != 0).mean() > 0.9
    metadata = read_metadata(tmp_path / "o16.tif")
    assert metadata["execution"]["bit_depth"] == 16 and "--bit-depth 16" in metadata["command"]
    out_dir = tmp_path / "sweep"
    assert main(["sweep", *inputs, "-o", str(out_dir), *common, "--style-weight", "1,1000", "--bit-depth", "16"]) == 0
    for name in ("000_sw1.png", "001_sw1000.png"):
        assert (read16(out_dir / name) % 257 != 0).mean() > 0.9
        assert read_metadata(out_dir / name)["sweep_point"]["file"] == name
    result = run_cli("stylize", *inputs, "-o", str(tmp_path / "o.jpg"), *common, "--bit-depth", "16")
    assert_one_line_error(result, "o.jpg", "--bit-depth 16 writes PNG or TIFF")
    result = run_cli("stylize", *inputs, "-o", str(tmp_path / "o.png"), *common, "--bit-depth", "12")
    assert_one_line_error(result, "--bit-depth must be one of 8, 16")
