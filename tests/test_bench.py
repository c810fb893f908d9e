"""The benchmark harness in its smallest configuration: a well-formed results file, a
parity gate that passes, and one that stops the run when the implementations differ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import ParityError, parity_gate, results_markdown

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a dozen fresh processes: parity gate, every mode, sweeps, L-BFGS
def test_tiny_run_writes_results_and_markdown(tmp_path):
    out, md = tmp_path / "results", tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(out), "--markdown", str(md)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("cpu-*-tiny.json")
    data = json.loads(path.read_text())
    assert data["machine"]["platform"] == "cpu" and data["versions"]["jax"]
    parity = data["parity"]
    assert parity["float64 gradient"] < 1e-10 and parity["float64 total"] < 1e-10
    assert parity["float32 total"] < 1e-5 and parity["float32 gradient"] < 1e-5
    assert data["matmul_peak_flops"] > 0
    modes = {(tuple(r["size"]), r["mode"]) for r in data["rows"]}
    assert modes == {((48, 64), m) for m in ("jax-jit", "jax-scan", "torch-eager")}
    for row in data["rows"]:
        assert "error" not in row, row
        assert len(row["step_s"]) == 2 and 0 < row["min_s"] <= row["median_s"]
        assert row["first_call_s"] > 0 and row["host_peak_mib"] > 0
    jit = next(r for r in data["rows"] if r["mode"] == "jax-jit")
    assert jit["flops_per_step"] > 1e8 and jit["fraction_of_peak"] > 0
    assert "speedup_vs_torch_eager" in jit
    assert [s["settings"] for s in data["sweep"]] == [1, 2]
    assert all(s["speedup"] > 0 for s in data["sweep"])
    lbfgs = data["lbfgs"]
    assert "error" not in lbfgs and lbfgs["steps_counted"] == 4 and lbfgs["evaluations_per_step"] >= 1
    assert md.is_file()  # tiny runs are left out of the tables, but the file is regenerated


def test_bfloat16_measurements_run_in_both_frameworks_close_to_float32(weight_files):
    from bench.harness import run_child

    weights = weight_files["torchvision"]
    rows = {
        (mode, dtype): run_child(mode, (48, 64), 2, 1, weights, 600, dtype)
        for mode in ("jax-scan", "torch-eager")
        for dtype in ("float32", "bfloat16")
    }
    for (mode, dtype), row in rows.items():
        assert "error" not in row, row
        assert row["dtype"] == dtype and row["final_loss"] > 0
        reference = rows[(mode, "float32")]["final_loss"]
        # bfloat16 convolutions, float32 Gram matrices and losses: a few per cent at most.
        assert abs(row["final_loss"] - reference) / reference < 0.05, (mode, dtype)
    assert rows[("jax-scan", "bfloat16")]["final_loss"] != rows[("jax-scan", "float32")]["final_loss"]
    sweep = run_child("jax-sweep-2", (48, 64), 2, 1, weights, 600, "bfloat16")
    assert sweep["flops_per_step"] > 1e8  # per setting-step, for the fraction of peak


def test_parity_gate_stops_a_wrong_gram_normalisation(weight_files):
    # The gate passing on the right normalisation: test_tiny_run_writes_results_and_markdown.
    with pytest.raises(ParityError, match=r"parity gate failed at 48x64: float(64|32) (style|total) differs by"):
        parity_gate(weight_files["torchvision"], (48, 64), normalise_gram=False)


def test_results_markdown_has_a_table_per_device(tmp_path):
    row = {
        "size": [150, 225],
        "mode": "jax-scan",
        "first_call_s": 5.0,
        "median_s": 0.5,
        "min_s": 0.4,
        "host_peak_mib": 900.0,
        "flops_per_step": 2e10,
        "achieved_flops": 4e10,
        "fraction_of_peak": 0.4,
        "speedup_vs_torch_eager": 1.2,
        "step_s": [0.5],
    }
    for kind, slug_kind in (("cpu", "cpu"), ("NVIDIA H100", "gpu")):
        data = {
            "config": "quick",
            "date": "d",
            "machine": {"platform": slug_kind, "device_kind": kind, "cpu_count": 2},
            "versions": dict.fromkeys(("jax", "flax", "optax", "torch"), "1"),
            "weights": "random",
            "dtype": "float32",
            "parity": {
                "float64 gradient": 1e-15,
                "float32 total": 1e-7,
                "float32 gradient": 1e-6,
                "float32 gradient floor (reference vs float64)": 1e-4,
            },
            "matmul_peak_flops": 1e11,
            "rows": [row],
            "sweep": [
                {
                    "size": [150, 225],
                    "settings": 4,
                    "vmapped": {"median_s": 0.3, "batch_size": 2, "achieved_flops": 1.5e11, "fraction_of_peak": 0.75},
                    "sequential": {"median_s": 0.6},
                    "speedup": 2.0,
                }
            ],
        }
        (tmp_path / f"{kind}.json").write_text(json.dumps(data))
    md = results_markdown(tmp_path)
    assert (
        md.count("## ") == 2 and "| 150x225 | jax-scan | 5.00 | 0.500 | 0.400 | 900 | 20.0 | 40.0 | 40 | 1.20 |" in md
    )
    assert "| 150x225 | 4 | 2 | 0.300 | 0.600 | 2.00 | 150.0 | 75 |" in md


def test_conv_layer_timings_cover_every_convolution_up_to_conv5_1(capsys):
    from bench.conv_layers import main

    main(["32x48"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == [
        "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
        "conv3_4", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1",
    ]  # fmt: skip
    assert lines[2].split()[1:3] == ["32x48", "64->64"] and lines[-2].split()[1] == "2x3"
    assert lines[-1].startswith("total") and all(float(v) > 0 for v in lines[-1].split()[1:])
