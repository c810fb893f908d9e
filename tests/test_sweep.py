"""Sweeps: sharded batches equal single runs, divergence stays local, two real processes agree.

Seeded random weights of the tiny test network (VGG-19's layer names, few channels): what a
sweep does with its settings does not depend on the network's width. Multi-device and
multi-process runs need fresh processes (``XLA_FLAGS`` and the coordinator are read when JAX
starts); everything else runs in this one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxstyle.errors import JaxstyleError
from jaxstyle.plan import batch_size_for
from jaxstyle.report import contact_sheet, thumbnail
from jaxstyle.sweep import SweepPoint, grid_product, read_grid, sweep
from tests.compilation import count_compilations

ROOT = Path(__file__).resolve().parents[1]
SIZE = (48, 64)


def run_worker(tmp_path: Path, weights: Path, dtype: str, steps: int) -> dict:
    """``tests/sweep_worker.py`` on 4 forced CPU devices with the tiny network's ``weights``."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's jaxstyle, whatever is installed
    out = tmp_path / f"{dtype}.npz"
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sweep_worker.py"), str(out), str(weights), dtype, str(steps)],
        check=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    return dict(np.load(out))


@pytest.mark.slow  # a fresh process with 4 forced CPU devices
def test_sharded_sweep_equals_single_runs_float64(tmp_path, tiny_weights):
    r = run_worker(tmp_path, tiny_weights, "float64", steps=5)
    assert r["devices"] == 4 and r["batch_size"] == 8  # K = 6 padded to 8 over 4 devices
    np.testing.assert_allclose(r["sweep_total"], r["single_total"], rtol=1e-10)
    for k in range(6):
        a, b = r["sweep_images"][k], r["single_images"][k]
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-10, k


@pytest.mark.slow
def test_sharded_sweep_single_step_float32(tmp_path, tiny_weights):
    # Two steps: the losses at step 0 (same image) and at step 1 (after one Adam step).
    r = run_worker(tmp_path, tiny_weights, "float32", steps=2)
    assert r["sweep_images"].dtype == np.float32
    np.testing.assert_allclose(r["sweep_total"], r["single_total"], rtol=1e-5)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    content = rng.uniform(0, 1, size=(*SIZE, 3))
    content[5:20, 5:30] = 0.25
    return content, rng.uniform(0, 1, size=(*SIZE, 3)), rng.uniform(0, 1, size=(*SIZE, 3))


