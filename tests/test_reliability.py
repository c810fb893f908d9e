"""Runs that survive a cluster: exact resume after SIGTERM or SIGKILL, Ctrl-C at any moment,
progress lines in log files. Real processes, real signals."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxstyle.checkpoint import CheckpointOptions
from jaxstyle.errors import JaxstyleError, Stopped
from jaxstyle.signals import EXIT_INTERRUPTED, EXIT_PREEMPTED

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "resume_worker.py"
FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


def worker(out: Path, weights: Path, case: tuple[str, str, str, str], directory: Path, resume: bool, pause: float = 0):
    """``tests/resume_worker.py`` on the tiny network's ``weights``, pausing ``pause`` seconds after each report."""
    kind, optimizer, scales, dtype = case
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **(FOUR_DEVICES if kind == "sweep" else {})}
    env["RESUME_WORKER_PAUSE"] = str(pause)
    command = [sys.executable, str(WORKER), str(out), str(weights), dtype, kind, optimizer, scales, str(directory)]
    return subprocess.Popen(
        [*command, "1" if resume else "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def signal_at_step(proc: subprocess.Popen, step: int, signum: int) -> None:
    """Send ``signum`` once the worker reports ``step`` or more steps done."""
    for line in proc.stdout:
        if line.startswith("STEP ") and int(line.split()[1]) >= step:
            proc.send_signal(signum)
            break


def results(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


CASES = [
    ("stylize", "adam", "1", "float32"),
    ("stylize", "lbfgs", "2", "float64"),
    ("sweep", "adam", "2", "float64"),
    ("sweep", "adam", "1", "float32"),
]
# Not an L-BFGS sweep: vmapped, its zoom line search runs every branch for every setting,
# and three such processes take minutes on 2 cores; L-BFGS resumes in the single run, and
# the runner is the same code for both.


@pytest.mark.slow  # three fresh processes per case
@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_resume_after_sigterm_is_exact(tmp_path, tiny_weights, case):
    weights = tiny_weights
    reference = worker(tmp_path / "ref.npz", weights, case, tmp_path / "ref-ck", resume=False)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    total = 12 * int(case[2]) * (2 if case[0] == "sweep" else 1)  # sweeps: two micro-batches
    step = random.Random().randrange(2, total - 2)  # a random step; the run stops at the next chunk end
    # The tiny network's chunks take milliseconds: the pause after each report lets the
    # signal arrive before the run could end.
    interrupted = worker(tmp_path / "cut.npz", weights, case, tmp_path / "ck", resume=False, pause=0.2)
    signal_at_step(interrupted, step, signal.SIGTERM)
    assert interrupted.wait(timeout=600) == EXIT_PREEMPTED, (step, interrupted.stderr.read())
    assert not (tmp_path / "cut.npz").exists() and any((tmp_path / "ck").iterdir())
    resumed = worker(tmp_path / "cut.npz", weights, case, tmp_path / "ck", resume=True)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    ours, theirs = results(tmp_path / "cut.npz"), results(tmp_path / "ref.npz")
    for key in ("images", "total", "final"):
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{key}, signal at step {step}")


@pytest.mark.slow
def test_resume_after_a_kill_during_a_checkpoint_write(tmp_path, tiny_weights):
    """SIGKILL right after a chunk's report, while its checkpoint is being written: the
    last complete checkpoint stays usable, and the resumed run is exact."""
    case, weights = ("stylize", "adam", "2", "float32"), tiny_weights
    reference = worker(tmp_path / "ref.npz", weights, case, tmp_path / "ref-ck", resume=False)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    for attempt, step in enumerate((8, 16)):  # killed twice, each time as a checkpoint is due
        killed = worker(tmp_path / "out.npz", weights, case, tmp_path / "ck", resume=attempt > 0)
        signal_at_step(killed, step, signal.SIGKILL)
        assert killed.wait(timeout=600) == -signal.SIGKILL
    resumed = worker(tmp_path / "out.npz", weights, case, tmp_path / "ck", resume=True)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    ours, theirs = results(tmp_path / "out.npz"), results(tmp_path / "ref.npz")
    for key in ("images", "total", "final"):
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


@pytest.fixture
def small(weight_files, rng):
    content, style = rng.uniform(0, 1, (48, 64, 3)), rng.uniform(0, 1, (48, 64, 3))
    return content, style, {"weights": weight_files["torchvision"], "size": (48, 64), "steps": 4}


def test_a_checkpoint_of_another_run_or_format_is_refused(tmp_path, small):
    from jaxstyle.api import stylize

    content, style, common = small
    options = CheckpointOptions(tmp_path / "ck", every_steps=2, every_minutes=None)
    stylize(content, style, checkpoint=options, **common)
    with pytest.raises(JaxstyleError, match=r"ck: holds checkpoints of an earlier run; pass --resume"):
        stylize(content, style, checkpoint=options, **common)
    resume = CheckpointOptions(tmp_path / "ck", every_steps=2, every_minutes=None, resume=True)
    # The recipe, and the execution choices a checkpoint is bound to: remat and split as asked, dtypes.
    for changed, part in (
        ({"style_weight": 5.0}, "settings"),
        ({"steps": 6}, "settings"),
        ({"remat": "blocks"}, "execution choices"),
        ({"compute_dtype": "bfloat16"}, "dtypes"),
    ):
        with pytest.raises(JaxstyleError, match=rf"made with other {part}; resume with the same command"):
            stylize(content, style, checkpoint=resume, **{**common, **changed})
    with pytest.raises(JaxstyleError, match="made with other inputs"):
        stylize(content[::-1].copy(), style, checkpoint=resume, **common)
    for meta in (tmp_path / "ck").glob("*/meta/metadata"):
        data = json.loads(meta.read_text())
        meta.write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(JaxstyleError, match="checkpoint format version 99, this jaxstyle reads 2"):
        stylize(content, style, checkpoint=resume, **common)


def test_a_stage_compiles_one_chunk_whatever_its_chunk_lengths(tiny_weights, rng):
    """Snapshots every 5 steps cut two scales of 12 steps into chunks of 5, 5, 2 and 3, 5, 2, 2
    steps: one compiled chunk per scale (each chunk length was one before). The chunks
    are the same steps as one chunk per scale, bit for bit."""
    from jaxstyle.api import stylize
    from tests.compilation import count_compilations

    content, style = rng.uniform(0, 1, (40, 56, 3)), rng.uniform(0, 1, (40, 56, 3))
    common = {"weights": tiny_weights, "network": "tiny", "content_layers": ("relu4_1",), "size": (40, 56)}
    common |= {"scales": 2, "steps": 12, "ema": 0.5}
    jax.clear_caches()
    with count_compilations() as compiled:  # a size no other test uses: not in the persistent cache
        cut = stylize(content, style, save_every=5, on_snapshot=lambda step, image: None, **common)
    assert compiled.count("jit(run_batch_chunk)") == 2, compiled
    whole = stylize(content, style, **common)
    np.testing.assert_array_equal(cut.image, whole.image)
    np.testing.assert_array_equal(cut.trace["total"], whole.trace["total"])


def test_the_next_chunk_is_dispatched_before_the_last_ones_losses_are_read(tiny_weights, rng, monkeypatch):
    """On an accelerator the runner does not wait on the host between chunks: chunk i + 1 is
    dispatched before chunk i's losses are read, except where chunk i's state is needed (a
    snapshot); the results are those of the same chunks run one after another, as on CPU."""
    from jaxstyle import mesh, pipeline
    from jaxstyle.api import stylize

    events, call, to_host = [], pipeline.StageStep.__call__, mesh.to_host

    def dispatch(self, state, steps):
        events.append("dispatch")
        return call(self, state, steps)

    def read(tree):
        if isinstance(tree, tuple) and len(tree) == 3 and isinstance(tree[0], dict):
            events.append("read")
        return to_host(tree)

    monkeypatch.setattr(pipeline.StageStep, "__call__", dispatch)
    monkeypatch.setattr(mesh, "to_host", read)
    content, style = rng.uniform(0, 1, (2, 32, 40, 3))
    common = {"weights": tiny_weights, "network": "tiny", "size": (32, 40), "steps": 30}
    on_cpu = stylize(content, style, **common)
    assert events == ["dispatch", "read"] * 3
    monkeypatch.setattr(pipeline, "dispatch_ahead", lambda platform: True)  # as on an accelerator
    events.clear()
    ahead = stylize(content, style, **common)
    assert events == ["dispatch", "dispatch", "read", "dispatch", "read", "read"]
    events.clear()
    waiting = stylize(content, style, save_every=10, on_snapshot=lambda step, image: None, **common)
    assert events == ["dispatch", "read"] * 3
    for run in (ahead, waiting):
        np.testing.assert_array_equal(run.image, on_cpu.image)
        np.testing.assert_array_equal(run.trace["total"], on_cpu.trace["total"])


def test_a_stop_with_the_next_chunk_queued_is_saved_after_it_and_resumes_exactly(
    tiny_weights, rng, monkeypatch, tmp_path
):
    """With chunks dispatched ahead (an accelerator), a stop request that comes while the next
    chunk is queued is taken at that chunk's end: checkpoint there, and the resumed run equals
    one never stopped (its checkpoint also holds every step time-based saves asked for)."""
    import signal as signals

    from jaxstyle import pipeline
    from jaxstyle.api import stylize
    from jaxstyle.checkpoint import CheckpointOptions
    from jaxstyle.errors import Stopped

    monkeypatch.setattr(pipeline, "dispatch_ahead", lambda platform: True)
    content, style = rng.uniform(0, 1, (2, 32, 40, 3))
    common = {"weights": tiny_weights, "network": "tiny", "size": (32, 40), "steps": 40}
    whole = stylize(content, style, **common)
    reported = []
    with pytest.raises(Stopped) as stopped:
        stylize(
            content,
            style,
            progress=lambda report: reported.append(report.step),
            checkpoint=CheckpointOptions(tmp_path / "ck"),
            stop_signal=lambda: signals.SIGTERM if reported else None,  # asked once step 10 is reported
            **common,
        )
    assert (stopped.value.step, reported) == (20, [10, 20])  # chunk 20 was queued when the request came
    resumed = stylize(content, style, checkpoint=CheckpointOptions(tmp_path / "ck", resume=True), **common)
    np.testing.assert_array_equal(resumed.image, whole.image)
    np.testing.assert_array_equal(resumed.trace["total"], whole.trace["total"])


def test_a_scale_stopped_by_tol_ends_its_trace_at_the_stopping_step(tiny_weights, rng):
    """A scale that ``tol`` stops reports the losses of the steps taken and of the image it stopped at,
    and nothing after (the chunk loop ends there)."""
    from jaxstyle.api import stylize

    content, style = rng.uniform(0, 1, (32, 48, 3)), rng.uniform(0, 1, (32, 48, 3))
    common = {"weights": tiny_weights, "network": "tiny", "content_layers": ("relu4_1",), "size": (32, 48)}
    common |= {"scales": 2, "steps": 25}
    full = stylize(content, style, **common)
    stopped = stylize(content, style, tol=0.05, **common)
    taken = [stage.steps for stage in stopped.stages]
    assert taken[0] < 25, taken  # tol stopped the first scale
    rows = sum(n + 1 if n < 25 else n for n in taken)
    assert len(stopped.trace["total"]) == rows
    np.testing.assert_array_equal(stopped.trace["total"][: taken[0] + 1], full.trace["total"][: taken[0] + 1])


def cli(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jaxstyle", "stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), *extra]


@pytest.fixture
def images_on_disk(tmp_path, rng):
    for name, shape in (("c.png", (60, 80, 3)), ("s.png", (50, 50, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / name)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["start-up", "compilation", "mid-run", "last chunk"])
def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(tmp_path, weight_files, images_on_disk, moment):
    out = tmp_path / "out.png"
    argv = cli(
        tmp_path, "-o", str(out), "--size", "48x64", "--steps", "40", "--weights", str(weight_files["torchvision"])
    )
    argv += ["--checkpoint-dir", str(tmp_path / "ck"), "--progress", "json", "--progress-interval", "0"]
    # It compiles, as a user's first run (and leaves the user's compilation cache alone).
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"} | {"JAXSTYLE_COMPILE_CACHE": "off"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    if moment == "start-up":
        time.sleep(0.5)  # Python running, jaxstyle's and JAX's imports under way
        proc.send_signal(signal.SIGINT)
    elif moment == "compilation":
        time.sleep(3.0)  # JAX imported, the first chunk compiling (about 10 s on 2 CPU cores)
        proc.send_signal(signal.SIGINT)
    lines = []
    if moment in ("mid-run", "last chunk"):
        wanted = 10 if moment == "mid-run" else 40
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("{") and json.loads(line)["step"] >= wanted:
                proc.send_signal(signal.SIGINT)
                break
    _, err = proc.communicate(timeout=300)
    err_lines = [line for line in [*lines, *err.splitlines(keepends=True)] if not line.startswith("{")]
    assert proc.returncode == EXIT_INTERRUPTED, (moment, err)
    assert len(err_lines) == 1 and err_lines[0].startswith("jaxstyle: ") and "Traceback" not in err, err_lines
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".part"]
    assert leftovers == []
    if moment == "mid-run":
        # It stops at the end of the chunk in flight when the signal came: step 10 or 20.
        assert re.search(r"stopped by SIGINT after step (10|20);", err_lines[0]) and "--resume" in err_lines[0]
        assert not out.exists() and any((tmp_path / "ck").iterdir())
    if moment == "last chunk":  # the outputs were written whole before the exit
        assert "after writing the outputs" in err_lines[0] or "stopped by SIGINT after step 40" in err_lines[0]


def test_progress_lines_in_a_log_file_and_json(tmp_path, weight_files, images_on_disk):
    weights = ["--weights", str(weight_files["torchvision"]), "--size", "48x64", "--scales", "2", "--steps", "20"]
    log = tmp_path / "job.log"
    with open(log, "w") as stderr:  # not a terminal: plain lines, as in a SLURM log
        proc = subprocess.run(
            cli(tmp_path, "-o", str(tmp_path / "a.png"), *weights, "--progress-interval", "0"), stderr=stderr, cwd=ROOT
        )
    assert proc.returncode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("stylize: step 10/40 scale 1/2 (25%) loss ")
    assert lines[-1].startswith("stylize: step 40/40 scale 2/2 (100%) loss ") and "steps/s ETA 0s" in lines[-1]
    proc = subprocess.run(
        cli(tmp_path, "-o", str(tmp_path / "b.png"), *weights, "--progress", "json", "--progress-interval", "0"),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(r["step"], r["stage"], r["done"]) for r in records] == [(10, 1, 10), (20, 1, 20), (30, 2, 30), (40, 2, 40)]
    assert records[-1]["eta_seconds"] == 0 and records[-1]["steps_per_second"] > 0
    assert all(r["loss"] > 0 and r["micro_batches"] == 1 for r in records)


@pytest.mark.slow  # five fresh processes, four of them two-process runs
def test_a_two_process_sweep_resumes_exactly_when_one_process_is_preempted(tmp_path, tiny_weights, images_on_disk):
    """SIGTERM reaches process 1 only, in the second of three micro-batches: both processes
    stop at the same chunk end (exit 75) with one shared checkpoint; restarted with
    --resume, each writes its own settings' images, equal to an uninterrupted run's."""
    from tests.test_sweep import free_port, sweep_in_one_process_on_two_devices

    common = [str(tmp_path / "c.png"), str(tmp_path / "s.png"), "--size", "48x64", "--steps", "20"]
    common += ["--style-weight", "1e2,1e3,1e4", "--tv-weight", "0,10", "--batch-size", "2"]
    common += ["--weights", str(tiny_weights), "--network", "tiny", "--content-layers", "relu4_1"]
    common += ["--progress", "json", "--progress-interval", "0"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}

    def two_processes(port: int, *extra: str) -> list[subprocess.Popen]:
        checkpoints = ("--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-every", "10", *extra)
        distributed = ("--coordinator", f"127.0.0.1:{port}", "--num-processes", "2")
        return [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jaxstyle",
                    "sweep",
                    *common,
                    *checkpoints,
                    *distributed,
                    "--process-id",
                    str(i),
                    "-o",
                    str(tmp_path / f"p{i}"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]

    def finish(procs: list[subprocess.Popen]) -> list[int]:
        try:
            return [p.wait(timeout=300) for p in procs]
        finally:
            for p in procs:
                p.kill()

    procs = two_processes(free_port())
    for line in procs[0].stderr:  # only process 0 reports progress (after its plan line)
        if line.startswith("{") and json.loads(line)["done"] >= 30:  # micro-batch 2 of 3 (20 steps each) under way
            procs[1].send_signal(signal.SIGTERM)
            break
    assert finish(procs) == [EXIT_PREEMPTED, EXIT_PREEMPTED], [p.stderr.read() for p in procs]
    assert not any(p.exists() and any(p.iterdir()) for p in (tmp_path / "p0", tmp_path / "p1"))
    resumed = two_processes(free_port(), "--resume")
    assert finish(resumed) == [0, 0], [p.stderr.read() for p in resumed]
    sweep_in_one_process_on_two_devices(tmp_path / "one", common)  # uninterrupted
    images = {path.name: path for i in range(2) for path in (tmp_path / f"p{i}").glob("0*.png")}
    reference = sorted((tmp_path / "one").glob("0*.png"))
    assert sorted(images) == [path.name for path in reference] and len(reference) == 6
    assert len(list((tmp_path / "p1").glob("0*.png"))) == 3  # process 1 wrote its own three settings
    for path in reference:
        np.testing.assert_array_equal(np.asarray(Image.open(images[path.name])), np.asarray(Image.open(path)))


@pytest.mark.slow  # four vmapped L-BFGS sweeps, each compiled
@pytest.mark.parametrize(
    "optimizer", [{"optimizer": "lbfgs"}, {"optimizer": "lbfgs-fixed", "bounded": True}], ids=["zoom", "fixed"]
)
def test_a_vmapped_lbfgs_sweep_stopped_twice_resumes_exactly(tmp_path, tiny_weights, rng, optimizer):
    """A vmapped L-BFGS sweep of two micro-batches and two scales, stopped at the second scale
    of the first micro-batch and again in the second micro-batch, each time resumed from its
    checkpoint: the same images, losses and final losses as a run never stopped, bit for bit
    (L-BFGS's memory, and the zoom line search's stored value and gradient, are in the state)."""
    from jaxstyle.sweep import grid_product, sweep

    content, style = rng.uniform(0, 1, (32, 48, 3)), rng.uniform(0, 1, (32, 48, 3))
    points = grid_product(1, 1, [1.0], [1e2, 1e3, 1e4], [0.0], [1.0])
    common = {"weights": tiny_weights, "network": "tiny", "content_layers": ("relu4_1",), "size": (32, 48)}
    common |= {"steps": 12, "scales": 2, "batch_size": 2, **optimizer}
    reference = sweep([content], [style], points, **common)

    def stop_at_call(n: int):
        calls = []

        def stop() -> int | None:
            calls.append(1)  # asked once per chunk; 12 steps a scale are chunks of 10 and 2
            return signal.SIGTERM if len(calls) == n else None

        return stop

    directory = tmp_path / "ck"
    for attempt, call in enumerate((3, 3)):  # micro-batch 1, scale 2; then micro-batch 2, scale 1
        options = CheckpointOptions(directory, every_steps=5, every_minutes=None, resume=attempt > 0)
        with pytest.raises(Stopped):
            sweep([content], [style], points, checkpoint=options, stop_signal=stop_at_call(call), **common)
    resumed = sweep([content], [style], points, checkpoint=CheckpointOptions(directory, resume=True), **common)
    np.testing.assert_array_equal(resumed.images, reference.images)
    np.testing.assert_array_equal(resumed.trace["total"], reference.trace["total"])
    np.testing.assert_array_equal(resumed.final_losses["total"], reference.final_losses["total"])


# --------------------------------------------------------------------------- a full disk at the end


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A disk that fills up as the outputs are moved into ``tmp_path / "out"``: ``os.replace`` into it
    raises ENOSPC, after copying the file it would have put there into ``tmp_path / "would"``
    (the bytes the run meant to write). ``$TMPDIR`` and the cache are inside ``tmp_path``."""
    import errno
    import shutil
    import tempfile

    out, would = tmp_path / "out", tmp_path / "would"
    out.mkdir()
    would.mkdir()
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).resolve().parent == out.resolve():
            shutil.copyfile(src, would / Path(dst).name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield out, would, lambda: monkeypatch.setattr(os, "replace", real)


def kept_path(line: str) -> Path:
    """The kept result an error line names."""
    match = re.search(r"kept in (\S+\.kept\.npz):", line)
    assert match, line
    return Path(match.group(1))


@pytest.mark.parametrize("command", ["stylize", "sweep"])
def test_a_full_disk_at_the_end_keeps_the_result_to_write_without_a_step(
    tmp_path, tiny_cli, images_on_disk, full_disk, monkeypatch, command
):
    from jaxstyle import pipeline

    from .test_bad_input import assert_one_line_error, run_cli

    out_dir, would, room_again = full_disk
    inputs = [tmp_path / "c.png", tmp_path / "s.png"]
    common = ["--size", "48x64", "--steps", "2", *tiny_cli, "-q", "--checkpoint-dir", tmp_path / "ck"]
    if command == "stylize":
        target, extra = out_dir / "out.png", ["--trace", out_dir / "trace.json", "--bit-depth", "16"]
        names = ["out.png", "trace.json"]
    else:
        target, extra = out_dir, ["--style-weight", "1,1000"]
        names = ["000_sw1.png", "001_sw1000.png", "contact_sheet.png", "losses.png", "summary.json"]
    result = run_cli(command, *inputs, "-o", target, *common, *extra)
    line = assert_one_line_error(result, str(out_dir / names[0]), "No space left on device", "jaxstyle write")
    kept = kept_path(line)
    # The output's directory is full: the checkpoint directory took it.
    assert kept.parent == tmp_path / "ck" and kept.is_file()
    assert kept.stat().st_size < 200_000  # small: the float images and their metadata
    # The first output failed, and nothing after it was tried; then keeping it beside the outputs failed too.
    assert sorted(p.name for p in would.iterdir()) == sorted([names[0], kept.name])
    assert not [p for p in out_dir.iterdir() if p.suffix != ".npz"]  # nothing half-written
    # Room again: `jaxstyle write` writes the same bytes, and runs no step.
    room_again()
    monkeypatch.setattr(pipeline.Runner, "run", lambda self: pytest.fail("a step was run"))
    written = run_cli("write", kept)
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(names)
    assert (out_dir / names[0]).read_bytes() == (would / names[0]).read_bytes()
    assert not kept.exists()
    if command == "sweep":
        assert [p["file"] for p in json.loads((out_dir / "summary.json").read_text())["points"]] == names[:2]


def test_a_kept_result_writes_elsewhere_at_another_depth_and_bad_ones_are_one_line(tmp_path, rng):
    from jaxstyle.image import read_metadata, save_image
    from jaxstyle.kept import Output, keep, write_or_keep

    from .test_bad_input import assert_one_line_error, run_cli

    rgb = rng.uniform(size=(20, 30, 3))
    outputs = [Output.image(tmp_path / "a.png", rgb, {"n": 1}), Output.file(tmp_path / "t.json", b"{}")]
    kept = keep(outputs, "stylize", "a.png", [tmp_path / "no" / "such" / "dir", tmp_path])
    assert kept == tmp_path / "no" / "such" / "dir" / "a.png.kept.npz"  # the first place that takes it
    (tmp_path / "elsewhere").mkdir()
    assert run_cli("write", kept, "-o", tmp_path / "elsewhere", "-q").returncode == 0
    save_image(tmp_path / "ref.png", rgb, {"n": 1})
    assert (tmp_path / "elsewhere" / "a.png").read_bytes() == (tmp_path / "ref.png").read_bytes()
    assert (tmp_path / "elsewhere" / "t.json").read_bytes() == b"{}" and not kept.exists()
    # One image, written as a 16-bit TIFF instead.
    kept = keep(outputs[:1], "stylize", "a.png", [tmp_path])
    assert run_cli("write", kept, "-o", tmp_path / "print.tif", "--bit-depth", "16", "-q").returncode == 0
    assert read_metadata(tmp_path / "print.tif") == {"n": 1}
    (tmp_path / "junk.kept.npz").write_bytes(b"not a zip")
    assert_one_line_error(run_cli("write", tmp_path / "junk.kept.npz"), "junk.kept.npz", "not a jaxstyle kept result")
    assert_one_line_error(run_cli("write", tmp_path / "none.kept.npz"), "none.kept.npz", "no such file")
    # Nowhere to keep it: the line says so.
    with pytest.raises(JaxstyleError, match=r"a\.png: .*could not be kept either \(tried /proc/x\)"):
        write_or_keep([Output.image(tmp_path / "missing" / "a.png", rgb)], "stylize", "a.png", [Path("/proc/x")])


@pytest.mark.parametrize("command", ["batch", "video"])
def test_a_full_disk_at_the_end_of_a_batch_or_a_video_keeps_the_result(
    tmp_path, tiny_cli, images_on_disk, full_disk, monkeypatch, command
):
    """``batch`` and ``video`` keep what they could not write as ``stylize`` does, and
    ``jaxstyle write`` writes it with no step run: the batch's photo byte for byte, the
    clip's frames as the uninterrupted write would have encoded them."""
    from jaxstyle import pipeline
    from jaxstyle.videoio import read_clip, write_clip

    from .test_bad_input import assert_one_line_error, run_cli

    out_dir, would, room_again = full_disk
    common = ["--size", "48x64", "--steps", "2", *tiny_cli, "-q", "--checkpoint-dir", tmp_path / "ck"]
    if command == "batch":
        photos = tmp_path / "photos"
        photos.mkdir()
        (tmp_path / "c.png").rename(photos / "c.png")
        result = run_cli("batch", photos, tmp_path / "s.png", "-o", out_dir, *common)
        name = "c.png"
    else:
        frames = tmp_path / "frames"
        rgb = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"), np.float32) / 255
        write_clip(frames, np.stack([rgb, rgb[:, ::-1]]), 8.0)
        result = run_cli("video", frames, tmp_path / "s.png", "-o", out_dir / "clip.mp4", *common)
        name = "clip.mp4"
    line = assert_one_line_error(result, str(out_dir / name), "No space left on device", "jaxstyle write")
    kept = kept_path(line)
    assert kept.is_file() and kept.parent in (out_dir, tmp_path / "ck")
    assert not (out_dir / name).exists()  # nothing half-written
    room_again()
    monkeypatch.setattr(pipeline.Runner, "run", lambda self: pytest.fail("a step was run"))
    written = run_cli("write", kept)
    assert written.returncode == 0, written.stderr
    assert not kept.exists()
    if command == "batch":
        assert (out_dir / name).read_bytes() == (would / name).read_bytes()
    else:
        np.testing.assert_array_equal(read_clip(out_dir / name).frames, read_clip(would / name).frames)
