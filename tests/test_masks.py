"""Spatial control with masks (issue 22): guide pyramids, regions, style-image masks,
restoration with ``--edit-mask``, masks through sweeps, scales, remat and checkpoints,
and bad masks (one line each, nothing written).

Runs use the tiny test network's seeded random weights in float64 (``tiny``); the
network-level reference is a PyTorch VGG (:mod:`tests.torch_vgg`) with the guide
pyramid written independently with ``torch.nn.functional`` poolings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image

import jaxstyle
from jaxstyle import masks as masklib
from jaxstyle.api import optimize, prepare
from jaxstyle.checkpoint import CheckpointOptions
from jaxstyle.errors import JaxstyleError, Stopped
from jaxstyle.nets import TINY
from jaxstyle.solve import objective
from jaxstyle.weights import random_convs

from .cli_runner import run_cli
from .test_bad_input import assert_one_line_error
from .torch_vgg import CFGS, torch_features

SIZE = (40, 48)
F64 = {"dtype": "float64", "size": SIZE}


def halves(h: int = SIZE[0], w: int = SIZE[1]) -> tuple[np.ndarray, np.ndarray]:
    """Two complementary hard masks: left half, right half."""
    left = np.zeros((h, w), np.float32)
    left[:, : w // 2] = 1
    return left, 1 - left


@pytest.fixture
def pictures(rng):
    content = rng.uniform(0, 1, (*SIZE, 3))
    return content, rng.uniform(0, 1, (32, 32, 3)), rng.uniform(0, 1, (36, 30, 3))


# --------------------------------------------------------------------------- the guide pyramid, by hand


def test_simple_and_inside_guidance_on_a_hand_computed_case():
    # A 4x4 mask, one conv then a 2x2 pool then a conv (names as VGG's).
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], np.float64)
    names = ("conv1_1", "relu1_1", "pool1", "conv2_1", "relu2_1")
    g = jnp.asarray(mask)[None, :, :, None]
    simple = [np.asarray(x)[0, :, :, 0] for x in masklib.guide_pyramid(g, names, ("relu1_1", "relu2_1"), "simple")]
    np.testing.assert_array_equal(simple[0], mask)  # a convolution leaves the simple guide
    np.testing.assert_array_equal(simple[1], [[1.0, 0.5], [0.5, 0.25]])  # 2x2 means
    inside = [np.asarray(x)[0, :, :, 0] for x in masklib.guide_pyramid(g, names, ("relu1_1", "relu2_1"), "inside")]
    # After one 3x3 conv a position keeps 1 only if its 3x3 neighbourhood (the edges count as
    # inside) is all 1: the top-left 2x2 block.
    np.testing.assert_array_equal(inside[0], [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    # Pool: min of each 2x2 window -> [[1, 0], [0, 0]]; the second conv erodes it away,
    # except that the top-left's neighbours beyond the edge count as inside: 0 at (0, 1) etc.
    np.testing.assert_array_equal(inside[1], [[0, 0], [0, 0]])
    soft = jnp.asarray(np.full((1, 4, 4, 1), 0.5))
    assert (
        float(masklib.guide_pyramid(soft.at[0, 0, 0, 0].set(0.25), names, ("relu1_1",), "inside")[0][0, 1, 1, 0])
        == 0.25
    )


def test_odd_sizes_drop_the_last_row_as_the_network_pools():
    g = jnp.ones((1, 5, 7, 2))
    (out,) = masklib.guide_pyramid(g, ("conv1_1", "pool1", "conv2_1"), ("conv2_1",), "simple")
    assert out.shape == (1, 2, 3, 2)


def test_mask_aspect_rule():
    assert masklib.same_aspect((40, 48), (40, 48))
    assert masklib.same_aspect((20, 24), (40, 48)) and masklib.same_aspect((200, 240), (401, 480))
    assert not masklib.same_aspect((401, 480), (400, 480))  # a pixel off: another picture's crop
    assert not masklib.same_aspect((48, 40), (40, 48)) and not masklib.same_aspect((40, 60), (40, 48))


# --------------------------------------------------------------------------- against PyTorch, through the network


def torch_guides(mask: np.ndarray, cfg, taps: dict[int, str], guidance: str) -> dict[str, torch.Tensor]:
    """The guide pyramid written with torch poolings: ``(1, R, h, w)`` after each tapped layer index."""
    g = torch.from_numpy(mask.transpose(2, 0, 1)[None].astype(np.float64))
    out, index = {}, 0
    for item in cfg:
        if item == "M":
            g = torch.nn.functional.avg_pool2d(g, 2) if guidance == "simple" else -torch.nn.functional.max_pool2d(-g, 2)
            index += 1
        else:
            if guidance == "inside":
                padded = torch.nn.functional.pad(g, (1, 1, 1, 1), value=1.0)
                g = -torch.nn.functional.max_pool2d(-padded, 3, stride=1)
            index += 2  # conv, relu
            if index - 1 in taps:
                out[taps[index - 1]] = g
    return out


@pytest.mark.parametrize("guidance", ["simple", "inside"])
def test_two_regions_style_loss_and_gradient_match_pytorch_float64(tiny, pictures, guidance):
    """The style term of a run with two regions and a style-image mask, through the tiny VGG:
    value and image gradient against PyTorch (guides, guided Gram matrices, targets)."""
    content, style1, style2 = pictures
    left, right = halves()
    s2_mask = np.zeros(style2.shape[:2], np.float32)
    s2_mask[6:30, 4:26] = 1.0  # the part of style 2 its statistics come from
    problem = prepare(
        content,
        [style1, style2],
        style_masks=[left, right],
        style_image_masks=[None, s2_mask],
        guidance=guidance,
        **tiny,
        **F64,
    )
    assert problem.settings.style_loss == "guided"
    x = problem.state.image

    def style_term(image):
        return objective(
            image, problem.graphdef, problem.params, problem.recipe, problem.targets, problem.loss_weights
        )[1]["style"]

    value, grad = jax.value_and_grad(style_term)(x)

    from jaxstyle import pipeline

    job = problem.job
    net = torch_features(CFGS["tiny"], random_convs(seed=1, network=TINY))
    taps = {TINY.torchvision_index(n): n for n in problem.recipe.style}
    weights = np.asarray(problem.loss_weights.style_layers)

    def feats(img: torch.Tensor) -> dict[str, torch.Tensor]:
        out, y = {}, img
        for i, layer in enumerate(net):
            y = layer(y)
            if i in taps:
                out[taps[i]] = y
        return out

    def gram(f: torch.Tensor, m: torch.Tensor) -> torch.Tensor:  # (1, C, h, w), (1, h, w)
        fr = (f * m[:, None]).reshape(f.shape[1], -1)
        mass = (m**2).sum()  # a region the layer does not see (eroded away): G = 0, as documented
        return fr @ fr.T / (f.shape[1] * mass) if mass > 0 else torch.zeros_like(fr @ fr.T)

    styles = pipeline.style_images_at(job.network, job.settings, job.inputs, SIZE)
    targets = []
    for image, smask in zip(styles, [None, s2_mask], strict=True):
        hw = image.shape[1:3]
        m = np.ones((*hw, 1)) if smask is None else masklib.resized(smask, hw)[:, :, None]
        guides = torch_guides(m, CFGS["tiny"], taps, guidance)
        f = feats(torch.from_numpy(np.asarray(image).transpose(0, 3, 1, 2).copy()))
        targets.append({n: gram(f[n], guides[n][:, 0]) for n in taps.values()})
    regions = torch_guides(np.stack([left, right], -1), CFGS["tiny"], taps, guidance)
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    f = feats(xt)
    loss = 0
    for w, name in zip(weights, problem.recipe.style, strict=True):
        layer = sum(torch.mean((gram(f[name], regions[name][:, r]) - targets[r][name]) ** 2) for r in range(2))
        loss = loss + float(w) * layer
    loss.backward()
    assert float(value) == pytest.approx(float(loss.detach()), rel=1e-10)
    ref = xt.grad.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(grad), ref, rtol=0, atol=1e-10 * np.abs(ref).max())


# --------------------------------------------------------------------------- runs


def test_an_all_ones_mask_equals_the_unmasked_run_float64(tiny, pictures):
    content, style, _ = pictures
    plain = jaxstyle.stylize(content, style, steps=4, style_loss="gram", **tiny, **F64)
    ones = np.ones(SIZE, np.float32)
    masked = jaxstyle.stylize(content, style, steps=4, style_masks=[ones], **tiny, **F64)
    assert masked.settings.style_loss == "guided"
    np.testing.assert_allclose(masked.image, plain.image, rtol=0, atol=1e-10)
    np.testing.assert_allclose(masked.trace["total"], plain.trace["total"], rtol=1e-10)


def test_a_region_no_mask_covers_gets_no_style_gradient(tiny, pictures):
    """Pixels no region covers keep the content: with relu1_1 the only style layer, whose
    neurons see 3x3 pixels, the style gradient is exactly 0 beyond one pixel of the mask
    (deeper layers' receptive fields reach further, as in the paper)."""
    content, style1, _ = pictures
    left, _ = halves()
    problem = prepare(content, [style1], style_masks=[left], style_layers=("relu1_1",), **tiny, **F64)

    def style_term(image):
        return objective(
            image, problem.graphdef, problem.params, problem.recipe, problem.targets, problem.loss_weights
        )[1]["style"]

    grad = np.abs(np.asarray(jax.grad(style_term)(problem.state.image))[0])
    assert grad[:, : SIZE[1] // 2].max() > 0
    assert grad[:, SIZE[1] // 2 + 1 :].max() == 0.0


@pytest.mark.parametrize("remat", ["blocks", "bands"])
def test_masked_remat_equals_plain_float64(tiny, pictures, remat):
    content, style1, style2 = pictures
    left, right = halves()
    common = dict(style_masks=[left, right], guidance="inside", steps=3, **tiny, **F64)
    plain = jaxstyle.stylize(content, [style1, style2], **common)
    other = jaxstyle.stylize(content, [style1, style2], remat=remat, **common)
    np.testing.assert_allclose(other.image, plain.image, rtol=0, atol=1e-10)


def test_masks_through_two_scales(tiny, pictures):
    """Masks of any size of the content's aspect are resized to every scale, and the guide
    pyramid is taken there: relu1_1's guide is the mask at the scale's size."""
    content, style1, style2 = pictures
    left, right = halves()
    small = [m[::2, ::2] for m in (left, right)]
    problem = prepare(content, [style1, style2], style_masks=small, edit_mask=left, scales=2, steps=2, **tiny, **F64)
    stages = problem.job.plan.stages
    assert len(stages) == 2 and stages[-1].size == SIZE
    for stage in stages:
        targets = problem.job.targets_at(stage.size)
        guide = np.asarray(targets.guides[0].regions)  # relu1_1, (Nc, 1, h, w, R)
        assert guide.shape == (1, 1, *stage.size, 2)
        np.testing.assert_allclose(guide[0, 0, :, :, 0], masklib.resized(small[0], stage.size), atol=1e-7)
        assert targets.edit.mask.shape == (1, 1, *stage.size, 1)
    result = optimize(problem)
    assert np.isfinite(result.image).all() and result.final_losses["style"] > 0


def test_masked_sweep_equals_masked_single_runs_float64(tiny, pictures):
    from jaxstyle.sweep import grid_product, sweep

    content, style1, style2 = pictures
    left, right = halves()
    edit = np.ones(SIZE, np.float32)
    edit[:10] = 0
    given = masklib_inputs(style=[left, right], edit=edit)
    points = grid_product(1, 1, [1.0], [1e2, 1e4], [10.0], [0.1], style_loss=["guided"])
    result = sweep([content], [style1, style2], points, steps=3, masks=given, batch_size=2, **tiny, **F64)
    assert result.styles == ["style0|style1"]
    for k, weight in enumerate((1e2, 1e4)):
        single = jaxstyle.stylize(
            content, [style1, style2], style_masks=[left, right], edit_mask=edit, style_weight=weight, steps=3,
            **tiny, **F64,
        )  # fmt: skip
        np.testing.assert_allclose(result.images[k], single.image, rtol=0, atol=1e-10)


def masklib_inputs(**kw):
    from jaxstyle.pipeline import MaskInputs

    return MaskInputs(**kw)


def test_resume_with_masks_is_exact(tmp_path, tiny, pictures):
    content, style1, style2 = pictures
    left, right = halves()
    common = dict(style_masks=[left, right], edit_mask=left, steps=12, scales=2, **tiny, **F64)
    reference = jaxstyle.stylize(content, [style1, style2], **common)
    calls = []

    def stop():
        calls.append(1)
        return signal.SIGTERM if len(calls) == 2 else None

    options = CheckpointOptions(tmp_path / "ck", every_steps=5, every_minutes=None)
    with pytest.raises(Stopped):
        jaxstyle.stylize(content, [style1, style2], checkpoint=options, stop_signal=stop, **common)
    resumed = jaxstyle.stylize(
        content, [style1, style2], checkpoint=CheckpointOptions(tmp_path / "ck", resume=True), **common
    )
    np.testing.assert_array_equal(resumed.image, reference.image)
    np.testing.assert_array_equal(resumed.trace["total"], reference.trace["total"])
    # Other masks, or none, are another run: the checkpoint refuses them.
    for other in ({"style_masks": [right, left]}, {"edit_mask": None}):
        with pytest.raises(JaxstyleError, match="made with other inputs"):
            jaxstyle.stylize(
                content,
                [style1, style2],
                checkpoint=CheckpointOptions(tmp_path / "ck", resume=True),
                **{**common, **other},
            )


def test_a_style_image_mask_restricts_the_target_to_its_part(tiny, pictures):
    """Restoration's style from the intact part of the content itself: the target is the
    Gram matrix of that part alone (the same as a style image cut to it, away from its edges)."""
    content, _, _ = pictures
    intact = np.zeros(SIZE, np.float32)
    intact[:, 24:] = 1
    problem = prepare(content, content, edit_mask=1 - intact, style_image_masks=[intact], **tiny, **F64)
    whole = prepare(content, content, style_loss="guided", **tiny, **F64)
    a, b = problem.targets.style["guided"][0], whole.targets.style["guided"][0]
    assert a.shape == b.shape and not np.allclose(a, b)


# --------------------------------------------------------------------------- restoration through the command


def write(path, array):
    Image.fromarray(array).save(path)
    return path


def test_edit_mask_keeps_the_pixels_outside_identical_in_the_written_png(tmp_path, tiny_cli, rng):
    content = write(tmp_path / "c.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    mask = np.zeros((48, 64), np.uint8)
    mask[12:30, 20:44] = 255
    edit = write(tmp_path / "m.png", mask)
    out = tmp_path / "o.png"
    write(tmp_path / "intact.png", 255 - mask)
    proc = run_cli(
        "stylize", content, content, "-o", out, "--size", "48x64", "--steps", "3", "--init", "noise", "-q",
        "--edit-mask", edit, "--style-image-masks", tmp_path / "intact.png", *tiny_cli,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written, original = np.asarray(Image.open(out)), np.asarray(Image.open(content))
    outside = mask == 0
    np.testing.assert_array_equal(written[outside], original[outside])
    assert (written[~outside] != original[~outside]).any()  # the inside was optimised (from noise)
    metadata = json.loads(Image.open(out).text["jaxstyle"])
    assert metadata["masks"]["edit_mask"] == str(edit) and metadata["settings"]["style_loss"] == "guided"


# --------------------------------------------------------------------------- bad masks


@pytest.fixture
def on_disk(tmp_path, rng):
    content = write(tmp_path / "c.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    style = write(tmp_path / "s.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    grey = np.zeros((48, 64), np.uint8)
    grey[:, :32] = 255
    return {
        "content": content,
        "style": style,
        "good": write(tmp_path / "good.png", grey),
        "half": write(tmp_path / "half.png", grey[::2, ::2]),
        "wrong": write(tmp_path / "wrong.png", np.zeros((48, 48), np.uint8) + 255),
        "colour": write(tmp_path / "colour.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)),
        "black": write(tmp_path / "black.png", np.zeros((48, 64), np.uint8)),
        "broken": (tmp_path / "broken.png").write_bytes(b"not a png") and tmp_path / "broken.png",
    }


BAD = [
    ("--style-masks", "wrong", "not the aspect of the content image"),
    ("--style-masks", "colour", "is not greyscale"),
    ("--style-masks", "black", "is all black"),
    ("--style-masks", "good,good", "2 mask(s) for 1 style image(s)"),
    ("--style-masks", "broken", "broken.png"),
    ("--style-masks", "missing", "no such file"),
    ("--edit-mask", "black", "is all black"),
    ("--edit-mask", "wrong", "not the aspect"),
    ("--style-image-masks", "good", "not the aspect of the style image 1"),
]


@pytest.mark.parametrize("option,which,message", BAD, ids=[f"{o}-{w}" for o, w, _ in BAD])
def test_bad_masks_get_one_line_and_write_nothing(tmp_path, tiny_cli, on_disk, option, which, message):
    paths = ",".join(str(on_disk.get(name, tmp_path / f"{name}.png")) for name in which.split(","))
    out = tmp_path / "out.png"
    proc = run_cli("stylize", on_disk["content"], on_disk["style"], "-o", out, option, paths, "-q", *tiny_cli)
    assert_one_line_error(proc, message)
    assert not out.exists()


def test_another_style_loss_with_region_masks_is_refused(tmp_path, tiny_cli, on_disk):
    out = tmp_path / "out.png"
    args = ("--style-masks", on_disk["good"], "--style-loss", "w2", "-q")
    proc = run_cli("stylize", on_disk["content"], on_disk["style"], "-o", out, *args, *tiny_cli)
    assert_one_line_error(proc, "need --style-loss guided, not w2")
    assert not out.exists()


def test_a_mask_at_half_size_is_taken(tmp_path, tiny_cli, on_disk):
    out = tmp_path / "out.png"
    args = ("--style-masks", on_disk["half"], "--size", "48x64", "--steps", "2", "-q")
    proc = run_cli("stylize", on_disk["content"], on_disk["style"], "-o", out, *args, *tiny_cli)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


# --------------------------------------------------------------------------- strength


def test_a_uniform_strength_is_the_style_weight_times_it_float64(tiny, pictures):
    content, style, _ = pictures
    c = 0.375  # exact in float32, as masks are read
    scaled = jaxstyle.stylize(content, style, steps=4, style_weight=1000.0 * c, **tiny, **F64)
    mapped = jaxstyle.stylize(content, style, steps=4, strength_map=np.full(SIZE, c), **tiny, **F64)
    assert mapped.settings.style_loss == "gram" and mapped.settings.style_weight == 1000.0
    np.testing.assert_allclose(mapped.image, scaled.image, rtol=0, atol=1e-10)
    # The style term reported is the strength-weighted one: c times the unweighted term.
    np.testing.assert_allclose(mapped.trace["total"], scaled.trace["total"], rtol=1e-10)
    np.testing.assert_allclose(mapped.trace["style"], c * scaled.trace["style"], rtol=1e-10)


def test_a_strength_map_scales_the_style_gradient_at_each_position(rng):
    """At one layer: the gradient of the style term with strength ratios ``s / mean s`` and the
    term times ``mean s`` is ``s(p)`` times the unmasked gradient at each position."""
    from jaxstyle.losses import Guide, gram_matrix, layer_statistics, style_loss

    f = jnp.asarray(rng.uniform(0, 1, (1, 6, 7, 5)))
    s = jnp.asarray(rng.uniform(0, 1, (1, 6, 7, 1)))
    target = (gram_matrix(jnp.asarray(rng.uniform(0, 1, (1, 6, 7, 5)))),)
    ones = jnp.ones(1)

    def plain(x):
        return style_loss([layer_statistics(x, ("gram",))], target, ones)

    def strong(x):
        stats = layer_statistics(x, ("gram",), Guide(strength=s / jnp.mean(s)))
        return style_loss([stats], target, ones * jnp.mean(s))

    assert float(strong(f)) == pytest.approx(float(jnp.mean(s) * plain(f)), rel=1e-13)
    np.testing.assert_allclose(jax.grad(strong)(f), s * jax.grad(plain)(f), rtol=1e-12)


# --------------------------------------------------------------------------- split over devices


@pytest.mark.slow  # a fresh process with 4 forced devices
def test_a_masked_split_run_equals_the_whole_run_float64(tmp_path, tiny_weights):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "masked.npz"
    worker = [sys.executable, str(root / "tests" / "masks_worker.py"), str(out), str(tiny_weights)]
    subprocess.run(worker, check=True, env=env, cwd=root, timeout=900)
    r = dict(np.load(out))
    assert r["devices"] == 4
    whole = r["stylize1_image"]
    assert np.linalg.norm(r["stylize4_image"] - whole) / np.linalg.norm(whole) < 1e-10
    np.testing.assert_allclose(r["stylize4_total"], r["stylize1_total"], rtol=1e-10)
    for k in range(2):
        a, b = r["sweep2_images"][k], r["sweep1_images"][k]
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-10, k


# --------------------------------------------------------------------------- video


@pytest.mark.parametrize("mode", ["sequential", "multipass"])
def test_a_static_edit_mask_holds_every_frame_outside_it(tiny, rng, mode):
    from jaxstyle.clips import video
    from jaxstyle.pipeline import MaskInputs

    frames = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    mask = np.zeros((32, 48), np.float32)
    mask[8:24, 12:36] = 1
    style = rng.uniform(0, 1, (32, 32, 3))
    out = video(
        frames, style, mode=mode, passes=2, steps=2, init="noise", size=(32, 48), masks=MaskInputs(edit=mask), **tiny
    )
    eight_bit = np.round(out.frames * 255).astype(np.uint8)
    outside = mask == 0
    np.testing.assert_array_equal(eight_bit[:, outside], frames[:, outside])
    assert (eight_bit[:, ~outside] != frames[:, ~outside]).any()


def moving_masks(count: int) -> list[np.ndarray]:
    """A square that moves right frame by frame, one edit mask per frame of a 32x48 clip."""
    masks = []
    for i in range(count):
        mask = np.zeros((32, 48), np.float32)
        mask[8:24, 4 + 8 * i : 20 + 8 * i] = 1
        masks.append(mask)
    return masks


def test_per_frame_edit_masks_hold_each_frame_outside_its_own(tiny, rng):
    from jaxstyle.clips import video
    from jaxstyle.masks import PerFrame
    from jaxstyle.pipeline import MaskInputs

    frames = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    masks = moving_masks(3)
    style = rng.uniform(0, 1, (32, 32, 3))
    given = MaskInputs(edit=PerFrame(masks))
    out = video(frames, style, mode="sequential", steps=2, init="noise", size=(32, 48), masks=given, **tiny)
    eight_bit = np.round(out.frames * 255).astype(np.uint8)
    for i, mask in enumerate(masks):
        np.testing.assert_array_equal(eight_bit[i][mask == 0], frames[i][mask == 0])
        assert (eight_bit[i][mask == 1] != frames[i][mask == 1]).any()


def test_per_frame_masks_from_a_folder_and_their_faults_are_one_line(tmp_path, tiny_weights, rng):
    from jaxstyle.videoio import read_clip, write_clip

    from .cli_runner import run_cli

    clip, folder, style = tmp_path / "clip", tmp_path / "masks", tmp_path / "s.png"
    write_clip(clip, rng.uniform(0, 1, (3, 32, 48, 3)).astype(np.float32), 8.0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    folder.mkdir()
    for i, mask in enumerate(moving_masks(3)):
        Image.fromarray((mask * 255).astype(np.uint8)).save(folder / f"m{i:03d}.png")
    tiny = [
        "--network",
        "tiny",
        "--weights",
        str(tiny_weights),
        "--content-layers",
        "relu4_1",
        "-q",
        "--steps",
        "2",
        "--size",
        "32x48",
    ]
    out = tmp_path / "out"
    done = run_cli("video", clip, style, "-o", out, "--edit-mask", folder, *tiny)
    assert done.returncode == 0, done.stderr
    written, source = read_clip(out).frames, read_clip(clip).frames
    for i, mask in enumerate(moving_masks(3)):
        np.testing.assert_array_equal(written[i][mask == 0], source[i][mask == 0])
    # Faults: a count that is not the clip's, a pass-based mode, a run with no frames, an empty folder.
    (folder / "m003.png").write_bytes((folder / "m000.png").read_bytes())
    faults = [
        (["video", clip, style, "-o", tmp_path / "o1", "--edit-mask", folder], "4 per-frame mask(s) for a clip of 3"),
        (["video", clip, style, "-o", tmp_path / "o2", "--strength-map", folder, "--mode", "multipass"], "sequential"),
        (["stylize", style, style, "-o", tmp_path / "o3.png", "--edit-mask", folder], "one per frame are for a video"),
        (["video", clip, style, "-o", tmp_path / "o4", "--edit-mask", tmp_path / "empty"], "no image file"),
    ]
    (tmp_path / "empty").mkdir()
    for argv, words in faults:
        result = run_cli(*argv, *tiny)
        assert result.returncode != 0 and words in result.stderr, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not any((tmp_path / n).exists() for n in ("o1", "o2", "o3.png", "o4"))


# --------------------------------------------------------------------------- the real VGG-19

# The real-weights checks skip (and say why) where the weights or the photo can't be had.
REAL_SIDE, REAL_STEPS = 96, 150


def region_grams(net, rgb: np.ndarray, mask: np.ndarray | None, layers) -> dict[str, np.ndarray]:
    """Guided Gram matrices ``F_m F_m^T / (C sum m^2)`` of one image at ``layers`` by pastiche's own
    network (float64), the mask (content coordinates, or ``None``: all of it) average-pooled to
    each layer as the network pools (torch, independent of jaxstyle)."""
    from .test_real_vgg19 import caffe_input, pastiche_name

    net = net.double()
    with torch.no_grad():
        feats = net.forward(caffe_input(rgb, torch.float64), [pastiche_name(n) for n in layers])
    net.float()
    out = {}
    for name in layers:
        f = feats[pastiche_name(name)][0]
        c, h, w = f.shape
        m = torch.ones(h, w, dtype=torch.float64)
        if mask is not None:
            m = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(mask[None].astype(np.float64)), (h, w))[0]
        fm = (f * m).reshape(c, h * w)
        out[name] = (fm @ fm.T / (c * (m**2).sum())).numpy()
    return out


@pytest.mark.slow  # 150 L-BFGS steps of VGG-19 at 96 px: 338 s on 2 cores under a load of 18
def test_two_regions_on_the_real_vgg19_each_move_towards_their_own_style(real_vgg19, pastiche_vgg19, real_photo):
    """Tübingen, The Starry Night in the left half, The Scream in the right half: at layers the
    loss does not optimise, each region's Gram distance to its own style falls from the
    content's, and by a larger factor than its distance to the other style."""
    from jaxstyle.image import load_image, resize

    from .test_real_weights import UNOPTIMISED

    content = load_image(real_photo)
    styles = [load_image(real_photo.parent / name) for name in ("starry_night.jpg", "the_scream.jpg")]
    h, w = content.shape[:2]
    left = np.zeros((h, w), np.float32)
    left[:, : w // 2] = 1
    result = jaxstyle.stylize(
        content, styles, preset="gatys", weights=real_vgg19, max_side=REAL_SIDE, steps=REAL_STEPS,
        style_masks=[left, 1 - left],
    )  # fmt: skip
    size = result.image.shape[:2]
    small = resize(content, size)
    masks = [masklib.resized(left, size), masklib.resized(1 - left, size)]
    style_grams = [region_grams(pastiche_vgg19, resize(s, size), None, UNOPTIMISED) for s in styles]
    for r, mask in enumerate(masks):
        ours = region_grams(pastiche_vgg19, result.image, mask, UNOPTIMISED)
        before = region_grams(pastiche_vgg19, small, mask, UNOPTIMISED)
        for name in UNOPTIMISED:

            def distance(grams, s, name=name):
                return float(np.mean((grams[name] - style_grams[s][name]) ** 2))

            own = distance(ours, r) / distance(before, r)
            other = distance(ours, 1 - r) / distance(before, 1 - r)
            assert own < 0.8 and own < other, (r, name, own, other)


def test_a_sweep_command_with_regions_has_one_style_target(tmp_path, tiny_cli, on_disk):
    out = tmp_path / "sweep"
    style2 = write(tmp_path / "s2.png", np.asarray(Image.open(on_disk["style"]))[::-1])
    right = write(tmp_path / "right.png", 255 - np.asarray(Image.open(on_disk["good"])))
    args = ("--style-masks", f"{on_disk['good']},{right}", "--style-weight", "1e2,1e3", "--size", "48x64")
    styles = f"{on_disk['style']},{style2}"
    proc = run_cli("sweep", on_disk["content"], styles, "-o", out, *args, "--steps", "2", "-q", *tiny_cli)
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("0*.png"))) == 2  # two style weights, one style target (each style in its region)
