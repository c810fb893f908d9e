"""Colour control (``--color``, :mod:`jaxstyle.color`): the transforms in float64, and every mode
through stylize, sweep and video on the tiny network."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from jaxstyle import color
from jaxstyle import image as imageio
from jaxstyle.api import prepare, stylize
from jaxstyle.cli import main
from jaxstyle.clips import video
from jaxstyle.config import COLOR_MODES, resolve
from jaxstyle.pipeline import settings_point
from jaxstyle.sweep import sweep

from .test_bad_input import assert_one_line_error, run_cli

SIZE = (48, 64)


def random_image(rng, shape=(37, 53), tint=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Smooth random colours (not uniform noise: a covariance with structure), in [0, 1]."""
    base = rng.uniform(size=(*shape, 3)) @ rng.uniform(0.2, 1.0, size=(3, 3))
    base = base / base.max() * np.asarray(tint)
    return np.clip(base, 0.0, 1.0)


# --------------------------------------------------------------------------- the transforms, float64


@pytest.mark.parametrize("method", ["cholesky", "pca"])
def test_colour_matching_gives_the_style_the_contents_mean_and_covariance(rng, method):
    style, content = random_image(rng, tint=(1.0, 0.4, 0.2)), random_image(rng, (29, 41), tint=(0.3, 0.6, 1.0))
    matched = color.match_colours(style, content, method)
    mu, sigma = color.mean_and_covariance(matched)
    mu_c, sigma_c = color.mean_and_covariance(content)
    np.testing.assert_allclose(mu, mu_c, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sigma, sigma_c, rtol=0, atol=1e-10)
    a, mu_s, _ = color.colour_transform(style, content, method)
    _, sigma_s = color.mean_and_covariance(style)
    np.testing.assert_allclose(a @ sigma_s @ a.T, sigma_c, rtol=0, atol=1e-10)
    np.testing.assert_allclose(mu_s, style.reshape(-1, 3).mean(axis=0), rtol=0, atol=1e-15)
    if method == "cholesky":  # L_c L_s^-1: a product of lower triangular factors
        assert np.abs(np.triu(a, 1)).max() < 1e-14 * np.abs(a).max()  # inv() rounds off the triangle
    else:  # the two differ by an orthogonal factor: both satisfy A Sigma_s A^T = Sigma_c
        other, _, _ = color.colour_transform(style, content, "cholesky")
        assert not np.allclose(a, other, atol=1e-3)


def test_colour_matching_of_a_flat_style_stays_finite(rng):
    flat, content = np.full((20, 30, 3), 0.25), random_image(rng)
    for method in ("cholesky", "pca"):  # every pixel at the content's mean colour
        matched = color.match_colours(flat, content, method)
        np.testing.assert_allclose(matched, np.broadcast_to(content.reshape(-1, 3).mean(axis=0), matched.shape))