def test_a_diverging_setting_is_reported_and_leaves_the_others_alone(images, tiny):
    content, style, _ = images
    good = grid_product(1, 1, [1.0], [1e3, 1e4], [10.0], [0.1])
    bad = SweepPoint(0, 0, 1.0, 1e3, 10.0, 1e200)  # overflows float64 within a few steps
    common = {**tiny, "size": SIZE, "steps": 4, "dtype": "float64"}
    with_bad = sweep([content], [style], [good[0], bad, good[1]], **common)
    without = sweep([content], [style], good, **common)
    assert [with_bad.status(k) for k in range(3)] == ["finished", "diverged", "finished"]
    assert with_bad.diverged_at.tolist()[1] > 0 and with_bad.diverged_at[0] == with_bad.diverged_at[2] == -1
    np.testing.assert_allclose(with_bad.images[[0, 2]], without.images, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(with_bad.trace["total"][:, [0, 2]], without.trace["total"], rtol=1e-10)


def test_several_styles_and_contents_in_one_run(images, tiny):
    content, style_a, style_b = images
    common = {**tiny, "size": SIZE, "steps": 3}
    points = grid_product(2, 2, [1.0], [1e3], [10.0], [0.1])
    both = sweep([content, content[::-1].copy()], [style_a, style_b], points, **common)
    alone = sweep([content[::-1].copy()], [style_b], **common)
    assert len(both.points) == 4
    np.testing.assert_allclose(both.trace["total"][:, 3], alone.trace["total"][:, 0], rtol=1e-5)
    assert not np.allclose(both.trace["total"][:, 0], both.trace["total"][:, 1])  # the style matters


def test_same_count_other_values_does_not_recompile(images, tiny):
    content, style, _ = images
    common = {**tiny, "size": SIZE, "steps": 2}
    jax.clear_caches()  # so that the first sweep compiles, whatever ran before it
    with count_compilations() as first:
        sweep([content], [style], grid_product(1, 1, [1.0], [1e2, 1e3], [0.0], [0.1]), **common)
    assert "jit(run_batch_chunk)" in first  # the counter sees the sweep's compilations
    with count_compilations() as second:
        sweep([content], [style], grid_product(1, 1, [3.0], [5.0, 7.0], [2.0], [0.05]), **common)
    assert second == []


def test_micro_batches_give_the_same_results(images, tiny):
    content, style, _ = images
    common = {**tiny, "size": SIZE, "steps": 2}
    points = grid_product(1, 1, [1.0], [1e2, 1e3, 1e4], [0.0, 10.0], [0.1])
    whole = sweep([content], [style], points, **common)
    parts = sweep([content], [style], points, batch_size=4, **common)
    assert parts.batch_size == 4 and whole.batch_size == 6
    np.testing.assert_allclose(parts.trace["total"], whole.trace["total"], rtol=1e-5)


def test_summary_counts_every_scales_steps_and_converged_settings_as_finished(images, tiny):
    from jaxstyle.report import summary

    content, style, _ = images
    # Two scales of 3 and 2 steps. tol 0.005 stops the setting of lr 1e-5 at the first
    # step of each scale (its loss falls by 0.083% and 0.0085% a step), not that of lr 0.01
    # (63%, 68%, then 8.2% at the second scale), when written.
    common = {**tiny, "size": SIZE, "scales": 2, "scale_steps": (3, 2), "tol": 0.005}
    result = sweep([content], [style], grid_product(1, 1, [1.0], [1e4], [10.0], [1e-5, 0.01]), **common)
    assert [result.status(k) for k in range(2)] == ["converged", "finished"]
    record = summary(result)
    assert record["steps"] == 5 and [s["steps"] for s in record["scales"]] == [3, 2]
    assert record["seconds_per_setting_step"] == pytest.approx(result.seconds / (2 * 5))
    assert record["finished"] == 2 and record["converged"] == [0]
    assert record["points"][0]["steps"] < 5 == record["points"][1]["steps"]


def test_batch_size_plan():
    mib, gib = 1 << 20, 1 << 30
    assert batch_size_for(10, mib, 4, gib, "cpu", 3)[0] == 4  # rounded up to the device count
    assert batch_size_for(3, mib, 4, gib, "cpu", None)[0] == 4  # never more than K needs
    # On CPU at most 8 settings per device (wider batches gain no speed there); a GPU's
    # batch is bounded by its memory only; an explicit --batch-size is kept.
    assert batch_size_for(64, mib, 2, gib, "cpu", None)[0] == 16
    assert batch_size_for(64, mib, 2, gib, "gpu", None)[0] == 64
    assert batch_size_for(64, 100 * mib, 2, gib, "gpu", None)[0] == 2 * 7  # 70% of 1 GiB / 100 MiB
    assert batch_size_for(64, mib, 2, gib, "cpu", 32)[0] == 32
    assert "on CPU" in batch_size_for(64, mib, 1, gib, "cpu", None)[1]
    with pytest.raises(JaxstyleError, match="at least 1"):
        batch_size_for(3, mib, 1, gib, "cpu", 0)


def test_grid_files(tmp_path):
    from jaxstyle.config import Settings

    (tmp_path / "g.json").write_text(json.dumps([{"style_weight": 10}, {"lr": 0.5, "style": "b.png"}]))
    points = read_grid(tmp_path / "g.json", Settings(), ["c.png"], ["a.png", "b.png"])
    assert [(p.style, p.style_weight, p.lr) for p in points] == [(0, 10.0, 0.1), (1, 10.0, 0.1), (1, 1000.0, 0.5)]
    (tmp_path / "g.toml").write_text("[[setting]]\ntv_weight = 0\n\n[[setting]]\ntv_weight = 5\ncontent_weight = 2\n")
    points = read_grid(tmp_path / "g.toml", Settings(), ["c.png"], ["a.png"])
    assert [(p.tv_weight, p.content_weight) for p in points] == [(0.0, 1.0), (5.0, 2.0)]
    (tmp_path / "bad.json").write_text('[{"style_wieght": 1}]')
    with pytest.raises(JaxstyleError, match="unknown key"):
        read_grid(tmp_path / "bad.json", Settings(), ["c.png"], ["a.png"])


def test_cli_sweep_outputs_and_contact_sheet(tmp_path, tiny_cli, images):
    from jaxstyle.cli import main
    from jaxstyle.image import read_metadata
    from jaxstyle.sweep import SweepResult

    content, style, _ = images
    Image.fromarray((content * 255).astype(np.uint8)).save(tmp_path / "c.png")
    Image.fromarray((style * 255).astype(np.uint8)).save(tmp_path / "s.png")
    out = tmp_path / "out"
    argv = ["sweep", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(out), "--size", "48x64"]
    argv += ["--steps", "3", "--style-weight", "1e2,1e3,1e4", "--tv-weight", "0,10", "--lr", "0.1,1e30", "-q"]
    assert main([*argv, *tiny_cli]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["points"]) == 12 and summary["device_count"] >= 1 and summary["steps"] == 3
    assert summary["finished"] == 6 and summary["converged"] == []
    assert summary["diverged"] == [k for k in range(12) if summary["points"][k]["lr"] == 1e30]
    for record in summary["points"]:
        meta = read_metadata(out / record["file"])
        assert meta["sweep_point"]["style_weight"] == record["style_weight"]
        assert record["status"] == ("diverged" if record["lr"] == 1e30 else "finished")
    assert (out / "losses.png").is_file()

    # The sheet: 3 columns (style weight, the most values), 4 rows (tv x lr), each cell
    # the setting's own PNG, downscaled.
    sheet = Image.open(out / "contact_sheet.png")
    images_on_disk = np.stack([np.asarray(Image.open(out / r["file"]), np.float32) / 255 for r in summary["points"]])
    result = SweepResult(
        points=[
            SweepPoint(0, 0, r["content_weight"], r["style_weight"], r["tv_weight"], r["lr"], r["ema"])
            for r in summary["points"]
        ],
        images=images_on_disk,
        trace={"total": np.zeros((1, 12))},
        final_losses={"total": np.asarray([r["final_losses"]["total"] or np.nan for r in summary["points"]])},
        diverged_at=np.asarray([r["diverged_at"] if r["diverged_at"] is not None else -1 for r in summary["points"]]),
        steps_taken=np.asarray([r["steps"] for r in summary["points"]]),
        stages=(),
        settings=None,
        contents=["c.png"],
        content_size=images_on_disk.shape[1:3],
        styles=["s.png"],
        local=list(range(12)),
        seconds=0,
        batch_size=12,
        plan="",
        device_count=1,
        process_count=1,
    )
    _, layout = contact_sheet(result)
    assert (layout.rows, layout.columns) == (4, 3) and len(layout.boxes) == 12
    assert sheet.size == contact_sheet(result)[0].size
    for k, box in layout.boxes.items():
        cell = np.asarray(sheet.crop(box))
        np.testing.assert_array_equal(cell, np.asarray(thumbnail(images_on_disk[k], 256)), err_msg=str(k))


def test_cli_sweep_says_when_size_changes_the_contents_aspect(tmp_path, tiny_cli, capsys):
    from jaxstyle.cli import main
    from jaxstyle.image import read_metadata

    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, size=(400, 200, 3), dtype=np.uint8)).save(tmp_path / "portrait.png")
    Image.fromarray(rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    out = tmp_path / "out"
    argv = ["sweep", str(tmp_path / "portrait.png"), str(tmp_path / "s.png"), "-o", str(out), "--size", "64x96"]
    argv += ["--steps", "2", "--style-weight", "1e2,1e3"]
    assert main([*argv, "--progress", "none", *tiny_cli]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"wrote 2 settings to {out} (2 finished") and line.count("\n") == 1
    assert line.endswith(" (--size 64x96 changes the content's width:height 1:2 to 3:2)\n")
    for png in sorted(out.glob("0*.png")):
        assert Image.open(png).size == (96, 64) and read_metadata(png)["scales"] == [{"size": [64, 96], "steps": 2}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_in_two_processes_and_one(tmp_path: Path, common: list[str]) -> None:
    """``jaxstyle sweep *common`` as two processes on 127.0.0.1 (one CPU device each), writing to
    ``tmp_path/p0`` and ``p1``, then as one process with 2 forced devices, writing to ``tmp_path/one``."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    port = free_port()

    def joining(i: int) -> list[str]:
        return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)]

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jaxstyle", "sweep", *common, "-o", str(tmp_path / f"p{i}"), *joining(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    sweep_in_one_process_on_two_devices(tmp_path / "one", common)


def sweep_in_one_process_on_two_devices(out: Path, common: list[str]) -> None:
    """``jaxstyle sweep *common -o out`` in one process with 2 forced CPU devices: the layout of two processes."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env["PYTHONPATH"] = str(ROOT)
    one = subprocess.run(
        [sys.executable, "-m", "jaxstyle", "sweep", *common, "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr


@pytest.mark.slow  # three fresh processes, two of them one multi-process run
def test_two_processes_match_one_process(tmp_path, tiny_cli, images):
    content, style, _ = images
    Image.fromarray((content * 255).astype(np.uint8)).save(tmp_path / "c.png")
    Image.fromarray((style * 255).astype(np.uint8)).save(tmp_path / "s.png")
    common = [
        str(tmp_path / "c.png"),
        str(tmp_path / "s.png"),
        "--size",
        "48x64",
        "--steps",
        "3",
        "-q",
        "--style-weight",
        "1e2,1e3,1e4",
        "--tv-weight",
        "0,10",
        *tiny_cli,
    ]
    sweep_in_two_processes_and_one(tmp_path, common)
    names_one = sorted(p.name for p in (tmp_path / "one").iterdir())
    p0, p1 = (sorted(p.name for p in (tmp_path / f"p{i}").iterdir()) for i in range(2))
    # Each process wrote its own shard; process 0 also the sheet, plot and summary.
    assert p0 == [
        "000_sw100_tv0.png",
        "001_sw100_tv10.png",
        "002_sw1000_tv0.png",
        "contact_sheet.png",
        "losses.png",
        "summary.json",
    ]
    assert p1 == ["003_sw1000_tv10.png", "004_sw10000_tv0.png", "005_sw10000_tv10.png"]
    assert sorted(p0 + p1) == names_one
    for name in names_one:
        if name.endswith(".png") and name != "losses.png":
            other = tmp_path / ("p0" if name in p0 else "p1") / name
            np.testing.assert_array_equal(
                np.asarray(Image.open(other)), np.asarray(Image.open(tmp_path / "one" / name)), err_msg=name
            )
    s_two = json.loads((tmp_path / "p0" / "summary.json").read_text())
    s_one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert s_two["process_count"] == 2 and s_one["process_count"] == 1
    assert s_two["device_count"] == s_one["device_count"] == 2
    assert s_two["points"] == s_one["points"]


def test_local_device_ids_reach_jax_distributed_and_need_the_coordinator(monkeypatch):
    """``--local-device-ids`` (one process per GPU) is passed to ``jax.distributed.initialize``;
    alone, without the explicit coordinator, it is a one-line error."""
    from jaxstyle import mesh as meshlib

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(jax.config, "update", lambda *a: None)  # this process's JAX stays as it is
    meshlib.initialize_distributed("10.0.0.1:1234", 4, 2, [2])
    assert calls == [(("10.0.0.1:1234",), {"num_processes": 4, "process_id": 2, "local_device_ids": [2]})]
    with pytest.raises(JaxstyleError, match=r"^--local-device-ids goes with --coordinator"):
        meshlib.initialize_distributed(local_device_ids=[0])
