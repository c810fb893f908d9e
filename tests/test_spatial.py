"""One image over many devices: a split image computes what the whole one does, in less memory per device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle.config import Execution, resolve
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import content_loss, keep_rows, tv_loss
from jaxstyle.plan import make_plan, spatial_multiple, spatial_shards_for, split_height, split_line, step_bytes
from jaxstyle.spatial import own_rows, pad_rows
from tests.test_sweep import sweep_in_two_processes_and_one

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = {"network": "tiny", "content_layers": ("relu4_1",)}  # relu5_1, the deepest, behind 4 poolings


def test_a_split_height_is_padded_to_a_multiple_of_shards_times_two_to_the_poolings():
    settings = resolve("paper", **TINY_RECIPE)
    assert spatial_multiple(settings, 4) == 64
    assert spatial_multiple(resolve("paper", **TINY_RECIPE, style_layers=("relu1_1", "relu2_1")), 4) == 4 * 8
    assert [split_height(h, settings, 4) for h in (37, 64, 65, 96, 128)] == [64, 64, 128, 128, 128]
    assert split_height(91, settings, 2) == 96 and split_height(91, settings, 1) == 91
    # A 3000-row photo over 8 devices (relu5_1: multiples of 128): 72 rows of padding.
    assert split_height(3000, resolve("paper"), 8) == 3072
    assert split_line(96, settings, 4) == (
        "96 rows padded to 128 (32 per device, a multiple of 64; the 32 zero rows are masked out)"
    )
    assert split_line(128, settings, 4) == "128 rows, 32 per device"


def test_asked_shards_are_checked_in_one_line():
    settings, four = resolve("paper", **TINY_RECIPE), Execution(spatial_shards=4)
    memory = {"device_memory": 1 << 30, "step_bytes": 1 << 20, "requested": 4}
    assert spatial_shards_for(settings, (128, 64), devices=4, **memory)[0] == 4
    # Any height: 96 rows (not a multiple of 64) are padded to 128.
    shards, why = spatial_shards_for(settings, (96, 64), devices=4, **memory)
    assert shards == 4 and why == "image split over 4 device(s) as asked (" + split_line(96, settings, 4) + ")"
    with pytest.raises(JaxstyleError, match="--spatial-shards 4 needs 4 devices; this run has 2"):
        spatial_shards_for(settings, (128, 64), devices=2, **memory)
    with pytest.raises(JaxstyleError, match="does not divide the 6 devices"):
        make_plan(settings, (128, 64), 6, execution=four, device_count=6)
    bands = Execution(spatial_shards=4, remat="bands")
    with pytest.raises(JaxstyleError, match=r"--remat bands computes each image band by band .* --spatial-shards 4"):
        make_plan(settings, (128, 64), 1, execution=bands, device_count=4)
    # Automatic remat with a split: chosen for one device's share of the padded rows, never bands.
    auto = make_plan(settings, (96, 64), 1, execution=four, device_count=4, device_memory=1 << 10)
    assert auto.spatial_shards == 4 and auto.remat in ("none", "blocks") and "share" in auto.memory_reason
    assert "at 128x64" in auto.memory_reason and "96 rows padded to 128" in auto.batch_reason


def test_automatic_shards_are_the_fewest_that_fit():
    # spatial_shards 0: automatic; no remat, so that a step's estimate is the one below
    settings = resolve("paper", **TINY_RECIPE)
    step = step_bytes((256, 64), settings)  # the estimate of one step
    assert spatial_shards_for(settings, (256, 64), 4, 2 * step, step)[0] == 1
    assert spatial_shards_for(settings, (256, 64), 4, step, step)[0] == 2  # 0.7 of it holds half a step
    shards, why = spatial_shards_for(settings, (256, 64), 4, step // 8, step)
    assert shards == 4 and "it may not fit" in why
    # The share counts the padded rows: 96 rows are 96 over 2 devices (half a step each) but
    # 128 over 4 (a third of a step each, not a quarter).
    shards, why = spatial_shards_for(settings, (96, 64), 4, int(step / 0.7 / 3) + 2, step)
    assert shards == 4 and "it may not fit" not in why
    shards, why = spatial_shards_for(settings, (96, 64), 4, int(step / 0.7 / 3.9), step)
    assert shards == 4 and "it may not fit" in why and "96 rows padded to 128" in why
    plan = make_plan(settings, (256, 64), 8, device_count=4, device_memory=step)
    # Half a step per device, one setting in 0.7 of a device, 2 groups of 2 devices: micro-batches of 2.
    assert plan.spatial_shards == 2 and plan.batch_size == 2 and "split over 2 of 4 device(s)" in plan.batch_reason


@pytest.mark.parametrize("reduction", ["mean", "sum", "nine"])
def test_padded_rows_count_for_nothing_in_the_tv_and_content_losses(reduction, rng):
    # An image of 37 own rows padded to 64 (garbage in the padding: the losses mask it, not the zeros).
    image = rng.normal(size=(2, 37, 9, 3))
    padded = np.concatenate([image, rng.normal(size=(2, 27, 9, 3))], axis=1)
    whole, split = tv_loss(jnp.asarray(image), reduction), tv_loss(jnp.asarray(padded), reduction, rows=37)
    np.testing.assert_allclose(split, whole, rtol=1e-13)
    grad = jax.grad(lambda x: tv_loss(x, reduction, rows=37))(jnp.asarray(padded))
    np.testing.assert_allclose(grad[:, :37], jax.grad(lambda x: tv_loss(x, reduction))(jnp.asarray(image)), atol=1e-15)
    assert not np.asarray(grad[:, 37:]).any()
    # Content features of 2 layers (full and quarter rows: 37 and 9 own), zero past their own rows.
    f, t = rng.normal(size=(1, 37, 9, 4)), rng.normal(size=(1, 9, 3, 8))
    g, u = rng.normal(size=(1, 37, 9, 4)), rng.normal(size=(1, 9, 3, 8))
    weights = jnp.asarray([1.0, 0.3])
    whole = content_loss([f, t], [g, u], weights)
    features, targets = [pad_rows(f, 64), pad_rows(t, 16)], [pad_rows(g, 64), pad_rows(u, 16)]
    np.testing.assert_allclose(content_loss(features, targets, weights, [37, 9]), whole, rtol=1e-13)
    assert np.array_equal(own_rows(pad_rows(f, 64), 37), f) and pad_rows(f, 37) is f
    np.testing.assert_array_equal(keep_rows(jnp.asarray(padded), 37), pad_rows(image, 64))


@pytest.mark.slow  # a fresh process with 4 forced CPU devices
def test_split_image_of_any_height_equals_whole_image_float64(tmp_path, tiny_weights):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "split.npz"
    worker = [sys.executable, str(ROOT / "tests" / "shard_worker.py"), str(out), str(tiny_weights)]
    subprocess.run(worker, check=True, env=env, cwd=ROOT, timeout=1200)
    r = dict(np.load(out))
    assert r["devices"] == 4
    # The objective of images of 101 and 37 rows over 4 devices and 100 over 2, padded
    # and masked: every term and the image gradient as the whole image's; no gradient on padding.
    for terms, gradient, on_padding, padding in r["objective"]:
        assert terms < 1e-10 and gradient < 1e-10 and on_padding == 0 and padding > 0, r["objective"]
    # Three scales of 50, 71 and 101 rows, every one padded, over 4 devices (over 2: L-BFGS below).
    whole = r["stylize1_image"]
    for shards in (4,):
        assert np.linalg.norm(r[f"stylize{shards}_image"] - whole) / np.linalg.norm(whole) < 1e-10, shards
        np.testing.assert_allclose(r[f"stylize{shards}_total"], r["stylize1_total"], rtol=1e-10)
    lbfgs = r["lbfgs1_image"]
    assert np.linalg.norm(r["lbfgs2_image"] - lbfgs) / np.linalg.norm(lbfgs) < 1e-10
    np.testing.assert_allclose(r["lbfgs2_total"], r["lbfgs1_total"], rtol=1e-10)
    # Stopped after the first scale and resumed from its checkpoint: the same run, exactly.
    np.testing.assert_array_equal(r["resumed4_image"], r["stylize4_image"])
    np.testing.assert_array_equal(r["resumed4_total"], r["stylize4_total"])
    # 4 settings: 2 settings x 2 devices that split each image, against 4 x 1.
    assert r["sweep1_batch"] == r["sweep2_batch"] == 4
    np.testing.assert_allclose(r["sweep2_total"], r["sweep1_total"], rtol=1e-10)
    for k in range(4):
        a, b = r["sweep2_images"][k], r["sweep1_images"][k]
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-10, k
    # Per-device bytes of a compiled chunk (arguments, outputs, temporaries) over 1, 2, 4 devices
    # at 128x64, and over 4 at 101x50 (padded to 128x50). After a chunk the image, Adam's two
    # moments and the average are split (none on one device).
    assert r["split_leaves"].tolist() == [[4, 0], [4, 4], [4, 4], [4, 4]]
    one, two, four, padded = r["memory"]
    assert two < 0.65 * one and four < 0.65 * two and padded < four, r["memory"]
    # Split, the network exchanges halo rows (jaxstyle.spatial) and nothing is gathered whole.
    (permutes1, gathers1), *split = r["collectives"].tolist()
    assert permutes1 == gathers1 == 0, r["collectives"]
    assert all(permutes >= 20 and gathers == 0 for permutes, gathers in split), r["collectives"]


@pytest.mark.slow  # three fresh processes, two of them one multi-process run
def test_two_processes_split_one_image(tmp_path, tiny_weights):
    rng = np.random.default_rng(3)
    for name in ("c", "s"):
        Image.fromarray((rng.uniform(0, 1, (60, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    common = [str(tmp_path / "c.png"), str(tmp_path / "s.png"), "--size", "60x48", "--steps", "3", "-q"]
    common += ["--network", "tiny", "--content-layers", "relu4_1", "--style-weight", "1e2,1e3"]
    common += ["--weights", str(tiny_weights), "--spatial-shards", "2"]
    # 60 rows, padded to 64 on the devices: 32 own rows on process 0, 28 and 4 padded ones on process 1.
    sweep_in_two_processes_and_one(tmp_path, common)  # the one process: 2 devices, split likewise
    # Each image's top rows, hence its file, are on process 0; process 1 held the bottom rows.
    names = ["000_sw100.png", "001_sw1000.png"]
    written = sorted(p.name for p in (tmp_path / "p0").iterdir())
    assert written == [*names, "contact_sheet.png", "losses.png", "summary.json"]
    assert not (tmp_path / "p1").exists() or not any((tmp_path / "p1").iterdir())
    for name in names:
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "p0" / name)), np.asarray(Image.open(tmp_path / "one" / name)), name
        )
    two, single = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("p0", "one"))
    assert two["process_count"] == 2 and two["device_count"] == 2 and "split over 2 device(s)" in two["plan"]
    for a, b in zip(two["points"], single["points"], strict=True):
        assert a["final_losses"] == b["final_losses"]