def test_luminance_matching_gives_the_contents_mean_and_deviation(rng):
    style_y, content_y = rng.uniform(0.1, 0.3, (31, 47)), rng.uniform(0.4, 0.9, (23, 17))
    matched = color.match_luminance(style_y, content_y)
    np.testing.assert_allclose(matched.mean(), content_y.mean(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(matched.std(), content_y.std(), rtol=0, atol=1e-10)
    # Affine in the style: the standardised values stay where they were.
    np.testing.assert_allclose(
        (matched - matched.mean()) / matched.std(), (style_y - style_y.mean()) / style_y.std(), atol=1e-10
    )
    np.testing.assert_allclose(color.match_luminance(np.full((4, 4), 0.5), content_y), content_y.mean(), atol=1e-15)


def test_yiq_round_trip_and_the_luminance_output(rng):
    rgb, content = rng.uniform(size=(9, 11, 3)), rng.uniform(size=(9, 11, 3))
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(rgb)), rgb, rtol=0, atol=1e-12)
    np.testing.assert_allclose(color.rgb_to_yiq(rgb)[..., 0], color.luminance(rgb), rtol=0, atol=1e-15)
    np.testing.assert_allclose(color.rgb_to_yiq(np.full((3,), 0.7))[1:], 0, atol=1e-12)  # grey has no I, Q
    out = color.luminance_output(rgb, content)
    yiq = color.rgb_to_yiq(out)
    np.testing.assert_allclose(yiq[..., 0], color.luminance(rgb), rtol=0, atol=1e-12)
    np.testing.assert_allclose(yiq[..., 1:], color.rgb_to_yiq(content)[..., 1:], rtol=0, atol=1e-12)
    # The luminance replaced: content + (Y_result - Y_content) (1, 1, 1) ...
    shift = (color.luminance(rgb) - color.luminance(content))[..., None]
    np.testing.assert_allclose(out, content + shift, rtol=0, atol=1e-12)
    # ... which is also the YCbCr combination of --color post before its clipping.
    y = color.rgb_to_ycbcr(rgb)[..., :1]
    ycbcr = np.concatenate([y, color.rgb_to_ycbcr(content)[..., 1:]], axis=-1)
    np.testing.assert_allclose(color.ycbcr_to_rgb(ycbcr), out, rtol=0, atol=1e-5)  # Pillow's 6-digit matrix


def test_what_the_network_sees_under_each_mode(rng):
    style, content = random_image(rng, tint=(1.0, 0.5, 0.1)), random_image(rng, (30, 20))
    for mode in COLOR_MODES:
        (seen,) = color.styles_for(mode, [style], content)
        if mode in ("none", "post"):
            assert seen is style and color.network_view(mode, content) is content
        elif mode == "luminance":
            assert np.all(seen == seen[..., :1])  # grey: the luminance in three channels
            y = seen[..., 0].astype(np.float64)
            inside = (y > 0) & (y < 1)
            expected = color.match_luminance(color.luminance(style), color.luminance(content))
            np.testing.assert_allclose(y[inside], expected[inside], atol=1e-7)  # float32 pixels
            view = color.network_view(mode, content)
            np.testing.assert_allclose(view, color.grey(color.luminance(content)), atol=1e-7)
        else:
            expected = color.match_colours(style, content, color.HISTOGRAM_METHODS[mode])
            np.testing.assert_allclose(seen, np.clip(expected, 0, 1), atol=1e-7)
    with pytest.raises(ValueError, match="unknown colour mode"):
        color.network_view("sepia", content)


# --------------------------------------------------------------------------- the modes in a run


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(7)
    return random_image(rng, (60, 80), tint=(0.3, 0.7, 1.0)), random_image(rng, (50, 50), tint=(1.0, 0.5, 0.1))


