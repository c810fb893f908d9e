"""``jaxstyle batch``: photos of mixed aspects, each output its single run's; SIGTERM and --resume;
--shard; unreadable files among good ones; bad input in one line.

The tiny test network with seeded random weights: what the batch does with its photos does
not depend on the network's width. Photos are seeded noise saved as 8-bit PNGs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxstyle import photos
from jaxstyle.config import Execution, resolve
from jaxstyle.errors import JaxstyleError
from jaxstyle.image import read_metadata
from jaxstyle.signals import EXIT_PREEMPTED
from tests.cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[1]
# (height, width) of the photos: four output sizes at --max-side 64 (48x64 twice, 64x48 twice,
# 64x64, 36x64), so that buckets of one photo and of several are both run.
SIDES = [(48, 64), (96, 128), (64, 48), (128, 96), (50, 50), (36, 64)]
RECIPE = ["--max-side", "64", "--steps", "4", "--content-layers", "relu4_1"]


def write_photos(folder: Path, sides=SIDES, seed: int = 5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (h, w) in enumerate(sides):
        paths.append(folder / f"photo{i}.png")
        Image.fromarray(np.round(rng.uniform(0, 1, (h, w, 3)) * 255).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def style(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("style") / "style.png"
    rng = np.random.default_rng(9)
    Image.fromarray(np.round(rng.uniform(0, 1, (64, 80, 3)) * 255).astype(np.uint8)).save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# --------------------------------------------------------------------------- the plan, no JAX run


def test_inputs_from_a_folder_a_glob_a_list_and_one_file(tmp_path):
    paths = write_photos(tmp_path / "in", SIDES[:3])
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"")
    assert photos.list_inputs(str(tmp_path / "in")) == paths
    assert photos.list_inputs(str(tmp_path / "in" / "photo[12].png")) == paths[1:]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my photos\nin/photo2.png\n\n{paths[0]}\nin/photo2.png\n")  # relative to the list
    assert photos.list_inputs(str(listing)) == [paths[0], paths[2]]
    assert photos.list_inputs(str(paths[1])) == [paths[1]]


def test_output_names_are_unique_whatever_the_stems():
    paths = [Path(p) for p in ("a/x.jpg", "b/X.png", "b/x-2.jpg", "c/summary.jpg", "c/y.tif", "d/failures-0-of-2.png")]
    names = photos.output_names(sorted(paths, key=str))
    assert names == {
        Path("a/x.jpg"): "x.png",
        Path("b/X.png"): "X-3.png",  # x-2 is another photo's stem
        Path("b/x-2.jpg"): "x-2.png",
        Path("c/summary.jpg"): "summary-2.png",  # the batch's own file
        Path("c/y.tif"): "y.png",
        Path("d/failures-0-of-2.png"): "failures-0-of-2-2.png",
    }


def test_shards_are_disjoint_cover_all_and_are_deterministic():
    paths = [Path(f"p{i:02d}.png") for i in range(23)]
    parts = [photos.shard(paths, i, 4) for i in range(4)]
    assert sorted(p for part in parts for p in part) == paths  # every photo once
    assert [len(part) for part in parts] == [6, 6, 6, 5]
    assert parts == [photos.shard(list(paths), i, 4) for i in range(4)]
    assert photos.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "0/0", "1/2/3"):
        with pytest.raises(JaxstyleError, match=r"^--shard .*expected I/N with 0 <= I < N"):
            photos.parse_shard(bad)


def test_photos_are_bucketed_by_output_size(tmp_path, tiny_weights):
    paths = write_photos(tmp_path, SIDES)
    settings = resolve("paper", network="tiny", max_side=64)
    parts, failures = photos.plan_parts(paths, photos.output_names(paths), settings, Execution(batch_size=1))
    assert failures == []
    assert [(part.size, len(part.photos)) for part in parts] == [
        ((36, 64), 1),
        ((48, 64), 1),
        ((48, 64), 1),
        ((64, 48), 1),
        ((64, 48), 1),
        ((64, 64), 1),
    ]
    parts, _ = photos.plan_parts(paths, photos.output_names(paths), settings)
    assert [(part.size, [p.path.name for p in part.photos]) for part in parts] == [
        ((36, 64), ["photo5.png"]),
        ((48, 64), ["photo0.png", "photo1.png"]),
        ((64, 48), ["photo2.png", "photo3.png"]),
        ((64, 64), ["photo4.png"]),
    ]
    assert len({part.key for part in parts}) == 4


# --------------------------------------------------------------------------- the run


def test_each_photo_equals_its_single_run_float64(tmp_path, tiny_weights, style):
    """Mixed aspects over two scales (each scale's content resized from the photo itself): every
    output of the vmapped buckets equals ``jaxstyle.stylize`` of that photo alone, float64, 1e-10."""
    from jaxstyle.api import stylize

    paths = write_photos(tmp_path, SIDES)
    settings = resolve("paper", network="tiny", max_side=64, steps=6, scales=2, content_layers=("relu4_1",))
    execution = Execution(dtype="float64")
    parts, _ = photos.plan_parts(paths, photos.output_names(paths), settings, execution)
    outputs = list(photos.run_parts(parts, [str(style)], settings, weights=tiny_weights, execution=execution))
    images = {photo.path: rgb for output in outputs for photo, rgb in output.images.items()}
    assert sorted(images) == paths and max(len(output.part.photos) for output in outputs) == 2
    for path in paths:
        single = stylize(path, style, settings=settings, execution=execution, weights=tiny_weights).image
        assert images[path].shape == single.shape
        assert np.linalg.norm(images[path] - single) / np.linalg.norm(single) < 1e-10, path.name


def test_cli_outputs_carry_the_command_of_their_single_run(tmp_path, tiny_cli, style):
    paths = write_photos(tmp_path / "in", SIDES[:4])
    r = run_cli("batch", tmp_path / "in", style, "-o", tmp_path / "out", *RECIPE, *tiny_cli, "--progress", "none")
    assert r.returncode == 0, r.stderr
    assert "wrote 4 photo(s)" in r.stdout and "(0 failed, 0 skipped)" in r.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"], summary["photos"]) == (4, 0, 0, 4)
    assert [s["size"] for s in summary["sizes"]] == [[48, 64], [64, 48]] and summary["seconds_per_photo"] > 0
    assert json.loads((tmp_path / "out" / "failures.json").read_text()) == {"failures": [], "count": 0}
    assert not (tmp_path / "out" / ".jaxstyle-checkpoints").exists()  # removed part by part
    with Image.open(tmp_path / "out" / "contact_sheet.png") as sheet:
        assert sheet.width > 2 * 128
    for path in paths[::3]:  # one photo of each size: its command, run as it is written
        out = tmp_path / "out" / f"{path.stem}.png"
        meta = read_metadata(out)
        assert meta["content"] == str(path) and meta["settings"]["max_side"] == 64
        assert {"final_losses", "scales", "weights", "command", "content_sha256"} <= set(meta)
        command = meta["command"].split()
        assert command[:3] == ["jaxstyle", "stylize", str(path)]
        command[command.index("-o") + 1] = str(tmp_path / "single.png")
        assert run_cli(*command[1:], "--progress", "none").returncode == 0
        ours, theirs = pixels(out), pixels(tmp_path / "single.png")
        assert ours.shape == theirs.shape == (*meta["scales"][-1]["size"], 3)
        # float32: a vmapped batch and a run of one may round differently; an 8-bit level at most.
        assert np.abs(ours.astype(int) - theirs).max() <= 1


def test_unreadable_files_among_good_ones(tmp_path, tiny_cli, style):
    good = write_photos(tmp_path / "in", SIDES[:2])
    (tmp_path / "in" / "garbage.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    data = (tmp_path / "in" / "photo0.png").read_bytes()
    (tmp_path / "in" / "truncated.png").write_bytes(data[: len(data) // 2])  # its header reads, its pixels do not
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    r = run_cli("batch", tmp_path / "in", style, "-o", tmp_path / "out", *RECIPE, *tiny_cli, "--progress", "none")
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("jaxstyle: batch: ") for line in lines), lines
    failed = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert failed["count"] == 3
    assert sorted(Path(f["input"]).name for f in failed["failures"]) == ["empty.png", "garbage.jpg", "truncated.png"]
    assert all(f["error"].startswith(f["input"]) for f in failed["failures"])
    assert sorted(p.name for p in (tmp_path / "out").glob("photo*.png")) == [p.name for p in good]
    assert "wrote 2 photo(s)" in r.stdout and "(3 failed, 0 skipped)" in r.stdout


def test_shards_write_disjoint_parts_of_one_folder(tmp_path, tiny_cli, style):
    paths = write_photos(tmp_path / "in", SIDES[:5])
    for i in range(2):
        r = run_cli(
            "batch", tmp_path / "in", style, "-o", tmp_path / "out", "--shard", f"{i}/2", *RECIPE, *tiny_cli, "-q"
        )
        assert r.returncode == 0, r.stderr
    summaries = [json.loads((tmp_path / "out" / f"summary-{i}-of-2.json").read_text()) for i in range(2)]
    assert [s["done"] for s in summaries] == [3, 2]
    outputs = [set(s["outputs"]) for s in summaries]
    assert not outputs[0] & outputs[1] and sorted(outputs[0] | outputs[1]) == [str(p) for p in paths]
    assert sorted(p.name for p in (tmp_path / "out").glob("photo*.png")) == [p.name for p in paths]
    assert (tmp_path / "out" / "failures-1-of-2.json").exists()


def test_an_earlier_runs_outputs_are_refused_skipped_with_resume_or_redone(tmp_path, tiny_cli, style):
    write_photos(tmp_path / "in", SIDES[:2])
    common = ["batch", tmp_path / "in", style, "-o", tmp_path / "out", *RECIPE, *tiny_cli, "--progress", "none"]
    assert run_cli(*common).returncode == 0
    again = run_cli(*common)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"jaxstyle: {tmp_path / 'out'}: holds 2 output(s) of an earlier run (photo0.png, photo1.png); "
        "pass --resume to skip them, or --overwrite to redo them"
    )
    resumed = run_cli(*common, "--resume")
    assert resumed.returncode == 0 and "wrote 0 photo(s)" in resumed.stdout and "2 skipped" in resumed.stdout
    assert run_cli(*common, "--overwrite").returncode == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "empty", "{d}/empty: the folder holds no image"),
        (lambda d: d / "*.jpeg", "{d}/*.jpeg: the pattern matches no file"),
        (lambda d: d / "missing", "{d}/missing: no such folder, file or list of files"),
        (lambda d: d / "list.txt", "{d}/list.txt: the list names no file"),
    ],
    ids=["empty-folder", "bad-glob", "missing", "empty-list"],
)
def test_bad_inputs_are_one_line(tmp_path, tiny_cli, style, make, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.txt").write_text("# nothing\n\n")
    r = run_cli("batch", make(tmp_path), style, "-o", tmp_path / "out", *tiny_cli)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("jaxstyle: " + message.format(d=tmp_path))


def test_bad_options_are_one_line(tmp_path, tiny_cli, style):
    write_photos(tmp_path / "in", SIDES[:1])
    common = ["batch", tmp_path / "in", style, "-o", tmp_path / "out", *tiny_cli]
    r = run_cli(*common, "--shard", "2/2")
    assert r.returncode == 2
    assert r.stderr == "jaxstyle: --shard '2/2': expected I/N with 0 <= I < N, e.g. 0/4 (the first of four parts)\n"
    r = run_cli(*common, "--shard", "1/2")  # one photo: the second part is empty
    assert r.returncode == 2 and r.stderr == "jaxstyle: --shard 1/2: the part is empty (1 photo(s) in 2 parts)\n"
    r = run_cli(*common, "--resume", "--overwrite")
    assert r.returncode == 2 and "give one" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run_cli("batch", tmp_path / "in", tmp_path / "nostyle.png", "-o", tmp_path / "out", *tiny_cli)
    assert r.returncode == 2 and r.stderr == f"jaxstyle: {tmp_path / 'nostyle.png'}: no such file\n"
    # An output over an input: the photos' folder as the output folder.
    r = run_cli("batch", tmp_path / "in", style, "-o", tmp_path / "in", *tiny_cli)
    assert r.returncode == 2 and "would overwrite the photo" in r.stderr and len(r.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- preemption


@pytest.mark.slow  # three fresh processes
def test_sigterm_then_resume_gives_identical_files(tmp_path, tiny_weights, style):
    """Three micro-batches of two photos: SIGTERM in the second (exit 75, the first's outputs
    written, the second's state saved); ``--resume`` skips the first, resumes the second from its
    checkpoint, runs the third: every file equals an uninterrupted run's."""
    write_photos(tmp_path / "in", [(48, 64)] * 6)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    recipe = ["--max-side", "64", "--steps", "30", "--content-layers", "relu4_1", "--batch-size", "2"]
    common = [sys.executable, "-m", "jaxstyle", "batch", str(tmp_path / "in"), str(style), *recipe]
    common += ["--network", "tiny", "--weights", str(tiny_weights), "--progress", "json", "--progress-interval", "0"]

    def start(out: str, *extra: str) -> subprocess.Popen:
        command = [*common, "-o", str(tmp_path / out), *extra]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    reference = start("ref")
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    cut = start("out", "--checkpoint-every", "10")
    for line in cut.stderr:
        if line.startswith("{") and json.loads(line)["micro_batch"] == 2:  # the second micro-batch under way
            cut.send_signal(signal.SIGTERM)
            break
    assert cut.wait(timeout=600) == EXIT_PREEMPTED, cut.stderr.read()
    assert "run the same command with --resume" in cut.stderr.read()
    written = sorted(p.name for p in (tmp_path / "out").glob("photo*.png"))
    assert written == ["photo0.png", "photo1.png"]  # the first micro-batch only
    assert len(list((tmp_path / "out" / ".jaxstyle-checkpoints").iterdir())) == 1
    resumed = start("out", "--checkpoint-every", "10", "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["done"], summary["skipped"]) == (4, 2)
    assert not (tmp_path / "out" / ".jaxstyle-checkpoints").exists()
    reference_files = sorted((tmp_path / "ref").glob("photo*.png"))
    assert len(reference_files) == 6
    for path in reference_files:
        np.testing.assert_array_equal(pixels(tmp_path / "out" / path.name), pixels(path), err_msg=path.name)
        ours, theirs = read_metadata(tmp_path / "out" / path.name), read_metadata(path)
        assert ours["final_losses"] == theirs["final_losses"], path.name


# --------------------------------------------------------------------------- the throughput bench


def test_throughput_bench_separates_compilation_and_renders_its_table(tmp_path):
    from bench.throughput import markdown, steady_and_compile

    # Two sizes: first micro-batches of 8 (compiling) then steady ones; 0.5 and 1.0 s per photo steady.
    groups = {(54, 96): [(8, 14.0), (8, 4.0), (4, 2.0)], (96, 96): [(8, 28.0), (8, 8.0)]}
    steady, compile_s, counted = steady_and_compile(groups)
    assert counted == 20 and steady == pytest.approx(14.0 / 20)
    assert compile_s == pytest.approx((14.0 - 8 * 0.5) + (28.0 - 8 * 1.0))
    assert steady_and_compile({(54, 96): [(8, 14.0)]}) == (None, None, 0)
    row = {"photos": 64, "wall_s": 64.0, "load": [1.0, 2.0]}
    rows = {
        "batch, in process": {**row, "steady_s_per_photo": 0.5, "compile_s": 30.0, "batch_sizes": {"54x96": 8}},
        "stylize, in process": {**row, "steady_s_per_photo": 0.6, "compile_s": 20.0},
        "jaxstyle batch": {**row, "s_per_photo": 1.0},
        "jaxstyle stylize": {**row, "photos": 16, "s_per_photo": 8.0, "first_of_size_s": 20.0, "cached_s": 4.0},
    }
    machine = {"platform": "cpu", "cpu_count": 2, "device_kind": "cpu", "device_count": 1, "name": "AMD EPYC, 2 cores"}
    data = {"date": "2026-12-02 09:00 UTC", "machine": machine, "versions": {"jax": "0.10.2"}, "weights": "real"}
    data |= {"photos": 64, "sizes": ["54x96"], "max_side": 96, "steps": 20, "uptime": "load average: 1, 2, 3"}
    (tmp_path / "throughput").mkdir()
    (tmp_path / "throughput" / "cpu-2core-2026-12-02.json").write_text(json.dumps({**data, "rows": rows}))
    lines = markdown(tmp_path)
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| how")]
    batched = "| batch, in process (micro-batches: 54x96 of 8) | 64 | 64.0 | 0.50 | 30.0 | 7200 | 3600 | 1.20 |"
    assert table[0] == batched + " 1.0 → 2.0 |"
    assert table[3].startswith(
        "| jaxstyle stylize (first of a size 20.0 s, then 4.0 s) | 16 | 64.0 | — | — | — | 450 |"
    )