@pytest.mark.parametrize("mode", ["luminance", "histogram-cholesky", "histogram-pca"])
def test_a_run_targets_the_style_as_its_mode_transforms_it(pictures, tiny, mode):
    """The style and content targets of a mode are those of the transformed images given as they are."""
    content, style = pictures
    common = {**tiny, "size": SIZE, "steps": 1}
    problem = prepare(content, style, color=mode, **common)
    (seen_style,) = color.styles_for(mode, [style.astype(np.float32)], content.astype(np.float32))
    seen_content = color.network_view(mode, content.astype(np.float32))
    by_hand = prepare(seen_content, seen_style, color="none", **common)
    for got, expected in zip(problem.targets.style["gram"], by_hand.targets.style["gram"], strict=True):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(problem.targets.content, by_hand.targets.content, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_luminance_only_keeps_the_contents_i_and_q_through_stylize_sweep_and_video(pictures, tiny):
    content, style = pictures
    common = {**tiny, "size": SIZE, "steps": 3, "lr": 0.3, "dtype": "float64"}
    single = stylize(content, style, color="luminance", **common)
    reference = color.rgb_to_yiq(imageio.resize(content.astype(np.float32), SIZE).astype(np.float64))
    yiq = color.rgb_to_yiq(single.image.astype(np.float64))
    inside = np.all((single.image > 0) & (single.image < 1), axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(yiq[inside][:, 1:], reference[inside][:, 1:], atol=1e-6)  # float32 output
    plain = stylize(content, style, **common)
    assert np.abs(color.rgb_to_yiq(plain.image.astype(np.float64))[..., 1:] - reference[..., 1:]).max() > 0.02
    settings = resolve("paper", color="luminance", size=SIZE, steps=3, lr=0.3, network="tiny")
    swept = sweep(
        [content], [style], [settings_point(settings)], settings=settings, weights=tiny["weights"], dtype="float64"
    )
    np.testing.assert_allclose(swept.images[0], single.image, rtol=0, atol=1e-10)
    # A clip of two frames: frame 0 is the single run; every frame keeps its own I and Q.
    frames = np.stack([imageio.resize(content.astype(np.float32), SIZE)] * 2)
    frames[1] = np.roll(frames[1], 2, axis=1)
    clip = video(frames, style, mode="sequential", color="luminance", **common)
    first = stylize(frames[0], style, color="luminance", **common)  # the style matched to frame 0
    np.testing.assert_allclose(clip.frames[0], first.image, rtol=0, atol=1e-10)
    for frame, out in zip(frames, clip.frames, strict=True):
        kept = np.all((out > 0) & (out < 1), axis=-1)
        got = color.rgb_to_yiq(out.astype(np.float64))[kept][:, 1:]
        np.testing.assert_allclose(got, color.rgb_to_yiq(frame.astype(np.float64))[kept][:, 1:], atol=1e-6)


@pytest.mark.parametrize("mode", COLOR_MODES)
def test_every_mode_from_the_command_line(tmp_path, pictures, tiny_cli, mode):
    content, style = pictures
    Image.fromarray(np.round(content * 255).astype(np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(np.round(style * 255).astype(np.uint8)).save(tmp_path / "s.png")
    out = tmp_path / "out.png"
    argv = ["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(out), "--size", "48x64"]
    assert main([*argv, "--steps", "3", "--lr", "0.3", *tiny_cli, "-q", "--color", mode]) == 0
    metadata = imageio.read_metadata(out)
    assert metadata["settings"]["color"] == mode
    assert f"--color {mode}" in metadata["command"]
    rgb = np.asarray(Image.open(out), np.float64) / 255
    reference = imageio.resize(imageio.load_image(tmp_path / "c.png"), SIZE).astype(np.float64)
    inside = np.all((rgb > 0) & (rgb < 1), axis=-1)
    if mode == "post":
        chroma = np.abs(color.rgb_to_ycbcr(rgb) - color.rgb_to_ycbcr(reference))[..., 1:]
        assert chroma[inside].max() < 1.5 / 255  # 8-bit rounding of three channels
    elif mode == "luminance":
        iq = np.abs(color.rgb_to_yiq(rgb) - color.rgb_to_yiq(reference))[..., 1:]
        assert iq[inside].max() < 1.5 / 255


def test_preserve_color_is_the_post_mode_and_refuses_a_contradiction(tmp_path, pictures, tiny_cli):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve("paper", preserve_color=True).color == "post"
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    with pytest.warns(DeprecationWarning):
        assert resolve("paper", preserve_color=False).color == "none"
    content, _ = pictures
    Image.fromarray(np.round(content * 255).astype(np.uint8)).save(tmp_path / "c.png")
    argv = ["stylize", str(tmp_path / "c.png"), str(tmp_path / "c.png"), "-o", str(tmp_path / "o.png"), *tiny_cli]
    result = run_cli(*argv, "--preserve-color", "--color", "luminance")
    assert_one_line_error(result, "--preserve-color is --color post, not --color luminance")
    result = run_cli(*argv, "--color", "sepia")
    assert_one_line_error(result, "--color")
